package images

import (
	"bytes"
	// go-digest panics unless the program links sha256 in itself.
	_ "crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock/airlock/images/imageref"
)

// ErrInvalidSpec is returned, wrapped, when a Spec cannot describe a sound
// image; the message says which field is wrong.
var ErrInvalidSpec = errors.New("invalid image spec")

// AnnotationImageName is the index annotation containerd's importer takes the
// image name from, ahead of the OCI ref name.
const AnnotationImageName = "io.containerd.image.name"

// refTag is the only tag Airlock images carry; the digest is their identity.
const refTag = "latest"

// ImageRef is the name an image built from a Spec with this Name has in
// containerd after import. The Name follows imageref's name rule, so that
// this always parses.
func ImageRef(name string) string {
	return "airlock.local/" + name + ":" + refTag
}

// Build writes spec as an OCI image-layout tarball to w and returns the
// manifest digest. The same spec and host files always produce the same bytes.
func Build(w io.Writer, spec Spec) (digest.Digest, error) {
	if err := validate(spec); err != nil {
		return "", err
	}
	tree, err := layerTree(spec)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", spec.Name, err)
	}
	if e, ok := tree[spec.Entrypoint[0]]; !ok || e.dir || e.mode&0o111 == 0 {
		return "", fmt.Errorf("%w: image %s: entrypoint %q is not an executable file in the image",
			ErrInvalidSpec, spec.Name, spec.Entrypoint[0])
	}
	layer, err := writeLayer(tree)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", spec.Name, err)
	}

	blobs := make([]LayoutBlob, 0, 3)
	addBlob := func(mediaType string, data []byte) v1.Descriptor {
		d := digest.FromBytes(data)
		blobs = append(blobs, LayoutBlob{Digest: d, Size: int64(len(data)), Content: bytes.NewReader(data)})
		return v1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
	}
	layerDesc := addBlob(v1.MediaTypeImageLayer, layer)

	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	config, err := json.Marshal(v1.Image{
		Platform: platform,
		Config: v1.ImageConfig{
			User:       orDefault(spec.User, NobodyUser),
			Env:        orDefaultSlice(spec.Env, []string{"PATH=/"}),
			Entrypoint: spec.Entrypoint,
			WorkingDir: "/",
		},
		// The layer is uncompressed, so its diff ID is its digest.
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
	})
	if err != nil {
		return "", fmt.Errorf("image %s: config: %w", spec.Name, err)
	}
	configDesc := addBlob(v1.MediaTypeImageConfig, config)

	manifest, err := json.Marshal(v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []v1.Descriptor{layerDesc},
	})
	if err != nil {
		return "", fmt.Errorf("image %s: manifest: %w", spec.Name, err)
	}
	manifestDesc := addBlob(v1.MediaTypeImageManifest, manifest)
	manifestDesc.Platform = &platform
	manifestDesc.Annotations = map[string]string{
		v1.AnnotationRefName: refTag,
		AnnotationImageName:  ImageRef(spec.Name),
	}

	index, err := json.Marshal(v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: []v1.Descriptor{manifestDesc},
	})
	if err != nil {
		return "", fmt.Errorf("image %s: index: %w", spec.Name, err)
	}
	layout, err := json.Marshal(v1.ImageLayout{Version: v1.ImageLayoutVersion})
	if err != nil {
		return "", fmt.Errorf("image %s: oci-layout: %w", spec.Name, err)
	}

	if err := WriteLayout(w, blobs, index, layout); err != nil {
		return "", fmt.Errorf("image %s: %w", spec.Name, err)
	}
	return manifestDesc.Digest, nil
}

func validate(spec Spec) error {
	if !imageref.ValidName(spec.Name) {
		return fmt.Errorf("%w: name %q must be %s", ErrInvalidSpec, spec.Name, imageref.NameRule)
	}
	if len(spec.Entrypoint) == 0 {
		return fmt.Errorf("%w: image %s: empty entrypoint", ErrInvalidSpec, spec.Name)
	}
	if err := checkImagePath(spec.Entrypoint[0]); err != nil {
		return fmt.Errorf("image %s: entrypoint: %w", spec.Name, err)
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orDefaultSlice(s, def []string) []string {
	if len(s) == 0 {
		return def
	}
	return s
}

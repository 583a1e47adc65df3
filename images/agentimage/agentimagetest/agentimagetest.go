// Package agentimagetest builds agent image tarballs in tests, with
// go-containerregistry: hand-made layers, an image config, and the OCI
// layout and docker save tarballs that `airlock image import` reads.
package agentimagetest

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/airlock/airlock/images"
)

// Entry is one entry of a hand-made layer. Type 0 is a regular file, Mode
// 0 is 0755, UID and GID 0 are root.
type Entry struct {
	Name, Link string
	Type       byte
	Mode       int64
	UID, GID   int
	Data       []byte
	PAX        map[string]string
}

// MountPoints are the directories every image Airlock imports must hold
// (images.Mountpoints), and /app for the agent. They are 0755, as Layer
// makes an entry without a mode: the import checks that they are
// directories, not their modes.
func MountPoints() []Entry {
	var out []Entry
	for _, mp := range images.Mountpoints() {
		out = append(out, Entry{Name: strings.TrimPrefix(mp.Path, "/") + "/", Type: tar.TypeDir})
	}
	return append(out, Entry{Name: "app/", Type: tar.TypeDir})
}

// Layer is an uncompressed layer of the entries, in order.
func Layer(t testing.TB, entries ...Entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ, mode := e.Type, e.Mode
		if typ == 0 {
			typ = tar.TypeReg
		}
		if mode == 0 {
			mode = 0o755
		}
		hdr := &tar.Header{Name: e.Name, Linkname: e.Link, Typeflag: typ, Mode: mode, Uid: e.UID, Gid: e.GID, PAXRecords: e.PAX, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.Data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write(e.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Image is an image of the layers for linux/arch, its config as cfg
// (nil: empty) sets it.
func Image(t testing.TB, arch string, cfg *v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	if cfg != nil {
		cf.Config = *cfg
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// OCILayout writes the images as one OCI image-layout tarball and returns
// its path.
func OCILayout(t testing.TB, imgs ...v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		if err := p.AppendImage(img); err != nil {
			t.Fatal(err)
		}
	}
	return TarDir(t, dir)
}

// OCIIndex writes the index as an OCI image-layout tarball.
func OCIIndex(t testing.TB, idx v1.ImageIndex) string {
	t.Helper()
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	return TarDir(t, dir)
}

// TarDir writes dir's files as a tarball and returns its path.
func TarDir(t testing.TB, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// DockerSave writes img as a docker save tarball and returns its path.
func DockerSave(t testing.TB, img v1.Image) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image.tar")
	tag, err := name.NewTag("example.com/agent:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		t.Fatal(err)
	}
	return out
}

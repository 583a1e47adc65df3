// Package rootfstest reads an OCI image-layout tarball back as an import
// does, with package agentimage, and checks what package rootfs promises
// beyond the import's rules: one manifest, for the host's platform, an
// entrypoint that resolves to an executable file, and a layer whose
// entries are all root-owned regular files, directories and symlinks,
// with no setuid or setgid bit. It also unpacks a checked image into a
// directory, for a runtime to run. Tests use it on what package rootfs
// builds.
package rootfstest

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/airlock/airlock/images/agentimage"
	"github.com/airlock/airlock/images/rootfs"
)

// Image is what Check read of a tarball.
type Image struct {
	Digest v1.Hash
	Config *v1.ConfigFile
	// Annotations are the index entry's.
	Annotations map[string]string
	// Files are the layer's entries by clean absolute path.
	Files map[string]*tar.Header
}

// Resolve follows the symlinks of the absolute path p within the image's
// layer, as rootfs.Resolve does, and returns the path it leads to.
func (img *Image) Resolve(p string) (string, error) {
	return rootfs.Resolve(p, func(p string) (string, bool) {
		h, ok := img.Files[p]
		if !ok {
			return "", false
		}
		if h.Typeflag != tar.TypeSymlink {
			return "", true
		}
		return h.Linkname, true
	})
}

// Check reads the tarball at file and returns its image, or the first way
// it breaks the rules.
func Check(file string) (*Image, error) { return inspect(file, "") }

// Unpack checks the tarball at file and writes its root filesystem into
// dst, an empty directory, for a runtime to run.
func Unpack(file, dst string) (*Image, error) { return inspect(file, dst) }

// inspect is Check, and with dst set, Unpack.
func inspect(file, dst string) (*Image, error) {
	work, err := os.MkdirTemp("", "rootfstest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	// The import's own reading vets the layout, the config's platform, the
	// sizes and every layer entry, with airlockd's default limits: what it
	// refuses, an import refuses.
	vetted, done, err := agentimage.Read(file, work, agentimage.DefaultLimits)
	if err != nil {
		return nil, err
	}
	defer done()

	// An import picks the one image for this platform out of an index
	// that may hold others; rootfs writes only that one.
	desc, err := indexEntry(file)
	if err != nil {
		return nil, err
	}
	if desc.Digest.String() != vetted.Digest {
		return nil, fmt.Errorf("the index names %s, the import read %s", desc.Digest, vetted.Digest)
	}
	cf := vetted.Config
	if len(cf.Config.Entrypoint) == 0 {
		return nil, errors.New("no entrypoint")
	}
	out := &Image{Digest: desc.Digest, Config: cf, Annotations: desc.Annotations, Files: map[string]*tar.Header{}}
	layers, err := vetted.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		if err := readLayer(l, out.Files); err != nil {
			return nil, err
		}
	}
	ep, err := out.Resolve(cf.Config.Entrypoint[0])
	if err != nil {
		return nil, fmt.Errorf("entrypoint: %w", err)
	}
	if h := out.Files[ep]; h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 {
		return nil, fmt.Errorf("entrypoint %s is not an executable file", ep)
	}
	if dst != "" {
		rc := mutate.Extract(vetted.Image)
		defer rc.Close()
		if err := extract(rc, dst); err != nil {
			return nil, fmt.Errorf("unpack: %w", err)
		}
	}
	return out, nil
}

// indexEntry reads index.json from the tarball at file, which must name
// one manifest, for the host's platform. agentimage.Read has bounded its
// size.
func indexEntry(file string) (v1.Descriptor, error) {
	f, err := os.Open(file)
	if err != nil {
		return v1.Descriptor{}, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return v1.Descriptor{}, errors.New("no index.json")
		}
		if err != nil {
			return v1.Descriptor{}, err
		}
		if path.Clean(h.Name) != "index.json" {
			continue
		}
		im, err := v1.ParseIndexManifest(tr)
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("index.json: %w", err)
		}
		if len(im.Manifests) != 1 {
			return v1.Descriptor{}, fmt.Errorf("index has %d manifests, want 1", len(im.Manifests))
		}
		desc := im.Manifests[0]
		if p := desc.Platform; p == nil || p.OS != "linux" || p.Architecture != runtime.GOARCH {
			return v1.Descriptor{}, fmt.Errorf("manifest platform %v, want linux/%s", desc.Platform, runtime.GOARCH)
		}
		return desc, nil
	}
}

// readLayer adds each entry of l to files, refusing what rootfs never
// writes though an import would take it: an entry owned by anyone but
// root, with a setuid or setgid bit, a setgid directory included, or
// other than a regular file, a directory or a symlink (a hard link).
func readLayer(l v1.Layer, files map[string]*tar.Header) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + h.Name)
		switch {
		case h.Mode&0o6000 != 0:
			return fmt.Errorf("%s has setuid or setgid (mode %#o)", name, h.Mode)
		case h.Uid != 0 || h.Gid != 0:
			return fmt.Errorf("%s is owned by %d:%d, want root", name, h.Uid, h.Gid)
		case h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeDir && h.Typeflag != tar.TypeSymlink:
			return fmt.Errorf("%s is of tar type %q; rootfs writes only regular files, directories and symlinks", name, h.Typeflag)
		}
		files[name] = h
	}
}

// extract writes the tar stream r into dst: directories, regular files
// and symlinks, with their modes. Every entry's parent must already be a
// directory of dst, so nothing is written through a link. agentimage.Read
// has bounded the bytes.
func extract(r io.Reader, dst string) error {
	dst, err := filepath.EvalSymlinks(dst)
	if err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("entry %q leaves the root", h.Name)
		}
		p := filepath.Join(dst, h.Name)
		if parent, err := filepath.EvalSymlinks(filepath.Dir(p)); err != nil || parent != filepath.Dir(p) {
			return fmt.Errorf("entry %q: its parent is not a directory", h.Name)
		}
		mode := os.FileMode(h.Mode & 0o777)
		switch h.Typeflag {
		case tar.TypeDir:
			if h.Mode&0o1000 != 0 {
				mode |= os.ModeSticky
			}
			if err := os.Mkdir(p, mode); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			// Mkdir's mode went through the umask.
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, io.LimitReader(tr, h.Size))
			if err := errors.Join(err, f.Chmod(mode), f.Close()); err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q has type %q", h.Name, h.Typeflag)
		}
	}
}

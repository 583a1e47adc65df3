// Package rootfstest reads an OCI image-layout tarball back with
// go-containerregistry and checks what an imported agent image must hold
// to: one manifest for the host's platform, an entrypoint, and a layer
// without setuid or setgid files, device nodes, FIFOs, whiteouts, files
// owned by anyone but root, or links that leave the image. It also unpacks
// a checked image into a directory, for a runtime to run. Tests use it on
// what package rootfs builds.
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
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/airlock/airlock/images/rootfs"
)

// maxBlobBytes caps one file of the outer tarball.
const maxBlobBytes = 2 << 30

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
	dir, err := os.MkdirTemp("", "rootfstest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := untar(file, dir); err != nil {
		return nil, err
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("not an OCI image layout: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(im.Manifests) != 1 {
		return nil, fmt.Errorf("index has %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if p := desc.Platform; p == nil || p.OS != "linux" || p.Architecture != runtime.GOARCH {
		return nil, fmt.Errorf("manifest platform %v, want linux/%s", desc.Platform, runtime.GOARCH)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		return nil, fmt.Errorf("config platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if len(cf.Config.Entrypoint) == 0 {
		return nil, errors.New("no entrypoint")
	}
	out := &Image{Digest: desc.Digest, Config: cf, Annotations: desc.Annotations, Files: map[string]*tar.Header{}}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		if err := readLayer(l, out.Files); err != nil {
			return nil, err
		}
	}
	if err := checkLinks(out.Files); err != nil {
		return nil, err
	}
	ep, err := out.Resolve(cf.Config.Entrypoint[0])
	if err != nil {
		return nil, fmt.Errorf("entrypoint: %w", err)
	}
	if h := out.Files[ep]; h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 {
		return nil, fmt.Errorf("entrypoint %s is not an executable file", ep)
	}
	if dst != "" {
		rc := mutate.Extract(img)
		defer rc.Close()
		if err := extract(rc, dst, true); err != nil {
			return nil, fmt.Errorf("unpack: %w", err)
		}
	}
	return out, nil
}

// readLayer checks each entry of l and adds it to files.
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
		case strings.HasPrefix(path.Base(name), ".wh."):
			return fmt.Errorf("%s is a whiteout", name)
		case h.Mode&0o6000 != 0:
			return fmt.Errorf("%s has setuid or setgid (mode %#o)", name, h.Mode)
		case h.Uid != 0 || h.Gid != 0:
			return fmt.Errorf("%s is owned by %d:%d, want root", name, h.Uid, h.Gid)
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
		case tar.TypeLink:
			if t := path.Clean("/" + h.Linkname); files[t] == nil {
				return fmt.Errorf("hard link %s to %s, which is not earlier in the layer", name, h.Linkname)
			}
		default:
			return fmt.Errorf("%s has type %q, which an image must not hold", name, h.Typeflag)
		}
		files[name] = h
	}
}

// checkLinks refuses absolute symlinks and relative ones that climb above
// the root.
func checkLinks(files map[string]*tar.Header) error {
	for name, h := range files {
		if h.Typeflag != tar.TypeSymlink {
			continue
		}
		if path.IsAbs(h.Linkname) {
			return fmt.Errorf("symlink %s has an absolute target %s", name, h.Linkname)
		}
		depth := strings.Count(path.Dir(name), "/")
		if path.Dir(name) == "/" {
			depth = 0
		}
		for _, c := range strings.Split(h.Linkname, "/") {
			switch c {
			case "..":
				if depth--; depth < 0 {
					return fmt.Errorf("symlink %s to %s climbs above the root", name, h.Linkname)
				}
			case ".", "":
			default:
				depth++
			}
		}
	}
	return nil
}

// untar extracts the tarball at file into dir, refusing names that would
// land outside it and files over maxBlobBytes.
func untar(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	return extract(f, dir, false)
}

// extract writes the tar stream r into dst: directories, regular files
// and, with links, symlinks, with their modes. Every entry's parent must
// already be a directory of dst, so nothing is written through a link.
func extract(r io.Reader, dst string, links bool) error {
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
		switch {
		case h.Typeflag == tar.TypeDir:
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
		case h.Typeflag == tar.TypeSymlink && links:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case h.Typeflag == tar.TypeReg:
			if h.Size > maxBlobBytes {
				return fmt.Errorf("entry %q is %d bytes", h.Name, h.Size)
			}
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

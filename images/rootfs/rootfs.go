// Package rootfs builds an OCI image-layout tarball from a root filesystem
// directory, such as one mmdebstrap made, without a registry or Docker:
// one layer, one manifest for the host's platform, the files made
// root-owned, dated 1970 and stripped of setuid and setgid bits, every
// symlink rewritten to a relative one that stays inside the image, and
// anything else (device nodes, FIFOs, sockets, whiteouts) refused.
//
// The same directory always gives the same bytes, and so the same digest.
package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock/airlock/images"
)

// ErrRefused is returned, wrapped, for a root filesystem that cannot be
// made into a sound image; the message names the path and why.
var ErrRefused = errors.New("refused")

// DefaultMaxBytes caps the file bytes of an image unless WithMaxBytes says
// otherwise.
const DefaultMaxBytes = 1 << 30

// maxLinkHops bounds symlink resolution of the entrypoint, as the kernel's
// own limit does.
const maxLinkHops = 40

// epoch is every entry's mtime, so that a rebuild is byte-identical.
var epoch = time.Unix(0, 0).UTC()

// Option configures Build.
type Option func(*config)

type config struct {
	env      []string
	user     string
	maxBytes int64
}

// WithEnv sets the image config's Env. Airlock replaces a job's whole
// environment, so this documents what the entrypoint expects and serves
// other runtimes only.
func WithEnv(env []string) Option { return func(c *config) { c.env = slices.Clone(env) } }

// WithUser sets the image config's User, nobody unless said. A sandbox's
// image has no use for it: Airlock runs every job as its profile's uid,
// whatever the image says. airlockd's own image says root, which its
// containerd and runc need.
func WithUser(user string) Option { return func(c *config) { c.user = user } }

// WithMaxBytes caps the bytes of the files the image may hold.
func WithMaxBytes(n int64) Option { return func(c *config) { c.maxBytes = n } }

// Build writes the tree at dir as an OCI image-layout tarball named name
// (images.ImageRef(name) in containerd) to w, with entrypoint as its
// Entrypoint, and returns the manifest digest. The entrypoint must resolve,
// within the tree, to an executable regular file.
func Build(w io.Writer, dir, name string, entrypoint []string, opts ...Option) (v1.Hash, error) {
	cfg := config{user: images.NobodyUser, maxBytes: DefaultMaxBytes}
	for _, o := range opts {
		o(&cfg)
	}
	if len(entrypoint) == 0 || !path.IsAbs(entrypoint[0]) {
		return v1.Hash{}, fmt.Errorf("%w: the entrypoint must start with an absolute path, got %q", ErrRefused, entrypoint)
	}
	tree, err := walk(dir)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := checkEntrypoint(tree, entrypoint[0]); err != nil {
		return v1.Hash{}, err
	}
	scratch, err := os.MkdirTemp("", "airlock-rootfs-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.RemoveAll(scratch)

	layerFile := filepath.Join(scratch, "layer.tar")
	if err := writeLayer(layerFile, dir, tree, cfg.maxBytes); err != nil {
		return v1.Hash{}, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return os.Open(layerFile) },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("layer: %w", err)
	}
	img, err := image(layer, entrypoint, cfg.env, cfg.user)
	if err != nil {
		return v1.Hash{}, err
	}
	layoutDir := filepath.Join(scratch, "layout")
	lp, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("layout: %w", err)
	}
	err = lp.AppendImage(img,
		layout.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		layout.WithAnnotations(map[string]string{
			ocispec.AnnotationRefName:  "latest",
			images.AnnotationImageName: images.ImageRef(name),
		}))
	if err != nil {
		return v1.Hash{}, fmt.Errorf("layout: %w", err)
	}
	if err := tarLayout(w, layoutDir); err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}

// image is one layer with an OCI config that runs entrypoint as user.
func image(layer v1.Layer, entrypoint, env []string, user string) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = slices.Clone(entrypoint)
	cf.Config.Env = env
	cf.Config.User = user
	cf.Config.WorkingDir = "/"
	return mutate.ConfigFile(img, cf)
}

// node is one entry of the tree, keyed by its absolute path in the image.
type node struct {
	mode fs.FileMode
	// link is a symlink's target, already relative and inside the image.
	link string
	// size is a regular file's, as walked.
	size int64
	// host is the path to read a regular file from.
	host string
}

// walk lists dir without following any symlink, with the directories
// every Airlock image holds (the mountpoints, and /etc) added, and refuses
// what an image must not hold.
func walk(dir string) (map[string]*node, error) {
	tree := map[string]*node{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		name := "/" + filepath.ToSlash(rel)
		if strings.HasPrefix(d.Name(), ".wh.") {
			return fmt.Errorf("%w: %s is a whiteout", ErrRefused, name)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch m := fi.Mode(); {
		case m.IsDir():
			// The sticky bit stays (a world-writable /tmp wants it);
			// setuid and setgid do not.
			tree[name] = &node{mode: fs.ModeDir | m&(fs.ModePerm|fs.ModeSticky)}
		case m.IsRegular():
			tree[name] = &node{mode: m.Perm(), size: fi.Size(), host: p}
		case m&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			link, err := relativeLink(name, target)
			if err != nil {
				return err
			}
			tree[name] = &node{mode: fs.ModeSymlink | 0o777, link: link}
		default:
			return fmt.Errorf("%w: %s is a %s, which an image must not hold", ErrRefused, name, kind(m))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, d := range images.SkeletonDirs() {
		n, ok := tree[d.Path]
		switch {
		case !ok:
			m := fs.ModeDir | fs.FileMode(d.Mode&0o777)
			if d.Mode&0o1000 != 0 {
				m |= fs.ModeSticky
			}
			tree[d.Path] = &node{mode: m}
		case !n.mode.IsDir():
			return nil, fmt.Errorf("%w: %s must be a directory: the sandbox mounts over it", ErrRefused, d.Path)
		}
	}
	return tree, nil
}

// relativeLink rewrites a symlink at name to target as a relative link
// that resolves, lexically, where target would inside the image: an
// absolute target is the image's path, not the host's, and ".." never
// climbs above the image's root.
func relativeLink(name, target string) (string, error) {
	if target == "" {
		return "", fmt.Errorf("%w: %s is a symlink to nothing", ErrRefused, name)
	}
	abs := target
	if !path.IsAbs(abs) {
		abs = path.Join(path.Dir(name), target)
	}
	rel, err := filepath.Rel(path.Dir(name), path.Clean(abs))
	if err != nil {
		return "", fmt.Errorf("%w: symlink %s: %v", ErrRefused, name, err)
	}
	return filepath.ToSlash(rel), nil
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "file of type " + m.Type().String()
}

// checkEntrypoint resolves p in the tree and requires an executable
// regular file there.
func checkEntrypoint(tree map[string]*node, p string) error {
	got, err := Resolve(p, func(p string) (string, bool) {
		n, ok := tree[p]
		if !ok {
			return "", false
		}
		return n.link, true
	})
	if err != nil {
		return fmt.Errorf("%w: entrypoint %s: %v", ErrRefused, p, err)
	}
	n := tree[got]
	if !n.mode.IsRegular() || n.mode&0o111 == 0 {
		return fmt.Errorf("%w: entrypoint %s (%s) is not an executable file", ErrRefused, p, got)
	}
	return nil
}

// Resolve follows the symlinks in the absolute path p, component by
// component, within an image whose entries lookup gives: for each path,
// whether it is there and, for a symlink, its target. It returns the path
// p leads to, lexically: ".." never climbs above the root.
func Resolve(p string, lookup func(path string) (link string, ok bool)) (string, error) {
	hops := 0
	cur := "/"
	rest := strings.Split(strings.Trim(path.Clean(p), "/"), "/")
	for len(rest) > 0 {
		next := path.Join(cur, rest[0])
		rest = rest[1:]
		link, ok := lookup(next)
		if !ok {
			return "", fmt.Errorf("%s is not in the image", next)
		}
		if link == "" {
			cur = next
			continue
		}
		if hops++; hops > maxLinkHops {
			return "", errors.New("too many levels of symbolic links")
		}
		target := link
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(next), link)
		}
		rest = append(strings.Split(strings.Trim(path.Clean(target), "/"), "/"), rest...)
		cur = "/"
	}
	return cur, nil
}

// writeLayer writes the tree to file as an uncompressed tar, in path
// order, root-owned, dated epoch.
func writeLayer(file, dir string, tree map[string]*node, maxBytes int64) (err error) {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	paths := make([]string, 0, len(tree))
	for p := range tree {
		paths = append(paths, p)
	}
	// Sorted, a directory comes before what it holds.
	slices.Sort(paths)
	tw := tar.NewWriter(f)
	var total int64
	for _, p := range paths {
		n := tree[p]
		hdr := &tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: int64(n.mode.Perm()), ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case n.mode.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
			if n.mode&fs.ModeSticky != 0 {
				hdr.Mode |= 0o1000
			}
		case n.link != "":
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, n.link
		default:
			if total += n.size; total > maxBytes {
				return fmt.Errorf("%w: %s: the image's files are over %d bytes", ErrRefused, dir, maxBytes)
			}
			hdr.Typeflag, hdr.Size = tar.TypeReg, n.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("layer entry %s: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if err := copyFile(tw, n.host, n.size); err != nil {
				return fmt.Errorf("layer entry %s: %w", p, err)
			}
		}
	}
	return tw.Close()
}

// copyFile copies exactly size bytes of name, and fails if the file grew
// or shrank since it was walked: such a layer would match no version of it.
func copyFile(w io.Writer, name string, size int64) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(w, f, size); err != nil {
		return fmt.Errorf("read %s: %w (did it shrink during the build?)", name, err)
	}
	if n, _ := f.Read(make([]byte, 1)); n > 0 {
		return fmt.Errorf("read %s: it grew during the build", name)
	}
	return nil
}

// tarLayout writes the layout directory that go-containerregistry made
// as a tarball, with images.WriteLayout, as images.Build writes its own.
func tarLayout(w io.Writer, dir string) error {
	blobDir := filepath.Join(dir, ocispec.ImageBlobsDir, "sha256")
	entries, err := os.ReadDir(blobDir)
	if err != nil {
		return err
	}
	blobs := make([]images.LayoutBlob, 0, len(entries))
	for _, e := range entries {
		f, err := os.Open(filepath.Join(blobDir, e.Name()))
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		blobs = append(blobs, images.LayoutBlob{Digest: digest.NewDigestFromEncoded(digest.SHA256, e.Name()), Size: fi.Size(), Content: f})
	}
	index, err := os.ReadFile(filepath.Join(dir, ocispec.ImageIndexFile))
	if err != nil {
		return err
	}
	marker, err := os.ReadFile(filepath.Join(dir, ocispec.ImageLayoutFile))
	if err != nil {
		return err
	}
	return images.WriteLayout(w, blobs, index, marker)
}

// Package agentimage reads an operator's own agent image from an OCI
// image-layout tarball or a `docker save` tarball, with
// go-containerregistry, and refuses one Airlock will not run: over its
// size caps, for another platform, or with a layer entry that is a device,
// a FIFO, setuid, a whiteout, a file capability, or a path or link that
// leaves the root filesystem. Every string it reports comes from the image
// and is quoted and capped.
package agentimage

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/airlock/airlock/images"
)

// ErrRefused is returned, wrapped, for an image Airlock will not import;
// the message names the entry or field and the reason.
var ErrRefused = errors.New("image refused")

// Limits bound what reading one image may cost.
type Limits struct {
	// MaxBytes caps the uncompressed bytes of all layers together.
	MaxBytes int64
	// MaxLayers caps the number of layers.
	MaxLayers int
	// MaxEntries caps the tar entries of all layers together.
	MaxEntries int
}

// DefaultLimits are the limits airlockd reads images with.
var DefaultLimits = Limits{MaxBytes: 2 << 30, MaxLayers: 64, MaxEntries: 200_000}

// Bounds on the archive around the image.
const (
	// maxMembers caps the files of the outer tarball.
	maxMembers = 10_000
	// maxMetaBytes caps each JSON document the library reads whole: the
	// index, the manifests, the config and docker's manifest.json.
	maxMetaBytes = 4 << 20
)

// Image is a read and vetted image.
type Image struct {
	v1.Image
	// Digest is the manifest digest, sha256:HEX.
	Digest string
	// Size is the uncompressed size of all layers.
	Size int64
	// Config is the image's configuration, as untrusted as the rest.
	Config *v1.ConfigFile
}

// Platform is the only platform an image may be for: this host's.
var Platform = v1.Platform{OS: "linux", Architecture: runtime.GOARCH}

// Read reads and vets the image in the tarball at file, unpacking an OCI
// layout below workDir first. close removes what Read unpacked; call it
// once the image's blobs are no longer read. On error nothing is left.
func Read(file, workDir string, lim Limits) (*Image, func() error, error) {
	format, err := scan(file)
	if err != nil {
		return nil, nil, err
	}
	raw, cleanup, err := open(format, file, workDir)
	if err != nil {
		return nil, nil, err
	}
	img, err := vet(raw, lim)
	if err != nil {
		return nil, nil, errors.Join(err, cleanup())
	}
	return img, cleanup, nil
}

// open opens the image with the library for its format. On error it has
// removed what it unpacked.
func open(f format, file, workDir string) (v1.Image, func() error, error) {
	if f == formatDocker {
		raw, err := tarball.Image(func() (io.ReadCloser, error) { return os.Open(file) }, nil)
		if err != nil {
			if strings.Contains(err.Error(), "single image") {
				return nil, nil, fmt.Errorf("%w: the docker save tarball holds several images; save and import one at a time", ErrRefused)
			}
			return nil, nil, fmt.Errorf("%w: docker save tarball: %s", ErrRefused, quoteErr(err))
		}
		return raw, func() error { return nil }, nil
	}
	dir, err := os.MkdirTemp(workDir, "layout-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() error { return os.RemoveAll(dir) }
	if err := unpackLayout(file, dir); err != nil {
		return nil, nil, errors.Join(err, cleanup())
	}
	raw, err := fromLayout(dir)
	if err != nil {
		return nil, nil, errors.Join(err, cleanup())
	}
	return raw, cleanup, nil
}

type format int

const (
	formatOCI format = iota + 1
	formatDocker
)

// scan tells an OCI layout from a docker save tarball by the files at its
// top, and bounds what the library will read whole. A tarball with both
// (docker 25 saves both) is read as the OCI layout.
func scan(file string) (format, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var oci, docker bool
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("%w: not a tarball: %s", ErrRefused, quoteErr(err))
		}
		if n >= maxMembers {
			return 0, fmt.Errorf("%w: the tarball has more than %d files", ErrRefused, maxMembers)
		}
		name := strings.TrimPrefix(path.Clean(hdr.Name), "./")
		switch name {
		case "oci-layout":
			oci = true
		case "manifest.json":
			docker = true
		}
		if (name == "index.json" || name == "manifest.json" || name == "oci-layout" || strings.HasSuffix(name, ".json")) && hdr.Size > maxMetaBytes {
			return 0, fmt.Errorf("%w: %s is %d bytes; at most %d", ErrRefused, Quote(name), hdr.Size, maxMetaBytes)
		}
	}
	switch {
	case oci:
		return formatOCI, nil
	case docker:
		return formatDocker, nil
	}
	return 0, fmt.Errorf("%w: neither an OCI image layout (no oci-layout file) nor a docker save tarball (no manifest.json)", ErrRefused)
}

// unpackLayout writes the layout's files below dir for layout.Path, which
// reads a directory. Only the layout's own names are taken, as regular
// files and their directories; nothing else of the archive is written.
func unpackLayout(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o700); err != nil {
		return err
	}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %s", ErrRefused, quoteErr(err))
		}
		name := strings.TrimPrefix(path.Clean(hdr.Name), "./")
		if hdr.Typeflag == tar.TypeDir && (name == "." || name == "blobs" || strings.HasPrefix(name, "blobs/")) {
			continue
		}
		if !layoutFile(name) {
			return fmt.Errorf("%w: the OCI layout holds %s, which is not index.json, oci-layout or blobs/sha256/<64 hex>", ErrRefused, Quote(name))
		}
		if hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("%w: %s is not a regular file", ErrRefused, Quote(name))
		}
		out, err := os.OpenFile(filepath.Join(dir, filepath.FromSlash(name)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("%w: %s: %s", ErrRefused, Quote(name), quoteErr(err))
		}
		_, err = io.Copy(out, tr)
		if err = errors.Join(err, out.Close()); err != nil {
			return err
		}
	}
}

// layoutFile says whether name is one of an OCI layout's own files.
func layoutFile(name string) bool {
	if name == "index.json" || name == "oci-layout" {
		return true
	}
	hex, ok := strings.CutPrefix(name, "blobs/sha256/")
	return ok && len(hex) == 64 && strings.Trim(hex, "0123456789abcdef") == ""
}

// fromLayout picks the one image for Platform in the layout at dir,
// looking one level into image indexes.
func fromLayout(dir string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: OCI layout: %s", ErrRefused, quoteErr(err))
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%w: index.json: %s", ErrRefused, quoteErr(err))
	}
	var found []v1.Image
	var seen []v1.Hash
	var others []string
	add := func(from v1.ImageIndex, d v1.Descriptor) error {
		if d.Size > maxMetaBytes {
			return fmt.Errorf("%w: manifest %s is %d bytes; at most %d", ErrRefused, d.Digest, d.Size, maxMetaBytes)
		}
		if d.Platform != nil && !platformMatches(*d.Platform) {
			others = append(others, Quote(d.Platform.String()))
			return nil
		}
		if slices.Contains(seen, d.Digest) {
			return nil
		}
		if err := metaBlob(dir, "manifest", d.Digest); err != nil {
			return err
		}
		img, err := from.Image(d.Digest)
		if err != nil {
			return fmt.Errorf("%w: manifest %s: %s", ErrRefused, d.Digest, quoteErr(err))
		}
		seen = append(seen, d.Digest)
		found = append(found, img)
		return nil
	}
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsImage():
			if err := add(idx, d); err != nil {
				return nil, err
			}
		case d.MediaType.IsIndex():
			if d.Size > maxMetaBytes {
				return nil, fmt.Errorf("%w: index %s is %d bytes; at most %d", ErrRefused, d.Digest, d.Size, maxMetaBytes)
			}
			if err := metaBlob(dir, "index", d.Digest); err != nil {
				return nil, err
			}
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("%w: index %s: %s", ErrRefused, d.Digest, quoteErr(err))
			}
			cm, err := child.IndexManifest()
			if err != nil {
				return nil, fmt.Errorf("%w: index %s: %s", ErrRefused, d.Digest, quoteErr(err))
			}
			for _, cd := range cm.Manifests {
				if !cd.MediaType.IsImage() {
					continue
				}
				if cd.Platform == nil {
					// An index entry that names no platform cannot be
					// chosen for this host.
					others = append(others, "unspecified")
					continue
				}
				if err := add(child, cd); err != nil {
					return nil, err
				}
			}
		}
	}
	switch len(found) {
	case 1:
		m, err := found[0].Manifest()
		if err != nil {
			return nil, fmt.Errorf("%w: manifest: %s", ErrRefused, quoteErr(err))
		}
		if err := metaBlob(dir, "config", m.Config.Digest); err != nil {
			return nil, err
		}
		return found[0], nil
	case 0:
		slices.Sort(others)
		return nil, fmt.Errorf("%w: no image for this host's platform %s in the tarball (it has: %s)", ErrRefused, Platform.String(), orNone(slices.Compact(others)))
	}
	return nil, fmt.Errorf("%w: the tarball holds %d images for %s; import one at a time", ErrRefused, len(found), Platform.String())
}

// metaBlob refuses a manifest, index or config blob of the layout at dir
// over maxMetaBytes on disk, whatever its descriptor claims: the library
// reads such a blob whole.
func metaBlob(dir, what string, h v1.Hash) error {
	if h.Algorithm != "sha256" {
		return fmt.Errorf("%w: %s digest %s: want sha256", ErrRefused, what, Quote(h.String()))
	}
	st, err := os.Stat(filepath.Join(dir, "blobs", h.Algorithm, h.Hex))
	if err != nil {
		return fmt.Errorf("%w: %s %s: %s", ErrRefused, what, h, quoteErr(err))
	}
	if st.Size() > maxMetaBytes {
		return fmt.Errorf("%w: %s %s is %d bytes; at most %d", ErrRefused, what, h, st.Size(), maxMetaBytes)
	}
	return nil
}

func platformMatches(p v1.Platform) bool {
	return p.OS == Platform.OS && p.Architecture == Platform.Architecture
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	if len(s) > 8 {
		s = append(s[:8:8], fmt.Sprintf("and %d more", len(s)-8))
	}
	return strings.Join(s, ", ")
}

// vet checks the image's manifest, config and every layer entry.
func vet(raw v1.Image, lim Limits) (*Image, error) {
	m, err := raw.Manifest()
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %s", ErrRefused, quoteErr(err))
	}
	if m.Config.Size > maxMetaBytes {
		return nil, fmt.Errorf("%w: config is %d bytes; at most %d", ErrRefused, m.Config.Size, maxMetaBytes)
	}
	if len(m.Layers) > lim.MaxLayers {
		return nil, fmt.Errorf("%w: %d layers; at most %d", ErrRefused, len(m.Layers), lim.MaxLayers)
	}
	if len(m.Layers) == 0 {
		return nil, fmt.Errorf("%w: the image has no layers", ErrRefused)
	}
	cfg, err := raw.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%w: config: %s", ErrRefused, quoteErr(err))
	}
	if !platformMatches(v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture}) {
		return nil, fmt.Errorf("%w: the image is for %s/%s, not this host's %s", ErrRefused, Quote(cfg.OS), Quote(cfg.Architecture), Platform.String())
	}
	d, err := raw.Digest()
	if err != nil {
		return nil, fmt.Errorf("%w: digest: %s", ErrRefused, quoteErr(err))
	}
	layers, err := raw.Layers()
	if err != nil {
		return nil, fmt.Errorf("%w: layers: %s", ErrRefused, quoteErr(err))
	}
	w := &walker{lim: lim, files: map[string]bool{}, top: map[string]bool{}, links: map[string]bool{}, parents: map[string]bool{}}
	for i, l := range layers {
		if err := w.layer(i, l); err != nil {
			return nil, err
		}
	}
	var missing []string
	for _, mp := range images.Mountpoints() {
		if !w.top[strings.TrimPrefix(mp.Path, "/")] {
			missing = append(missing, mp.Path)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: the image lacks the directories %s: the sandbox's root is read-only, and Airlock mounts over these, so they must exist (empty) in the image",
			ErrRefused, strings.Join(missing, ", "))
	}
	return &Image{Image: raw, Digest: d.String(), Size: w.bytes, Config: cfg}, nil
}

// walker vets the layers' entries in order, bottom layer first.
type walker struct {
	lim     Limits
	bytes   int64
	entries int
	// files are the regular files so far, which a hard link may name.
	files map[string]bool
	// top records, per top-level name, whether it is a directory now.
	top map[string]bool
	// links are the symlinks so far, and parents every directory that
	// holds an entry: no entry may lie beneath a symlink, and no symlink
	// may replace a directory that holds entries, so that every path's
	// parents are real directories and a link's target, joined to its
	// directory as text, is where it leads.
	links, parents map[string]bool
}

func (w *walker) layer(i int, l v1.Layer) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return fmt.Errorf("%w: layer %d: %s", ErrRefused, i, quoteErr(err))
	}
	defer rc.Close()
	// Counting the stream, not the headers' sizes, bounds the work of a
	// layer whose compression hides a bomb.
	cr := &countReader{r: rc, left: w.lim.MaxBytes - w.bytes}
	tr := tar.NewReader(cr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errTooBig) || errors.Is(cr.err, errTooBig) {
			return w.tooBig()
		}
		if err != nil {
			return fmt.Errorf("%w: layer %d: %s", ErrRefused, i, quoteErr(err))
		}
		w.entries++
		if w.entries > w.lim.MaxEntries {
			return fmt.Errorf("%w: more than %d files in the layers", ErrRefused, w.lim.MaxEntries)
		}
		if err := w.entry(hdr); err != nil {
			return fmt.Errorf("%w: layer %d: %s: %s", ErrRefused, i, Quote(hdr.Name), err)
		}
	}
	// The rest of the stream, past the end of the archive, counts too.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		if errors.Is(err, errTooBig) {
			return w.tooBig()
		}
		return fmt.Errorf("%w: layer %d: %s", ErrRefused, i, quoteErr(err))
	}
	w.bytes += cr.n
	return nil
}

func (w *walker) tooBig() error {
	return fmt.Errorf("%w: the layers are over %d bytes uncompressed", ErrRefused, w.lim.MaxBytes)
}

// entry vets one layer entry and records it. The reason it returns is
// written for an operator, who reads it after the entry's name.
func (w *walker) entry(hdr *tar.Header) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if w.links[dir] {
			return fmt.Errorf("an entry beneath the symlink %s, which could lead it anywhere", Quote(dir))
		}
	}
	base := path.Base(name)
	if strings.HasPrefix(base, ".wh.") {
		return errors.New("a whiteout, which deletes a file of a lower layer: Airlock imports layers that only add, so that every file it vets is one the agent sees; flatten the image first (crane flatten, or a single-stage build)")
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") || strings.HasPrefix(k, "LIBARCHIVE.xattr.") {
			return fmt.Errorf("an extended attribute %s: file capabilities and security labels are not imported", Quote(k))
		}
	}
	mode := hdr.Mode
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		if mode&04000 != 0 {
			return errors.New("a setuid file")
		}
		if mode&02000 != 0 {
			return errors.New("a setgid file")
		}
		w.files[name] = true
	case tar.TypeDir:
		if mode&04000 != 0 {
			return errors.New("a setuid directory")
		}
		// A setgid directory (Debian's /var/local, /var/mail) only passes
		// its group on to files made in it, and the root is read-only.
	case tar.TypeSymlink:
		if err := checkSymlink(name, hdr.Linkname); err != nil {
			return err
		}
		if name == "." || w.parents[name] {
			return errors.New("a symlink in place of a directory that holds entries")
		}
		delete(w.files, name)
	case tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("a hard link to %s: %v", Quote(hdr.Linkname), err)
		}
		if !w.files[target] {
			return fmt.Errorf("a hard link to %s, which is not a regular file of the image before it", Quote(hdr.Linkname))
		}
		w.files[name] = true
	case tar.TypeChar, tar.TypeBlock:
		return errors.New("a device node: the sandbox gets only the runtime's own devices")
	case tar.TypeFifo:
		return errors.New("a FIFO")
	default:
		return fmt.Errorf("of tar type %s, which an image layer has no use for", strconv.QuoteToASCII(string(hdr.Typeflag)))
	}
	if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA && hdr.Typeflag != tar.TypeLink {
		delete(w.files, name)
	}
	if !strings.Contains(name, "/") {
		w.top[name] = hdr.Typeflag == tar.TypeDir
	}
	w.links[name] = hdr.Typeflag == tar.TypeSymlink
	for dir := path.Dir(name); dir != "." && !w.parents[dir]; dir = path.Dir(dir) {
		w.parents[dir] = true
	}
	return nil
}

// cleanName returns a layer path relative to the root, refusing one that
// is empty, has a ".." component or is too long.
func cleanName(name string) (string, error) {
	if len(name) > 4096 {
		return "", errors.New("a path over 4096 bytes")
	}
	if strings.ContainsRune(name, 0) {
		return "", errors.New("a path with NUL")
	}
	if slices.Contains(strings.Split(name, "/"), "..") {
		return "", errors.New("a path with a '..' component")
	}
	clean := strings.TrimPrefix(path.Clean("/"+name), "/")
	if clean == "" {
		return ".", nil
	}
	return clean, nil
}

// checkSymlink refuses an absolute target, and a relative one that climbs
// above the root from the link's directory. Inside the sandbox either
// resolves within the root; the refusal keeps every link of an image one
// that no reader on the host, following it, can be led out by.
func checkSymlink(name, target string) error {
	switch {
	case target == "":
		return errors.New("a symlink with no target")
	case len(target) > 4096:
		return errors.New("a symlink whose target is over 4096 bytes")
	case path.IsAbs(target):
		return fmt.Errorf("an absolute symlink to %s: make it relative", Quote(target))
	}
	resolved := path.Join(path.Dir(name), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("a symlink to %s, which leads out of the root filesystem", Quote(target))
	}
	return nil
}

var errTooBig = errors.New("over the size cap")

// countReader counts what it reads, and fails once more than left bytes
// were read.
type countReader struct {
	r    io.Reader
	n    int64
	left int64
	err  error
}

func (c *countReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.left {
		c.err = errTooBig
		return n, errTooBig
	}
	return n, err
}

// Quote quotes s from an image for a message, a log line or a label: at
// most 128 bytes of it, with every byte that is not printable ASCII
// escaped, so that it can neither steer a terminal nor hide text.
func Quote(s string) string { return quoteN(s, 128) }

// quoteErr quotes a library's error, which may carry names from the
// image, as Quote does, cut at 256 bytes.
func quoteErr(err error) string { return quoteN(err.Error(), 256) }

func quoteN(s string, max int) string {
	if len(s) > max {
		return strconv.QuoteToASCII(s[:max]) + "..."
	}
	return strconv.QuoteToASCII(s)
}

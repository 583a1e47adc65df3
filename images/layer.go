package images

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// skeletonFiles give uid 0 and 65534 names, so tools that look the user up
// (and error messages that print it) behave.
var skeletonFiles = map[string]string{
	"/etc/passwd": "root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n",
	"/etc/group":  "root:x:0:\nnobody:x:65534:\n",
}

// epoch is every entry's mtime: wall-clock time would make rebuilds differ.
var epoch = time.Unix(0, 0).UTC()

// entry is one node of the layer's tree, keyed by its absolute path.
type entry struct {
	dir  bool
	mode int64
	data []byte
	// link, when set, makes the entry a symlink to it.
	link string
	gid  int
}

// layerTree collects the skeleton and spec files, refusing any overlap, so
// what ends up in the image is exactly what the Spec asked for.
func layerTree(spec Spec) (map[string]*entry, error) {
	dirs := SkeletonDirs()
	tree := make(map[string]*entry, len(dirs)+len(skeletonFiles)+len(spec.Files))
	for _, d := range dirs {
		tree[d.Path] = &entry{dir: true, mode: d.Mode}
	}
	for p, data := range skeletonFiles {
		tree[p] = &entry{mode: 0o444, data: []byte(data)}
	}
	for _, f := range spec.Files {
		if err := checkImagePath(f.Path); err != nil {
			return nil, err
		}
		if f.Mode&^0o777 != 0 {
			return nil, fmt.Errorf("%w: file %q: mode %v has bits beyond rwx permissions", ErrInvalidSpec, f.Path, f.Mode)
		}
		if _, ok := tree[f.Path]; ok {
			return nil, fmt.Errorf("%w: file %q is already in the image", ErrInvalidSpec, f.Path)
		}
		if err := addParents(tree, f.Path); err != nil {
			return nil, err
		}
		data, err := readHostFile(f.HostPath)
		if err != nil {
			return nil, fmt.Errorf("file %q: %w", f.Path, err)
		}
		mode := int64(f.Mode)
		if mode == 0 {
			mode = 0o444
		}
		tree[f.Path] = &entry{mode: mode, data: data, gid: f.GID}
	}
	for _, l := range spec.Symlinks {
		if err := checkImagePath(l.Path); err != nil {
			return nil, err
		}
		if _, ok := tree[l.Path]; ok {
			return nil, fmt.Errorf("%w: symlink %q is already in the image", ErrInvalidSpec, l.Path)
		}
		// Only links to files of the image itself: a link that leaves it
		// would point into whatever the sandbox mounts there.
		target := l.Target
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(l.Path), target)
		}
		if e, ok := tree[target]; !ok || e.dir || e.link != "" {
			return nil, fmt.Errorf("%w: symlink %q: target %q is not a file of the image", ErrInvalidSpec, l.Path, l.Target)
		}
		if err := addParents(tree, l.Path); err != nil {
			return nil, err
		}
		tree[l.Path] = &entry{mode: 0o777, link: l.Target}
	}
	return tree, nil
}

// checkImagePath accepts only absolute, clean paths below "/": anything else
// is ambiguous about where the file lands.
func checkImagePath(p string) error {
	switch {
	case !path.IsAbs(p):
		return fmt.Errorf("%w: path %q is not absolute", ErrInvalidSpec, p)
	case path.Clean(p) != p:
		return fmt.Errorf("%w: path %q is not clean (want %q)", ErrInvalidSpec, p, path.Clean(p))
	case p == "/":
		return fmt.Errorf("%w: path %q is the root directory", ErrInvalidSpec, p)
	}
	return nil
}

// addParents creates missing parent directories of p as 0755 and refuses a
// parent that is already a file.
func addParents(tree map[string]*entry, p string) error {
	for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
		e, ok := tree[dir]
		if !ok {
			tree[dir] = &entry{dir: true, mode: 0o755}
			continue
		}
		if !e.dir {
			return fmt.Errorf("%w: file %q is below %q, which is a file", ErrInvalidSpec, p, dir)
		}
	}
	return nil
}

// readHostFile reads a regular file whole. The size checks make sure a file
// growing or shrinking during the build fails it rather than producing a
// layer that matches no version of the file.
func readHostFile(name string) ([]byte, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: empty host path", ErrInvalidSpec)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: host path %q is not a regular file", ErrInvalidSpec, name)
	}
	data, err := io.ReadAll(io.LimitReader(f, fi.Size()+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) != fi.Size() {
		return nil, fmt.Errorf("read %s: size changed during the build", name)
	}
	return data, nil
}

// writeLayer writes tree as an uncompressed tar in path order, with every
// field that could vary between hosts pinned.
func writeLayer(tree map[string]*entry) ([]byte, error) {
	paths := make([]string, 0, len(tree))
	for p := range tree {
		paths = append(paths, p)
	}
	// Sorting by path puts every directory before its children, since a
	// parent path is a prefix of its children's.
	slices.Sort(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := tree[p]
		name := strings.TrimPrefix(p, "/")
		hdr := &tar.Header{
			Name:    name,
			Mode:    e.mode,
			Gid:     e.gid,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		switch {
		case e.dir:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case e.link != "":
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = e.link
		default:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", p, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

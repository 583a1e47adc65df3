package images

import (
	"archive/tar"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"slices"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// LayoutBlob is one blob of an OCI image layout: its sha256 digest, and
// Size bytes of content to read from Content.
type LayoutBlob struct {
	Digest  digest.Digest
	Size    int64
	Content io.Reader
}

// WriteLayout writes an OCI image-layout tarball to w: the blobs, then
// index and layout as index.json and oci-layout. It writes them in sorted
// name order with pinned headers (mode, mtime at the epoch, PAX format),
// so that the tarball is as reproducible as what it holds; Build and
// package rootfs both write theirs with it. A blob whose Content does not
// hold exactly Size bytes fails it, as would any digest but sha256, which
// is the only blobs directory it writes. A digest given twice is written
// once.
func WriteLayout(w io.Writer, blobs []LayoutBlob, index, layout []byte) error {
	for _, b := range blobs {
		if err := b.Digest.Validate(); err != nil || b.Digest.Algorithm() != digest.SHA256 {
			return fmt.Errorf("blob %q: want a sha256 digest", b.Digest)
		}
	}
	// All digests share the sha256 prefix, so sorting them sorts the paths.
	blobs = slices.Clone(blobs)
	slices.SortFunc(blobs, func(a, b LayoutBlob) int { return cmp.Compare(a.Digest, b.Digest) })
	blobs = slices.CompactFunc(blobs, func(a, b LayoutBlob) bool { return a.Digest == b.Digest })

	tw := tar.NewWriter(w)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{
			Name: name, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX,
		})
	}
	file := func(name string, size int64, r io.Reader) error {
		err := tw.WriteHeader(&tar.Header{
			Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: epoch, Format: tar.FormatPAX,
		})
		if err != nil {
			return err
		}
		// The tar writer refuses more than size bytes; fewer is caught here.
		n, err := io.Copy(tw, r)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if n != size {
			return fmt.Errorf("%s: %d bytes, want %d", name, n, size)
		}
		return nil
	}

	if err := dir(v1.ImageBlobsDir + "/"); err != nil {
		return err
	}
	if err := dir(v1.ImageBlobsDir + "/sha256/"); err != nil {
		return err
	}
	for _, b := range blobs {
		if err := file(v1.ImageBlobsDir+"/sha256/"+b.Digest.Encoded(), b.Size, b.Content); err != nil {
			return err
		}
	}
	if err := file(v1.ImageIndexFile, int64(len(index)), bytes.NewReader(index)); err != nil {
		return err
	}
	if err := file(v1.ImageLayoutFile, int64(len(layout)), bytes.NewReader(layout)); err != nil {
		return err
	}
	return tw.Close()
}

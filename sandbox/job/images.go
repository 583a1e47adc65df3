package job

import (
	"context"
	"errors"
	"os"
	"time"
)

// Errors of an ImageStore, wrapped with %w; the broker maps them to gRPC
// codes.
var (
	// ErrImageRefused means the image is one Airlock will not run; the
	// message names the entry or field and the reason.
	ErrImageRefused = errors.New("image refused")
	// ErrImageNotFound means no imported image has the name (and digest).
	ErrImageNotFound = errors.New("image not found")
	// ErrImageInUse means a loaded profile names the image.
	ErrImageInUse = errors.New("image in use")
)

// ImageStore imports, lists and removes the operator's own agent images.
// The broker defines it, as it does Runner, so that it never links
// containerd; package sandbox implements it.
type ImageStore interface {
	// ImportImage reads the OCI layout or docker save tarball in f, a
	// file the broker spooled and handed over at its start (the store may
	// open it again by name while the call lasts), vets it and records it as name, by its
	// manifest digest. Importing the same image again is not an error.
	// On error nothing of it is left.
	ImportImage(ctx context.Context, name string, f *os.File) (ImageInfo, error)
	// ListImages lists the imported images, by name then digest.
	ListImages(ctx context.Context) ([]ImageInfo, error)
	// RemoveImage removes the images of name, or only the one of digest
	// when it is not empty, with everything of theirs in containerd, and
	// returns what it removed. A profile's image is refused.
	RemoveImage(ctx context.Context, name, digest string) ([]ImageInfo, error)
}

// ImageInfo describes one imported image.
type ImageInfo struct {
	Name string
	// Digest is the manifest digest, sha256:HEX: what a profile pins.
	Digest string
	// Size is the uncompressed size of its layers.
	Size int64
	// Imported is when it was imported.
	Imported time.Time
	// Profiles are the loaded profiles that run it.
	Profiles []string
	// Created is false when ImportImage found it imported already.
	Created bool
}

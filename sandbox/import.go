package sandbox

import (
	"bytes"
	"context"
	"fmt"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"

	"github.com/airlock/airlock/images"
)

// ensureImage builds spec and imports it unless containerd already holds an
// image of that name with the same digest. Builds are deterministic, so an
// unchanged agent binary is never imported twice.
func (r *Runner) ensureImage(ctx context.Context, spec images.Spec) (*loadedImage, error) {
	var buf bytes.Buffer
	dgst, err := images.Build(&buf, spec)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	ref := images.ImageRef(spec.Name)
	img, err := r.client.GetImage(ctx, ref)
	switch {
	case err == nil && img.Target().Digest == dgst:
		r.log.Debug("image present", "ref", ref, "digest", dgst)
	case err == nil || errdefs.IsNotFound(err):
		imported, err := r.client.Import(ctx, &buf)
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		if len(imported) != 1 || imported[0].Name != ref || imported[0].Target.Digest != dgst {
			return nil, fmt.Errorf("import of %s gave unexpected images %v", ref, imported)
		}
		img = containerd.NewImage(r.client, imported[0])
		r.log.Info("image imported", "ref", ref, "digest", dgst)
	default:
		return nil, fmt.Errorf("look up %s: %w", ref, err)
	}
	loaded, err := r.unpacked(ctx, img)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	loaded.waits = spec.WaitsForStart
	return loaded, nil
}

package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	ctrimages "github.com/containerd/containerd/images"
	"github.com/containerd/containerd/leases"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/uuid"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock/airlock/images/agentimage"
	"github.com/airlock/airlock/images/imageref"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/job"
)

// AgentImage is an imported image a profile runs, for Config.AgentImages.
type AgentImage struct {
	Profile string
	Agent   *policy.Agent
}

// AgentImagesOf lists the imported images the profiles run.
func AgentImagesOf(profiles []*policy.Profile) []AgentImage {
	var out []AgentImage
	for _, p := range profiles {
		if p.Agent != nil {
			out = append(out, AgentImage{Profile: p.Name, Agent: p.Agent})
		}
	}
	return out
}

// Labels of an imported image's containerd record.
const (
	labelImageSize = "airlock/size"
)

// agentImage is what a job needs of an imported image, read at start.
type agentImage struct {
	// ref is NAME@DIGEST, as the profile names it.
	ref string
	// args and cwd are the agent's process: the profile's agent.command,
	// or the image's entrypoint and cmd; and the image's working
	// directory when it is a clean absolute path, else /.
	args []string
	cwd  string
	// overridden says, one line each, what of the image's configuration
	// the sandbox does not take. Quoted and capped: it comes from the
	// image.
	overridden []string
}

var _ job.ImageStore = (*Runner)(nil)

// importDir is where imports unpack an OCI layout, below the state dir.
func (r *Runner) importDir() string { return filepath.Join(r.stateDir, "imports") }

// loadAgentImages finds the image of every profile that names one. A
// profile whose image is not imported, or not with its digest, stops the
// runner: its jobs must never run another agent instead.
func (r *Runner) loadAgentImages(ctx context.Context, list []AgentImage) error {
	for _, a := range list {
		key := a.Agent.Key()
		r.agentProfiles[a.Agent.Image] = append(r.agentProfiles[a.Agent.Image], a.Profile)
		if _, ok := r.images[key]; ok {
			continue
		}
		name, dgst := a.Agent.ImageName(), a.Agent.ImageDigest()
		rec, err := r.client.ImageService().Get(ctx, imageref.ContainerdName(name, dgst))
		if errdefs.IsNotFound(err) {
			have, lerr := r.ListImages(ctx)
			if lerr != nil {
				return lerr
			}
			return notImported(a.Profile, name, dgst, have)
		}
		if err != nil {
			return fmt.Errorf("profile %s: agent.image %s: %w", a.Profile, a.Agent.Image, err)
		}
		if rec.Target.Digest.String() != dgst {
			return fmt.Errorf("profile %s: agent.image %s: the record holds %s; remove it with `airlock image rm %s` and import it again", a.Profile, a.Agent.Image, rec.Target.Digest, a.Agent.Image)
		}
		img := containerd.NewImage(r.client, rec)
		loaded, err := r.unpacked(ctx, img)
		if err != nil {
			return fmt.Errorf("profile %s: agent.image %s: %w", a.Profile, a.Agent.Image, err)
		}
		cfg, err := readImageConfig(ctx, img)
		if err != nil {
			return fmt.Errorf("profile %s: agent.image %s: %w", a.Profile, a.Agent.Image, err)
		}
		loaded.agent, err = agentOf(a, cfg)
		if err != nil {
			return fmt.Errorf("profile %s: agent.image %s: %w", a.Profile, a.Agent.Image, err)
		}
		r.images[key] = loaded
		r.log.Info("agent image loaded", "profile", a.Profile, "image", a.Agent.Image)
	}
	return nil
}

// notImported says what is wrong with a profile's image, which is not
// imported with its digest, and what to do, given the images that are.
func notImported(profile, name, dgst string, have []job.ImageInfo) error {
	var digests []string
	for _, i := range have {
		if i.Name == name {
			digests = append(digests, i.Digest)
		}
	}
	if len(digests) > 0 {
		return fmt.Errorf("profile %s: agent.image %s@%s: %s is imported with digest %s, not %s: pin the imported digest in the profile, or import the image the profile names (`airlock image import FILE --name %s`); Airlock never runs another image in its place",
			profile, name, dgst, name, strings.Join(digests, ", "), dgst, name)
	}
	return fmt.Errorf("profile %s: agent.image %s@%s is not imported: start airlockd without this profile, run `airlock image import FILE --name %s`, check that it prints %s, then restart with the profile; Airlock never runs another agent in its place",
		profile, name, dgst, name, dgst)
}

// unpacked makes sure the image is unpacked and reads its chain ID.
func (r *Runner) unpacked(ctx context.Context, img containerd.Image) (*loadedImage, error) {
	ok, err := img.IsUnpacked(ctx, snapshotter)
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := img.Unpack(ctx, snapshotter); err != nil {
			return nil, fmt.Errorf("unpack: %w", err)
		}
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return nil, fmt.Errorf("root filesystem: %w", err)
	}
	return &loadedImage{Image: img, chainID: identity.ChainID(diffIDs).String()}, nil
}

// maxConfigBytes caps an image config read back from containerd; import
// refused larger ones.
const maxConfigBytes = 4 << 20

// readImageConfig reads the image's config, which is as hostile as the
// rest of the image.
func readImageConfig(ctx context.Context, img containerd.Image) (*v1.ConfigFile, error) {
	desc, err := img.Config(ctx)
	if err != nil {
		return nil, err
	}
	if desc.Size > maxConfigBytes {
		return nil, fmt.Errorf("config is %d bytes; at most %d", desc.Size, maxConfigBytes)
	}
	b, err := content.ReadBlob(ctx, img.ContentStore(), desc)
	if err != nil {
		return nil, err
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &cfg, nil
}

// agentOf takes the agent's process from the image's config, and nothing
// else of it.
func agentOf(a AgentImage, cfg *v1.ConfigFile) (*agentImage, error) {
	c := cfg.Config
	ag := &agentImage{ref: a.Agent.Image, cwd: "/"}
	ag.args = append(slices.Clone(c.Entrypoint), c.Cmd...)
	if len(a.Agent.Command) > 0 {
		ag.args = slices.Clone(a.Agent.Command)
	}
	switch {
	case len(ag.args) == 0:
		return nil, errors.New("the image has neither ENTRYPOINT nor CMD: set agent.command in the profile")
	case len(ag.args) > 64:
		return nil, fmt.Errorf("the image's ENTRYPOINT and CMD have %d words; at most 64 (set agent.command)", len(ag.args))
	}
	for _, w := range ag.args {
		if len(w) > 4096 || strings.ContainsRune(w, 0) {
			return nil, errors.New("a word of the image's ENTRYPOINT or CMD is over 4096 bytes or holds NUL: set agent.command")
		}
	}
	if wd := c.WorkingDir; wd != "" && path.IsAbs(wd) && path.Clean(wd) == wd && len(wd) <= 4096 {
		ag.cwd = wd
	}
	ag.overridden = overridden(a, cfg)
	return ag, nil
}

// maxOverridden caps the lines explain shows of an image's ignored
// configuration.
const maxOverridden = 32

// overridden lists, one line each, what of the image's configuration the
// sandbox ignores, and what applies instead. Every value from the image
// is quoted and capped; of ENV, only the names are shown, since the
// values may be secrets.
func overridden(a AgentImage, cfg *v1.ConfigFile) []string {
	c := cfg.Config
	q := agentimage.Quote
	var out []string
	if c.User != "" {
		out = append(out, fmt.Sprintf("image USER %s -> the profile's uid and gid (isolation.uid, isolation.gid)", q(c.User)))
	}
	for _, e := range c.Env {
		k, _, _ := strings.Cut(e, "=")
		out = append(out, fmt.Sprintf("image ENV %s dropped: the sandbox's environment is Airlock's alone", q(k)))
	}
	for _, p := range slices.Sorted(mapKeys(c.ExposedPorts)) {
		out = append(out, fmt.Sprintf("image EXPOSE %s ignored: nothing reaches a listener in the sandbox", q(p)))
	}
	for _, v := range slices.Sorted(mapKeys(c.Volumes)) {
		out = append(out, fmt.Sprintf("image VOLUME %s ignored: no volume is mounted; the root is the profile's (read-only when isolation.readOnlyRoot)", q(v)))
	}
	if c.Healthcheck != nil {
		out = append(out, "image HEALTHCHECK ignored: nothing probes the agent; its job's deadline ends it")
	}
	if c.StopSignal != "" {
		out = append(out, fmt.Sprintf("image STOPSIGNAL %s ignored: a job past its deadline is killed", q(c.StopSignal)))
	}
	if len(c.Labels) > 0 {
		out = append(out, fmt.Sprintf("image LABELs ignored (%d)", len(c.Labels)))
	}
	if len(c.Shell) > 0 || len(c.OnBuild) > 0 {
		out = append(out, "image SHELL and ONBUILD ignored")
	}
	if wd := c.WorkingDir; wd != "" && (!path.IsAbs(wd) || path.Clean(wd) != wd || len(wd) > 4096) {
		out = append(out, fmt.Sprintf("image WORKDIR %s ignored: not a clean absolute path; the agent starts in /", q(wd)))
	}
	if len(a.Agent.Command) > 0 && (len(c.Entrypoint) > 0 || len(c.Cmd) > 0) {
		out = append(out, "image ENTRYPOINT and CMD replaced by the profile's agent.command")
	}
	if len(out) > maxOverridden {
		out = append(out[:maxOverridden], fmt.Sprintf("and %d more", len(out)-maxOverridden))
	}
	return out
}

func mapKeys(m map[string]struct{}) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// ImportImage implements job.ImageStore: it vets the tarball with
// agentimage, writes its blobs into containerd inside a lease of its own,
// records the image as imageref.ContainerdName(name, digest) and unpacks it. The
// lease goes at the end, whatever happened: on success the image record
// holds what it needs, and on failure nothing holds anything.
func (r *Runner) ImportImage(ctx context.Context, name string, f *os.File) (info job.ImageInfo, retErr error) {
	if !imageref.ValidName(name) {
		return info, fmt.Errorf("%w: name %s must be %s", job.ErrImageRefused, agentimage.Quote(name), imageref.NameRule)
	}
	ctx = namespaces.WithNamespace(ctx, footprint.Namespace)
	img, closeImg, err := agentimage.Read(f.Name(), r.importDir(), r.imageLimits)
	if err != nil {
		if errors.Is(err, agentimage.ErrRefused) {
			return info, fmt.Errorf("%w%s", job.ErrImageRefused, strings.TrimPrefix(err.Error(), agentimage.ErrRefused.Error()))
		}
		return info, err
	}
	defer closeImg()
	ref := imageref.ContainerdName(name, img.Digest)
	info = job.ImageInfo{Name: name, Digest: img.Digest, Size: img.Size, Profiles: r.agentProfiles[imageref.Join(name, img.Digest)]}
	if rec, err := r.client.ImageService().Get(ctx, ref); err == nil {
		return r.alreadyImported(ctx, rec, info)
	}

	// The import runs to its end even when the caller has gone, within
	// importTimeout; its cleanup has a deadline of its own, so that an
	// import that ran out of time is still undone.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), importTimeout)
	defer cancel()
	cleanup := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	}
	ls := r.client.LeasesService()
	lease, err := ls.Create(cctx, leases.WithID("airlock-import-"+uuid.NewString()),
		leases.WithLabels(map[string]string{LabelInstance: r.instance}), leases.WithExpiration(time.Hour))
	if err != nil {
		return info, fmt.Errorf("lease: %w", err)
	}
	defer func() {
		dctx, cancel := cleanup()
		defer cancel()
		if err := ls.Delete(dctx, lease, leases.SynchronousDelete); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("delete import lease: %w", err))
		}
	}()
	lctx := leases.WithLease(cctx, lease.ID)
	created := false
	defer func() {
		if retErr != nil && created {
			dctx, cancel := cleanup()
			defer cancel()
			if err := r.client.ImageService().Delete(dctx, ref, ctrimages.SynchronousDelete()); err != nil && !errdefs.IsNotFound(err) {
				retErr = errors.Join(retErr, fmt.Errorf("remove the half-imported image: %w", err))
			}
		}
	}()
	target, err := r.writeBlobs(ctx, lctx, lease, img)
	if err != nil {
		return info, err
	}
	rec := ctrimages.Image{Name: ref, Target: target, Labels: map[string]string{labelImageSize: strconv.FormatInt(img.Size, 10)}}
	if rec, err = r.client.ImageService().Create(lctx, rec); errdefs.IsAlreadyExists(err) {
		// Another import of the same image won the race; its content is
		// this one's, digest for digest.
		if rec, err = r.client.ImageService().Get(lctx, ref); err == nil {
			return r.alreadyImported(ctx, rec, info)
		}
	}
	if err != nil {
		return info, fmt.Errorf("record %s: %w", ref, err)
	}
	created = true
	if err := containerd.NewImage(r.client, rec).Unpack(lctx, snapshotter); err != nil {
		return info, fmt.Errorf("unpack: %w", err)
	}
	info.Imported, info.Created = rec.CreatedAt, true
	r.log.Info("agent image imported", "name", name, "digest", img.Digest, "size", img.Size)
	return info, nil
}

// importTimeout bounds one import's writing and unpacking of up to the
// layers' cap.
const importTimeout = 10 * time.Minute

// alreadyImported answers an import of an image containerd holds: it is
// unpacked, in case an airlockd stopped between its record and its unpack.
func (r *Runner) alreadyImported(ctx context.Context, rec ctrimages.Image, info job.ImageInfo) (job.ImageInfo, error) {
	if _, err := r.unpacked(ctx, containerd.NewImage(r.client, rec)); err != nil {
		return info, err
	}
	info.Imported = rec.CreatedAt
	return info, nil
}

// writeBlobs writes the image's layers, config and manifest into the
// content store, each verified against its digest and held by the lease,
// and returns the manifest's descriptor. The manifest's labels tie the
// others to it for containerd's garbage collector.
func (r *Runner) writeBlobs(ctx, lctx context.Context, lease leases.Lease, img *agentimage.Image) (ocispec.Descriptor, error) {
	cs := r.client.ContentStore()
	ls := r.client.LeasesService()
	write := func(desc ocispec.Descriptor, rd io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := ls.AddResource(lctx, lease, leases.Resource{ID: desc.Digest.String(), Type: "content"}); err != nil {
			return err
		}
		ref := "airlock-import-" + desc.Digest.Encoded()
		if err := content.WriteBlob(lctx, cs, ref, rd, desc); err != nil {
			_ = cs.Abort(lctx, ref)
			return fmt.Errorf("write %s: %w", desc.Digest, err)
		}
		return nil
	}
	m, err := img.Manifest()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	labels := map[string]string{"containerd.io/gc.ref.content.config": m.Config.Digest.String()}
	for i, l := range layers {
		desc := ocispec.Descriptor{MediaType: string(m.Layers[i].MediaType), Digest: digest.Digest(m.Layers[i].Digest.String()), Size: m.Layers[i].Size}
		rc, err := l.Compressed()
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("layer %d: %w", i, err)
		}
		err = write(desc, rc)
		rc.Close()
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("layer %d: %w", i, err)
		}
		labels[fmt.Sprintf("containerd.io/gc.ref.content.l.%d", i)] = desc.Digest.String()
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	cfgDesc := ocispec.Descriptor{MediaType: string(m.Config.MediaType), Digest: digest.Digest(m.Config.Digest.String()), Size: m.Config.Size}
	if err := write(cfgDesc, strings.NewReader(string(cfg))); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("config: %w", err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	target := ocispec.Descriptor{MediaType: string(mt), Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if target.Digest.String() != img.Digest {
		return ocispec.Descriptor{}, fmt.Errorf("manifest digest %s, not %s", target.Digest, img.Digest)
	}
	if err := write(target, strings.NewReader(string(raw))); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("manifest: %w", err)
	}
	// Set whether the manifest was new or already there.
	fields := make([]string, 0, len(labels))
	for k := range labels {
		fields = append(fields, "labels."+k)
	}
	if _, err := cs.Update(lctx, content.Info{Digest: target.Digest, Labels: labels}, fields...); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("manifest labels: %w", err)
	}
	return target, nil
}

// ListImages implements job.ImageStore.
func (r *Runner) ListImages(ctx context.Context) ([]job.ImageInfo, error) {
	ctx = namespaces.WithNamespace(ctx, footprint.Namespace)
	recs, err := r.client.ImageService().List(ctx)
	if err != nil {
		return nil, err
	}
	var out []job.ImageInfo
	for _, rec := range recs {
		name, dgst, ok := imageref.FromContainerdName(rec.Name)
		if !ok {
			continue
		}
		size, _ := strconv.ParseInt(rec.Labels[labelImageSize], 10, 64)
		out = append(out, job.ImageInfo{Name: name, Digest: dgst, Size: size, Imported: rec.CreatedAt, Profiles: slices.Clone(r.agentProfiles[imageref.Join(name, dgst)])})
	}
	slices.SortFunc(out, func(a, b job.ImageInfo) int {
		return strings.Compare(imageref.Join(a.Name, a.Digest), imageref.Join(b.Name, b.Digest))
	})
	return out, nil
}

// RemoveImage implements job.ImageStore. The delete is synchronous: by
// the time it returns, containerd's garbage collector has removed the
// image's content and snapshots that nothing else holds.
func (r *Runner) RemoveImage(ctx context.Context, name, dgst string) ([]job.ImageInfo, error) {
	ctx = namespaces.WithNamespace(ctx, footprint.Namespace)
	all, err := r.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	var gone []job.ImageInfo
	for _, i := range all {
		if i.Name == name && (dgst == "" || i.Digest == dgst) {
			gone = append(gone, i)
		}
	}
	if len(gone) == 0 {
		what := name
		if dgst != "" {
			what = imageref.Join(name, dgst)
		}
		return nil, fmt.Errorf("%w: %s", job.ErrImageNotFound, what)
	}
	for _, i := range gone {
		if len(i.Profiles) > 0 {
			return nil, fmt.Errorf("%w: %s@%s is the agent.image of profile %s: remove it from the profile and restart airlockd first",
				job.ErrImageInUse, i.Name, i.Digest, strings.Join(i.Profiles, ", "))
		}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	defer cancel()
	for _, i := range gone {
		if err := r.client.ImageService().Delete(cctx, imageref.ContainerdName(i.Name, i.Digest), ctrimages.SynchronousDelete()); err != nil && !errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("remove %s@%s: %w", i.Name, i.Digest, err)
		}
		r.log.Info("agent image removed", "name", i.Name, "digest", i.Digest)
	}
	return gone, nil
}

// process is the agent's process in the image: airlock-agent's, which
// SpecFor sets, or an imported image's.
func (l *loadedImage) process() oci.SpecOpts {
	if l.agent == nil {
		return func(context.Context, oci.Client, *containers.Container, *specs.Spec) error { return nil }
	}
	return WithAgentProcess(l.agent.args, l.agent.cwd)
}

package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/archive"
	"github.com/containerd/containerd/archive/compression"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/content"
	ctdimages "github.com/containerd/containerd/images"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/agent"
	"github.com/airlock/airlock/sandbox/footprint"
)

// RootfsDir is the directory under a bundle root that RunRunc runs.
const RootfsDir = "rootfs"

// ExtractRootfs unpacks image, as imported in containerd at address, into
// dir/rootfs. The layers come from containerd's content store, so the raw
// runc baseline runs the very bytes the other two do.
func ExtractRootfs(ctx context.Context, address, image, dir string) error {
	client, err := containerd.New(address, containerd.WithDefaultNamespace(footprint.Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("connect to containerd at %s: %w", address, err)
	}
	defer client.Close()
	ctx = namespaces.WithNamespace(ctx, footprint.Namespace)
	img, err := readyImage(ctx, client, image, address)
	if err != nil {
		return err
	}
	cs := client.ContentStore()
	manifest, err := ctdimages.Manifest(ctx, cs, img.Target(), img.Platform())
	if err != nil {
		return fmt.Errorf("image %s: manifest: %w", image, err)
	}
	rootfs := filepath.Join(dir, RootfsDir)
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return err
	}
	for _, layer := range manifest.Layers {
		if err := applyLayer(ctx, cs, layer, rootfs); err != nil {
			return fmt.Errorf("image %s: layer %s: %w", image, layer.Digest, err)
		}
	}
	return nil
}

func applyLayer(ctx context.Context, cs content.Store, desc ocispec.Descriptor, rootfs string) error {
	ra, err := cs.ReaderAt(ctx, desc)
	if err != nil {
		return err
	}
	defer ra.Close()
	rd, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		return err
	}
	defer rd.Close()
	_, err = archive.Apply(ctx, rootfs, rd)
	return err
}

// RunRunc runs b.N containers, b.Concurrency at a time, with `runc run` of
// a bundle under bundleRoot, which must hold the image's rootfs in
// RootfsDir (see ExtractRootfs). The bundle's config.json is the OCI spec
// the containerd baseline generates from sandbox.SpecFor, pointed at the
// shared read-only rootfs; each run gets its own config.json, output
// directory and container ID. runc, run in the foreground, destroys the
// container when it exits, so a run's latency is its whole life.
func RunRunc(ctx context.Context, bundleRoot string, b Baseline) (Stats, error) {
	return RunRaw(ctx, bundleRoot, b, "runc")
}

// RunRaw is RunRunc with the runtime binary named, runc, crun or runsc,
// which take the same command line; runsc with the flags Airlock gives it
// for the profile. The spec is the one the profile's own runtime is given.
func RunRaw(ctx context.Context, bundleRoot string, b Baseline, binary string) (Stats, error) {
	rb, err := newRuncBench(ctx, bundleRoot, b, binary)
	if err != nil {
		return Stats{}, err
	}
	defer rb.Close()
	return drive(ctx, b.N, b.Concurrency, b.Interval, rb.run)
}

// runcBench is what every raw runc run shares: the job directory, runc's
// state directory and the spec template.
type runcBench struct {
	runcPath string
	flags    []string // before runc's command line
	work     string
	state    string
	dir      *jobDir
	tmpl     *specs.Spec
	timeout  time.Duration
}

func newRuncBench(ctx context.Context, bundleRoot string, b Baseline, binary string) (_ *runcBench, retErr error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	rt, err := sandbox.RuntimeFor(b.Profile.Isolation.Runtime)
	if err != nil {
		return nil, err
	}
	runcPath, err := exec.LookPath(binary)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", binary, err)
	}
	rootfs, err := filepath.Abs(filepath.Join(bundleRoot, RootfsDir))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(rootfs, strings.TrimPrefix(images.AgentPath, "/"))); err != nil {
		return nil, fmt.Errorf("bundle root %s: no agent in %s: %w", bundleRoot, RootfsDir, err)
	}
	rb := &runcBench{runcPath: runcPath, timeout: cmp.Or(b.Profile.Limits.Timeout, time.Minute)}
	defer func() {
		if retErr != nil {
			rb.Close()
		}
	}()
	if binary == policy.RuntimeRunsc {
		// The flags only: the wrapper ForProfile writes is for the shim.
		dir, err := os.MkdirTemp("", "airlock-bench-runsc-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		rs, err := sandbox.ForProfile(dir, b.Profile)
		if err != nil {
			return nil, err
		}
		rb.flags = rs.Flags
	}
	if rb.work, err = mkWorkDir(bundleRoot, "runs-"); err != nil {
		return nil, err
	}
	// runc's own state goes under /run, a tmpfs, as the containerd shim's
	// does, so the two baselines pay the same for it.
	if rb.state, err = os.MkdirTemp("/run", "airlock-bench-runc-"); err != nil {
		return nil, err
	}
	if rb.dir, err = newJobDir(rb.work, b); err != nil {
		return nil, err
	}
	const placeholder = "airlock-bench-placeholder"
	rb.tmpl, err = oci.GenerateSpec(namespaces.WithNamespace(ctx, footprint.Namespace), nil, &containers.Container{ID: placeholder},
		append(sandbox.SpecFor(placeholder, b.Profile, sandbox.JobPaths{Input: rb.dir.input, Output: placeholder, Run: rb.dir.run}), rt.Spec...)...)
	if err != nil {
		return nil, fmt.Errorf("generate spec: %w", err)
	}
	rb.tmpl.Root.Path = rootfs
	return rb, nil
}

// Close removes the runs' directories and cgroup parent.
func (rb *runcBench) Close() {
	if rb.work != "" {
		os.RemoveAll(rb.work)
	}
	if rb.state != "" {
		os.RemoveAll(rb.state)
	}
	removeCgroupParent()
}

// run is one raw runc run: write the bundle, run it, check its result.
func (rb *runcBench) run(ctx context.Context) (retErr error) {
	dir, tmpl := rb.dir, rb.tmpl
	r, err := dir.newRun("airlock-bench-runc-")
	if err != nil {
		return err
	}
	bundle := r.output + ".bundle"
	defer func() {
		os.RemoveAll(bundle)
		if err := dir.finish(r); retErr == nil {
			retErr = err
		}
	}()
	spec := *tmpl
	spec.Mounts = make([]specs.Mount, len(tmpl.Mounts))
	copy(spec.Mounts, tmpl.Mounts)
	for i, m := range spec.Mounts {
		if m.Destination == agent.OutputDir {
			spec.Mounts[i].Source = r.output
		}
	}
	linux := *tmpl.Linux
	linux.CgroupsPath = cgroupParent + "/" + r.id
	spec.Linux = &linux
	process := *tmpl.Process
	process.Env = sandbox.Env(r.id)
	spec.Process = &process
	data, err := json.Marshal(&spec)
	if err != nil {
		return err
	}
	if err := os.Mkdir(bundle, 0o711); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return err
	}
	// runc's stderr carries the agent's too; only the start is kept, for
	// the failure message.
	stderr := &cappedBuffer{max: 4 << 10}
	// Not CommandContext: killing runc mid-run would strand the container;
	// the deadline below kills the container through runc instead.
	cmd := exec.Command(rb.runcPath, append(slices.Clip(rb.flags), "--root", rb.state, "run", "--bundle", bundle, r.id)...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-time.After(rb.timeout):
		rb.forceDelete(r.id)
		<-waited
		return fmt.Errorf("container ran past the profile's %s timeout", rb.timeout)
	case <-ctx.Done():
		rb.forceDelete(r.id)
		<-waited
		return ctx.Err()
	}
	if err != nil {
		rb.forceDelete(r.id)
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("runc run exited with status %d: %s", exit.ExitCode(), strings.TrimSpace(stderr.String()))
		}
		return fmt.Errorf("runc run: %w", err)
	}
	return nil
}

// forceDelete kills and removes a container runc left behind.
func (rb *runcBench) forceDelete(id string) {
	_ = exec.Command(rb.runcPath, append(slices.Clip(rb.flags), "--root", rb.state, "delete", "--force", id)...).Run()
}

// cappedBuffer keeps the first max bytes written to it and drops the rest.
type cappedBuffer struct {
	buf bytes.Buffer
	max int
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string { return c.buf.String() }

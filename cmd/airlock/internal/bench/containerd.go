package bench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/leases"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"

	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/footprint"
)

// snapshotter is the one Airlock's runner uses.
const snapshotter = "overlayfs"

// teardownTimeout bounds a run's cleanup, which must happen even when the
// benchmark is interrupted.
const teardownTimeout = 30 * time.Second

// RunContainerd runs b.N containers of image, b.Concurrency at a time,
// through containerd's Go client at address with no broker: each run
// creates a container on a snapshot view of the image inside a lease,
// starts its task with null IO, waits for it, and deletes task, container
// and snapshot. The image must already be imported and unpacked in
// Airlock's namespace, as airlockd does on start. A run's latency covers
// all of it, as a Spawn's covers the sandbox's teardown.
func RunContainerd(ctx context.Context, address, image string, b Baseline) (Stats, error) {
	cb, err := newContainerdBench(ctx, address, image, b)
	if err != nil {
		return Stats{}, err
	}
	defer cb.Close()
	st, err := drive(ctx, b.N, b.Concurrency, b.Interval, cb.run)
	cb.phases.into(&st)
	return st, err
}

// containerdBench is what every containerd-client run shares.
type containerdBench struct {
	client *containerd.Client
	img    containerd.Image
	root   string
	dir    *jobDir
	b      Baseline
	phases phaseTimer
}

func newContainerdBench(ctx context.Context, address, image string, b Baseline) (_ *containerdBench, retErr error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	client, err := containerd.New(address, containerd.WithDefaultNamespace(footprint.Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", address, err)
	}
	cb := &containerdBench{client: client, b: b}
	defer func() {
		if retErr != nil {
			cb.Close()
		}
	}()
	if cb.img, err = readyImage(namespaces.WithNamespace(ctx, footprint.Namespace), client, image, address); err != nil {
		return nil, err
	}
	if cb.root, err = mkWorkDir("", "airlock-bench-containerd-"); err != nil {
		return nil, err
	}
	if cb.dir, err = newJobDir(cb.root, b); err != nil {
		return nil, err
	}
	return cb, nil
}

// Close removes the runs' directories and cgroup parent and disconnects.
func (cb *containerdBench) Close() {
	if cb.root != "" {
		os.RemoveAll(cb.root)
	}
	removeCgroupParent()
	cb.client.Close()
}

func (cb *containerdBench) run(ctx context.Context) error {
	return runContainer(namespaces.WithNamespace(ctx, footprint.Namespace), cb.client, cb.img, cb.dir, cb.b, &cb.phases)
}

// readyImage returns image if containerd holds it unpacked, and otherwise
// says how to get it there.
func readyImage(ctx context.Context, client *containerd.Client, ref, address string) (containerd.Image, error) {
	img, err := client.GetImage(ctx, ref)
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("image %s is not in containerd at %s (namespace %s): start airlockd once against this containerd, and it imports the image", ref, address, footprint.Namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("look up image %s: %w", ref, err)
	}
	unpacked, err := img.IsUnpacked(ctx, snapshotter)
	if err != nil {
		return nil, err
	}
	if !unpacked {
		return nil, fmt.Errorf("image %s is not unpacked for %s: start airlockd once against this containerd, and it unpacks the image", ref, snapshotter)
	}
	return img, nil
}

// Phases of a containerd-client run, as reports name them.
const (
	// PhaseCreate is the lease, the snapshot view and the container record.
	PhaseCreate = "create"
	// PhaseTask is task creation: the shim's start and `runc create`.
	PhaseTask = "task"
	// PhaseStart is the task's start call.
	PhaseStart = "start"
	// PhaseRun is from the start call's return to the exit event.
	PhaseRun = "run"
	// PhaseTeardown deletes task, container, snapshot and lease.
	PhaseTeardown = "teardown"
)

// runContainer is one baseline run; t gets its phases if it succeeds.
// Teardown is deferred under a context the caller's cancellation cannot
// cut short, so an interrupted benchmark leaves nothing behind.
func runContainer(ctx context.Context, client *containerd.Client, img containerd.Image, dir *jobDir, b Baseline, t *phaseTimer) (retErr error) {
	steps := make(map[string]time.Duration, 5)
	last := time.Now()
	step := func(name string) {
		now := time.Now()
		steps[name] += now.Sub(last)
		last = now
	}
	// Deferred first, so it runs after every teardown step.
	defer func() {
		if retErr == nil {
			step(PhaseTeardown)
			t.add(steps)
		}
	}()
	r, err := dir.newRun("airlock-bench-")
	if err != nil {
		return err
	}
	cleanupCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
	}
	defer func() {
		if err := dir.finish(r); retErr == nil {
			retErr = err
		}
	}()
	// The run label lets airlockd's start-up reaper collect the lease of a
	// benchmark that was killed mid-run, as it does its own.
	labels := map[string]string{sandbox.LabelRun: r.id}
	lctx, done, err := client.WithLease(ctx, leases.WithID(r.id), leases.WithLabels(labels), leases.WithExpiration(time.Hour))
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	defer func() {
		c, cancel := cleanupCtx()
		defer cancel()
		if err := done(leases.WithLease(c, r.id)); err != nil && retErr == nil {
			retErr = fmt.Errorf("delete lease: %w", err)
		}
	}()
	rt, err := sandbox.ForProfile(filepath.Join(dir.root, "runsc"), b.Profile)
	if err != nil {
		return err
	}
	spec := append(append(sandbox.SpecFor(r.id, b.Profile, dir.paths(r)), oci.WithCgroup(cgroupParent+"/"+r.id)), rt.Spec...)
	container, err := client.NewContainer(lctx, r.id,
		containerd.WithImage(img),
		containerd.WithSnapshotter(snapshotter),
		containerd.WithNewSnapshotView(r.id, img),
		containerd.WithRuntime(rt.Shim, rt.Options),
		containerd.WithContainerLabels(labels),
		containerd.WithNewSpec(spec...),
	)
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	step(PhaseCreate)
	defer func() {
		c, cancel := cleanupCtx()
		defer cancel()
		if err := container.Delete(c, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) && retErr == nil {
			retErr = fmt.Errorf("delete container: %w", err)
		}
	}()
	task, err := container.NewTask(lctx, cio.NullIO)
	if err != nil {
		return fmt.Errorf("create task: %w", err)
	}
	step(PhaseTask)
	defer func() {
		c, cancel := cleanupCtx()
		defer cancel()
		if err := sandbox.DeleteTask(c, client.TaskService(), task); err != nil && retErr == nil {
			retErr = fmt.Errorf("delete task: %w", err)
		}
	}()
	exitCh, err := task.Wait(lctx)
	if err != nil {
		return fmt.Errorf("wait task: %w", err)
	}
	if err := task.Start(lctx); err != nil {
		return fmt.Errorf("start task: %w", err)
	}
	step(PhaseStart)
	var status containerd.ExitStatus
	select {
	case status = <-exitCh:
	case <-time.After(cmp.Or(b.Profile.Limits.Timeout, time.Minute)):
		return fmt.Errorf("task ran past the profile's %s timeout", b.Profile.Limits.Timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	step(PhaseRun)
	code, _, err := status.Result()
	if err != nil {
		return fmt.Errorf("task exit: %w", err)
	}
	if code != 0 {
		return fmt.Errorf("agent exited with status %d", code)
	}
	return nil
}

// Package sandbox runs broker jobs in containerd sandboxes: one container
// per job, hardened from the job's policy, inside a lease, and torn down
// completely whatever happens. It implements broker.Runner; nothing else in
// Airlock talks to containerd.
package sandbox

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/leases"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/google/uuid"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/sandbox/agent"
	"github.com/airlock/airlock/sandbox/egress"
	"github.com/airlock/airlock/sandbox/netns"
	"github.com/airlock/airlock/sandbox/toolgw"
)

const (
	// Namespace is the containerd namespace that holds everything Airlock
	// creates.
	Namespace = "airlock"
	// LabelJob labels containers and leases with the broker's job ID.
	LabelJob = "airlock/job"
	// LabelRun labels containers and leases with the sandbox's own run ID.
	LabelRun = "airlock/run"

	snapshotter = "overlayfs"
	// logCap bounds the stdout and stderr kept for the audit log.
	logCap = 64 << 10
	// outputSlack lets a result one byte over the cap still be written, so
	// that it is reported as too large rather than as a failed write.
	outputSlack = 64 << 10
)

// Config configures a Runner.
type Config struct {
	// Address is the containerd socket.
	Address string
	// StateDir holds per-job directories under jobs/.
	StateDir string
	// Images are the images jobs may name, built and imported on start.
	Images []images.Spec
	Logger *slog.Logger
	// Egress configures the egress proxy for network.mode allowlist jobs.
	Egress egress.Config
	// Pool is the address pool for job veths; zero is netns.DefaultPool.
	Pool netip.Prefix
	// ProxyPort is the proxy's port on each job gateway; zero is
	// DefaultProxyPort.
	ProxyPort uint16
}

// Runner runs jobs on containerd. It is safe for concurrent use.
type Runner struct {
	client  *containerd.Client
	jobsDir string
	images  map[string]containerd.Image
	log     *slog.Logger

	proxy     *egress.Proxy
	pool      *netns.Pool
	proxyPort uint16

	// address is containerd's socket, which names this runner's shims.
	address string
	// instance names this runner's cgroup subtree, /airlock/<instance>, so
	// that reaping never touches another broker's sandboxes.
	instance string
}

var _ broker.Runner = (*Runner)(nil)

// New connects to containerd, removes whatever a crashed predecessor left
// behind, and makes sure every configured image is present.
func New(ctx context.Context, cfg Config) (*Runner, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("sandbox: StateDir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	client, err := containerd.New(cfg.Address, containerd.WithDefaultNamespace(Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", cfg.Address, err)
	}
	r := &Runner{
		client:   client,
		jobsDir:  filepath.Join(cfg.StateDir, "jobs"),
		address:  cfg.Address,
		instance: InstanceID(cfg.StateDir),
		images:   map[string]containerd.Image{},
		log:      cfg.Logger,
	}
	ctx = namespaces.WithNamespace(ctx, Namespace)
	if err := MkdirTraversable(r.jobsDir); err != nil {
		client.Close()
		return nil, err
	}
	if err := r.Reap(ctx); err != nil {
		client.Close()
		return nil, fmt.Errorf("reap leftovers: %w", err)
	}
	// The pool is checked against the host's addresses only after the
	// reap, since a predecessor's leftover veths would overlap it.
	prefix := cfg.Pool
	if !prefix.IsValid() {
		prefix = netns.DefaultPool
	}
	if r.pool, err = netns.NewPool(prefix, r.instance); err != nil {
		client.Close()
		return nil, err
	}
	r.proxyPort = cmp.Or(cfg.ProxyPort, DefaultProxyPort)
	if cfg.Egress.Logger == nil {
		cfg.Egress.Logger = cfg.Logger
	}
	if r.proxy, err = egress.New(cfg.Egress); err != nil {
		client.Close()
		return nil, err
	}
	for _, spec := range cfg.Images {
		img, err := r.ensureImage(ctx, spec)
		if err != nil {
			client.Close()
			return nil, fmt.Errorf("image %s: %w", spec.Name, err)
		}
		r.images[spec.Name] = img
	}
	return r, nil
}

// cgroupPath is where a run's cgroup lives.
func (r *Runner) cgroupPath(runID string) string {
	return "/" + Namespace + "/" + r.instance + "/" + runID
}

// InstanceID names a state dir's cgroup subtree. It is stable for a state dir, so a restarted broker finds its
// predecessor's cgroups.
func InstanceID(stateDir string) string {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		abs = stateDir
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:6])
}

// Close stops the egress proxy and closes the containerd connection.
func (r *Runner) Close() error {
	r.removeInstanceCgroups()
	var errs []error
	if r.proxy != nil {
		errs = append(errs, r.proxy.Close())
	}
	return errors.Join(append(errs, r.client.Close())...)
}

// ImageDigest returns the manifest digest of a loaded image.
func (r *Runner) ImageDigest(name string) (string, bool) {
	img, ok := r.images[name]
	if !ok {
		return "", false
	}
	return img.Target().Digest.String(), true
}

// Run runs one job. See broker.Runner.
func (r *Runner) Run(ctx context.Context, job *broker.Job) (_ *broker.Outcome, retErr error) {
	img, ok := r.images[job.Image]
	if !ok {
		return nil, fmt.Errorf("image %q is not loaded", job.Image)
	}
	p := job.Policy
	if p == nil {
		return nil, errors.New("job has no policy")
	}
	ctx = namespaces.WithNamespace(ctx, Namespace)
	runID := "airlock-" + uuid.NewString()
	log := r.log.With("job", job.ID, "run", runID)

	var u undo
	defer func() {
		if err := u.Run(ctx); err != nil {
			log.Error("sandbox cleanup failed", "err", err)
			if retErr == nil {
				retErr = fmt.Errorf("cleanup: %w", err)
			}
		}
	}()

	// Pushed first, so it runs last: a backstop for a task containerd lost.
	u.Push(func(context.Context) error { return r.reapRun(runID) })
	dir := filepath.Join(r.jobsDir, runID)
	u.Push(func(context.Context) error { return os.RemoveAll(dir) })
	runtime, err := runtimeFor(p.Isolation.Runtime)
	if err != nil {
		return nil, err
	}
	// A job that may exec gets a tool gateway: a capability in its
	// job.json, and a run directory for the socket.
	var capability, runDir string
	if p.ExecAllowed() {
		if p.Isolation.GID == images.ToolsGID {
			return nil, fmt.Errorf("profile %s runs as gid %d, the tools group: its agent could execute busybox directly", p.Name, images.ToolsGID)
		}
		if capability, err = toolgw.NewCapability(); err != nil {
			return nil, err
		}
	}
	paths, err := prepareDir(dir, job, p.Limits.OutputBytes+outputSlack, HostID(p, p.Isolation.UID), HostID(p, p.Isolation.GID), gatewayFor(capability))
	if err != nil {
		return nil, err
	}
	u.Push(func(context.Context) error { return unmount(paths.Output) })
	if capability != "" {
		if runDir, err = prepareRunDir(dir); err != nil {
			return nil, err
		}
		paths.Run = runDir
	}

	var jn *jobNet
	if p.Network.Mode == policy.NetworkAllowlist {
		if jn, err = r.setupNetwork(ctx, &u, runID, job); err != nil {
			return nil, err
		}
		paths.NetNS, paths.ProxyURL = jn.net.Path, jn.proxyURL
	}

	labels := map[string]string{LabelJob: job.ID, LabelRun: runID}
	// Deleted by ID, and pushed before the create, for the same reason as
	// the container below: a cancelled create may still have happened.
	u.Push(func(c context.Context) error {
		return retryUnavailable(c, func() error {
			return ignoreNotFound(r.client.LeasesService().Delete(c, leases.Lease{ID: runID}, leases.SynchronousDelete))
		})
	})
	lctx, _, err := r.client.WithLease(ctx, leases.WithID(runID), leases.WithLabels(labels), leases.WithExpiration(24*time.Hour))
	if err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}

	// Pushed before the create: a create the caller's cancellation cut short
	// on this side may still have happened on containerd's, so teardown
	// looks the container up by its ID rather than trusting the return.
	u.Push(func(c context.Context) error {
		return retryUnavailable(c, func() error {
			ctr, err := r.client.LoadContainer(c, runID)
			if err != nil {
				return ignoreNotFound(err)
			}
			return deleteContainer(c, ctr)
		})
	})
	container, err := r.client.NewContainer(lctx, runID,
		containerd.WithImage(img),
		containerd.WithImageConfigLabels(img),
		containerd.WithSnapshotter(snapshotter),
		containerd.WithNewSnapshotView(runID, img),
		containerd.WithRuntime(runtime, nil),
		containerd.WithContainerLabels(labels),
		containerd.WithNewSpec(append(SpecFor(job.ID, p, paths), oci.WithCgroup(r.cgroupPath(runID)))...),
	)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}

	logs := newCappedBuffer(logCap)
	task, err := container.NewTask(lctx, cio.NewCreator(cio.WithStreams(nil, logs, logs), cio.WithFIFODir(filepath.Join(dir, "fifo"))))
	if err != nil {
		return nil, fmt.Errorf("create task: %w", err)
	}
	u.Push(func(c context.Context) error {
		return retryUnavailable(c, func() error { return deleteTask(c, task) })
	})

	// The gateway listens before the task starts, so the agent never finds
	// it missing; it is closed, ending its requests, before the task is
	// deleted.
	var gw *toolgw.Gateway
	var deadlineAt atomic.Pointer[time.Time]
	if runDir != "" {
		spec, err := container.Spec(lctx)
		if err != nil {
			return nil, fmt.Errorf("container spec: %w", err)
		}
		gw, err = toolgw.Listen(toolgw.Config{
			Socket:     filepath.Join(runDir, toolsSocket),
			Capability: capability,
			Handler: r.toolHandler(job, task, spec.Process, filepath.Join(dir, "fifo"), func() time.Time {
				if t := deadlineAt.Load(); t != nil {
					return *t
				}
				return time.Now().Add(p.Limits.Timeout)
			}),
			UID:    int(HostID(p, p.Isolation.UID)),
			GID:    int(HostID(p, p.Isolation.GID)),
			Logger: log,
		})
		if err != nil {
			return nil, err
		}
		u.Push(func(context.Context) error { return gw.Close() })
	}

	// Wait outlives the caller's context so that, after a kill, the exit is
	// still collected before teardown.
	waitCtx, stopWait := context.WithCancel(context.WithoutCancel(lctx))
	defer stopWait()
	exitCh, err := task.Wait(waitCtx)
	if err != nil {
		return nil, fmt.Errorf("wait task: %w", err)
	}
	start := time.Now()
	end := start.Add(p.Limits.Timeout)
	deadlineAt.Store(&end)
	if err := task.Start(lctx); err != nil {
		return nil, fmt.Errorf("start task: %w", err)
	}
	if job.OnStart != nil {
		job.OnStart()
	}

	out := &broker.Outcome{ImageDigest: img.Target().Digest.String()}
	deadline := time.NewTimer(p.Limits.Timeout)
	defer deadline.Stop()
	var status containerd.ExitStatus
	select {
	case status = <-exitCh:
	case <-deadline.C:
		out.TimedOut = true
		status = r.kill(waitCtx, task, exitCh, log)
	case <-ctx.Done():
		r.kill(waitCtx, task, exitCh, log)
		return nil, ctx.Err()
	}
	out.Wall = time.Since(start)
	code, _, err := status.Result()
	if err != nil {
		return nil, fmt.Errorf("task exit: %w", err)
	}
	out.ExitCode = int(code)
	if gw != nil {
		// Ends the requests still waiting (for an approval, say) now that
		// the job is gone; the deferred close is then a no-op.
		_ = gw.Close()
		if st := gw.Stats(); len(st.Refused) > 0 {
			out.GatewayRefused = st.Refused
		}
	}
	if jn != nil {
		// Closing the session ends the job's tunnels and makes its log
		// final; the deferred close is then a no-op.
		_ = jn.session.Close()
		for _, a := range jn.session.Log() {
			out.Egress = append(out.Egress, attempt(a))
		}
	}
	oom, peak, cpu := usage(waitCtx, task)
	out.CPU = cpu
	out.OOMKilled = oom && !out.TimedOut
	out.MemoryPeakBytes = int64(peak)
	out.PidsLimitHit = pidsLimitHit(r.cgroupPath(runID))
	out.Logs = logs.Bytes()

	// Half the slack absorbs tmpfs rounding every file up to whole pages.
	if used := outputUsed(paths.Output); used > p.Limits.OutputBytes+outputSlack/2 {
		// The job filled /output past the cap, whatever it named its files:
		// its result, if any, is not to be trusted as complete.
		out.OutputTooLarge = true
		out.ResultProblem = fmt.Sprintf("the job wrote %d bytes to /output, over the %d-byte cap", used, p.Limits.OutputBytes)
	} else if !out.TimedOut {
		res, err := readResult(paths.Output, filepath.Base(agent.ResultFile), p.Limits.OutputBytes)
		switch {
		case errors.Is(err, errTooLarge):
			out.OutputTooLarge = true
			out.ResultProblem = err.Error()
		case err != nil:
			out.ResultProblem = err.Error()
		default:
			out.Result = res
		}
	}
	log.Debug("job ran", "exit", out.ExitCode, "timeout", out.TimedOut, "oom", out.OOMKilled, "wall", out.Wall)
	return out, nil
}

// kill ends the task and waits briefly for its exit status.
func (r *Runner) kill(ctx context.Context, task containerd.Task, exitCh <-chan containerd.ExitStatus, log *slog.Logger) containerd.ExitStatus {
	if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		log.Warn("kill task", "err", err)
	}
	select {
	case st := <-exitCh:
		return st
	case <-time.After(10 * time.Second):
		log.Warn("task did not exit after SIGKILL")
		return *containerd.NewExitStatus(137, time.Now(), nil)
	}
}

// prepareDir lays out a job directory: input/job.json and input/content/N,
// read-only to the sandbox user, and output/ as a size-capped tmpfs owned by
// it.
func prepareDir(dir string, job *broker.Job, outputBytes int64, uid, gid uint32, gateway *agent.Gateway) (JobPaths, error) {
	paths := JobPaths{Input: filepath.Join(dir, "input"), Output: filepath.Join(dir, "output")}
	contentDir := filepath.Join(paths.Input, "content")
	if err := MkdirTraversable(dir); err != nil {
		return paths, err
	}
	for _, d := range []string{contentDir, paths.Output, filepath.Join(dir, "fifo")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return paths, err
		}
	}
	jf := agent.Job{ID: job.ID, Task: job.Task, Params: job.Params, Tools: job.Tools, Gateway: gateway}
	for i, c := range job.Content {
		name := strconv.Itoa(i)
		if err := writeReadOnly(filepath.Join(contentDir, name), c.Data); err != nil {
			return paths, err
		}
		jf.Content = append(jf.Content, agent.ContentFile{Name: name, MediaType: c.MediaType, Source: c.Source})
	}
	b, err := json.Marshal(jf)
	if err != nil {
		return paths, err
	}
	if err := writeReadOnly(filepath.Join(paths.Input, "job.json"), b); err != nil {
		return paths, err
	}
	for _, d := range []string{contentDir, paths.Input} {
		if err := os.Chmod(d, 0o555); err != nil {
			return paths, err
		}
	}
	opts := fmt.Sprintf("size=%d,mode=0700,uid=%d,gid=%d", outputBytes, uid, gid)
	if err := unix.Mount("tmpfs", paths.Output, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return paths, fmt.Errorf("mount output tmpfs: %w", err)
	}
	return paths, nil
}

// outputUsed is how many bytes the job's output tmpfs holds.
func outputUsed(dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// CheckTraversable returns an error naming the first ancestor of dir that
// other users cannot search. A user-namespaced sandbox's root is an
// unprivileged host uid, and runc reaches the rootfs and mounts below dir
// as that uid.
func CheckTraversable(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := abs; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err == nil && st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not searchable by other users (mode %#o): a profile with isolation.userNamespace needs every directory above the state dir to be, e.g. chmod o+x %s", d, st.Mode().Perm(), d)
		}
		if d == "/" {
			return nil
		}
	}
}

// MkdirTraversable makes dir (and missing parents) mode 0711: nobody but
// root may list it, but a user-namespaced sandbox, whose root is an
// unprivileged host uid, can still reach its rootfs and bind mounts below.
func MkdirTraversable(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	return os.Chmod(dir, 0o711)
}

// writeReadOnly writes a file the sandbox user may read but nobody may
// change. The chmod makes the mode independent of the broker's umask.
func writeReadOnly(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o444); err != nil {
		return err
	}
	return os.Chmod(path, 0o444)
}

func unmount(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", path, err)
}

// runtimeFor maps a policy runtime to a containerd shim, refusing one whose
// shim is not installed rather than falling back to a weaker runtime.
func runtimeFor(name string) (string, error) {
	switch name {
	case "", "runc":
		return "io.containerd.runc.v2", nil
	case "runsc":
		if _, err := exec.LookPath("containerd-shim-runsc-v1"); err != nil {
			return "", fmt.Errorf("runtime runsc: gVisor's containerd-shim-runsc-v1 is not installed")
		}
		return "io.containerd.runsc.v1", nil
	}
	return "", fmt.Errorf("runtime %q is not supported", name)
}

// deleteContainer deletes the container and its snapshot. A task whose
// creation was still in flight when the caller went away exists in
// containerd though NewTask returned an error; it is found and deleted
// first, since containerd refuses to delete a container with a task.
func deleteContainer(ctx context.Context, container containerd.Container) error {
	err := ignoreNotFound(container.Delete(ctx, containerd.WithSnapshotCleanup))
	if !errdefs.IsFailedPrecondition(err) {
		return err
	}
	if task, terr := container.Task(ctx, nil); terr == nil {
		if derr := deleteTask(ctx, task); derr != nil {
			return derr
		}
	}
	return ignoreNotFound(container.Delete(ctx, containerd.WithSnapshotCleanup))
}

// deleteTask deletes the task, killing it first. A task whose start was
// still in flight when the caller went away can report "running" to the
// first delete; it is killed again until it is stopped, or ctx ends.
func deleteTask(ctx context.Context, task containerd.Task) error {
	for {
		_, err := task.Delete(ctx, containerd.WithProcessKill)
		if err == nil || errdefs.IsNotFound(err) {
			return nil
		}
		if !errdefs.IsFailedPrecondition(err) {
			return err
		}
		_ = task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// retryUnavailable retries f while containerd is unreachable, until ctx
// ends: a containerd that died under the broker is restarted within a
// second or so, and the job's teardown must still happen.
func retryUnavailable(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil || !unavailable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func unavailable(err error) bool {
	if errdefs.IsUnavailable(err) {
		return true
	}
	return grpcstatus.Code(errors.Unwrap(err)) == codes.Unavailable || grpcstatus.Code(err) == codes.Unavailable ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "transport is closing")
}

func ignoreNotFound(err error) error {
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

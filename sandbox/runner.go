// Package sandbox runs broker jobs in containerd sandboxes: one container
// per job, hardened from the job's policy, inside a lease, and torn down
// completely whatever happens. It implements job.Runner; nothing else in
// Airlock talks to containerd.
package sandbox

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/images/agentimage"
	"github.com/airlock/airlock/sandbox/egress"
	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/job"
	"github.com/airlock/airlock/sandbox/netns"
	"github.com/airlock/airlock/sandbox/userns"
)

const (
	// LabelJob labels containers and leases with the broker's job ID.
	LabelJob = "airlock/job"
	// LabelRun labels containers and leases with the sandbox's own run ID.
	LabelRun = "airlock/run"
	// LabelInstance labels containers and leases with the instance of the
	// runner that made them (see InstanceID), so a runner's start-up reap
	// touches only its own.
	LabelInstance = "airlock/instance"

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
	// VethPrefix is where job veth addresses come from, one /30 per job;
	// zero is netns.DefaultPrefix. (A warm pool of sandboxes is Pools.)
	VethPrefix netip.Prefix
	// ProxyPort is the proxy's port on each job gateway; zero is
	// DefaultProxyPort.
	ProxyPort uint16
	// MaxTeardownsBehind bounds the sandboxes still being torn down after
	// their jobs returned; zero is DefaultTeardownsBehind.
	MaxTeardownsBehind int
	// UserNSDir records which host ID ranges the user-namespaced
	// sandboxes of every broker on the host hold; empty is
	// userns.DefaultDir.
	UserNSDir string
	// AgentImages are the imported images the profiles run. Each must be
	// imported, with its digest, or New fails: a profile never runs
	// another agent in its place.
	AgentImages []AgentImage
	// ImageLimits bound an image import; zero is agentimage.DefaultLimits.
	ImageLimits agentimage.Limits
}

// procRoot is where the kernel's process view is mounted.
const procRoot = "/proc"

// DefaultTeardownsBehind is Config.MaxTeardownsBehind when zero. A box
// waiting for teardown holds a stopped task's shim, a few MiB.
const DefaultTeardownsBehind = 64

// Runner runs jobs on containerd. It is safe for concurrent use.
type Runner struct {
	client  *containerd.Client
	jobsDir string
	// runscDir holds the wrappers that run runsc with a profile's flags,
	// and runsc's state.
	runscDir string
	images   map[string]*loadedImage
	// stateDir is Config.StateDir.
	stateDir string
	// agentProfiles lists, by NAME@DIGEST, the profiles that run each
	// imported image; RemoveImage refuses those.
	agentProfiles map[string][]string
	imageLimits   agentimage.Limits
	log           *slog.Logger

	// claims hands each user-namespaced sandbox a host ID range of its
	// own.
	claims *userns.Claims
	// proc is where the runner reads the kernel's process view: procRoot
	// but in tests.
	proc string

	proxy     *egress.Proxy
	pool      *netns.AddressPool
	proxyPort uint16

	// address is containerd's socket, which names this runner's shims.
	address string
	// instance names this runner's cgroup subtree, /airlock/<instance>, so
	// that reaping never touches another broker's sandboxes.
	instance string

	// behind queues the teardowns that run after their job's Run has
	// returned, for teardownWorkers; Close waits for them.
	behind      chan teardownJob
	closeBehind sync.Once
	teardowns   sync.WaitGroup

	// filters holds the seccomp programs crun compiled, for reuse.
	filters *filterCache

	poolsMu     sync.Mutex
	pools       map[string]*warmPool // by profile name
	poolMetrics *poolMetrics
}

var _ job.Runner = (*Runner)(nil)

// New connects to containerd, removes whatever a crashed predecessor left
// behind, and makes sure every configured image is present.
func New(ctx context.Context, cfg Config) (_ *Runner, retErr error) {
	if cfg.StateDir == "" {
		return nil, errors.New("sandbox: StateDir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// Every step that succeeds pushes its inverse; a failed New undoes
	// them all, so that it leaves no connection, goroutine or listener.
	var u undo
	defer func() {
		if retErr != nil {
			_ = u.Run(ctx)
		}
	}()
	client, err := containerd.New(cfg.Address, containerd.WithDefaultNamespace(footprint.Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", cfg.Address, err)
	}
	u.Push(func(context.Context) error { return client.Close() })
	r := &Runner{
		client:   client,
		jobsDir:  filepath.Join(cfg.StateDir, "jobs"),
		runscDir: filepath.Join(cfg.StateDir, "runsc"),
		address:  cfg.Address,
		instance: footprint.InstanceID(cfg.StateDir),
		proc:     procRoot,
		images:   map[string]*loadedImage{},
		stateDir: cfg.StateDir,

		agentProfiles: map[string][]string{},
		imageLimits:   cfg.ImageLimits,
		log:           cfg.Logger,

		poolMetrics: newPoolMetrics(),
		filters:     newFilterCache(cfg.Logger),
		behind:      make(chan teardownJob, cmp.Or(cfg.MaxTeardownsBehind, DefaultTeardownsBehind)),
	}
	for range teardownWorkers {
		r.teardowns.Add(1)
		// Not recovered: teardown reads nothing of the job's, only the
		// broker's own handles (IDs, mounts, namespaces), so no job can
		// provoke a panic there; what a bug there left behind, the
		// successor's reap at start removes.
		go func() {
			defer r.teardowns.Done()
			for t := range r.behind {
				_ = r.teardown(t.ctx, t.b, t.warm)
			}
		}()
	}
	u.Push(func(context.Context) error {
		r.closeBehind.Do(func() { close(r.behind) })
		r.teardowns.Wait()
		return nil
	})
	if r.claims, err = userns.NewClaims(cfg.UserNSDir, r.instance); err != nil {
		return nil, err
	}
	ctx = namespaces.WithNamespace(ctx, footprint.Namespace)
	if err := footprint.MkdirTraversable(r.jobsDir); err != nil {
		return nil, err
	}
	if err := r.Reap(ctx); err != nil {
		return nil, fmt.Errorf("reap leftovers: %w", err)
	}
	// The pool is checked against the host's addresses only after the
	// reap, since a predecessor's leftover veths would overlap it.
	prefix := cfg.VethPrefix
	if !prefix.IsValid() {
		prefix = netns.DefaultPrefix
	}
	if r.pool, err = netns.NewAddressPool(prefix, r.instance); err != nil {
		return nil, err
	}
	r.proxyPort = cmp.Or(cfg.ProxyPort, DefaultProxyPort)
	if cfg.Egress.Logger == nil {
		cfg.Egress.Logger = cfg.Logger
	}
	if r.proxy, err = egress.New(cfg.Egress); err != nil {
		return nil, err
	}
	u.Push(func(context.Context) error { return r.proxy.Close() })
	for _, spec := range cfg.Images {
		img, err := r.ensureImage(ctx, spec)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", spec.Name, err)
		}
		r.images[spec.Name] = img
	}
	if r.imageLimits == (agentimage.Limits{}) {
		r.imageLimits = agentimage.DefaultLimits
	}
	// An import a crashed predecessor was unpacking is gone with it.
	if err := os.RemoveAll(r.importDir()); err != nil {
		return nil, err
	}
	if err := os.Mkdir(r.importDir(), 0o700); err != nil {
		return nil, err
	}
	if err := r.loadAgentImages(ctx, cfg.AgentImages); err != nil {
		return nil, err
	}
	return r, nil
}

// cgroupPath is where a run's cgroup lives.
func (r *Runner) cgroupPath(runID string) string {
	return "/" + footprint.Namespace + "/" + r.instance + "/" + runID
}

// Close drains the warm pools, stops the egress proxy and closes the
// containerd connection.
func (r *Runner) Close() error {
	r.closePools()
	r.closeBehind.Do(func() { close(r.behind) })
	r.teardowns.Wait()
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

// Run runs one job. See job.Runner. It claims a warm sandbox made for
// the job's exact policy when a pool has one, and makes one otherwise.
func (r *Runner) Run(ctx context.Context, j *job.Job) (out *job.Outcome, retErr error) {
	if j.Policy == nil {
		return nil, errors.New("job has no policy")
	}
	ctx = namespaces.WithNamespace(ctx, footprint.Namespace)
	claimed := time.Now()
	b, claimDone := r.claim(j)
	defer claimDone()
	if b != nil && b.stale(ctx) {
		// Its agent, started ahead of the job, is gone (killed, or out of
		// memory): the job runs cold, and the box goes.
		b.log.Warn("warm sandbox's agent exited before its job; running the job cold", "job", j.ID)
		r.queueTeardown(ctx, b, true)
		b = nil
	}
	warm := b != nil
	if warm {
		// The list starts at the claim: making it was nobody's wait.
		b.phases, b.mark = nil, claimed
		b.log.Debug("claimed warm sandbox", "job", j.ID)
	} else {
		var err error
		if b, err = r.newBox(ctx, j.Image, j.Policy, j.ID); err != nil {
			return nil, err
		}
	}
	defer func() {
		if out == nil {
			// A job that failed to run is torn down before the error
			// returns, so the caller's retry never meets its remains; so
			// is one whose run panicked (out is nil then too), before the
			// broker recovers the panic into its SANDBOX_ERROR.
			if err := r.teardown(ctx, b, warm); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("cleanup: %w", err))
			}
			return
		}
		out.Warm, out.Phases = warm, b.phases
		r.observe(b.phases, warm)
		// The task has exited, so nothing of the job runs any more and its
		// result is read: the rest of the teardown need not delay the
		// caller. A bounded number wait behind; past that, callers wait.
		if err := r.queueTeardown(ctx, b, warm); err != nil {
			out, retErr = nil, fmt.Errorf("cleanup: %w", err)
		}
	}()
	return r.run(ctx, b, j)
}

// queueTeardown queues the box for teardown, or, when a bounded number
// already wait, tears it down now and returns how that went.
func (r *Runner) queueTeardown(ctx context.Context, b *box, warm bool) error {
	select {
	case r.behind <- teardownJob{ctx: context.WithoutCancel(ctx), b: b, warm: warm}:
		return nil
	default:
		return r.teardown(ctx, b, warm)
	}
}

// teardownJob is a box whose job has returned, queued for teardown.
type teardownJob struct {
	ctx  context.Context
	b    *box
	warm bool
}

// teardownWorkers tear queued boxes down. Teardown is mostly containerd's,
// the shim's and runc's work; more of them at once than the two cores
// this runs on only slow the jobs being started.
const teardownWorkers = 2

// teardown removes everything of the box, under a context the caller's
// cancellation cannot cut short, and records how long that took.
func (r *Runner) teardown(ctx context.Context, b *box, warm bool) error {
	start := time.Now()
	err := b.u.Run(ctx)
	r.observe([]job.Phase{{Name: "teardown", Duration: time.Since(start)}}, warm)
	if err != nil {
		r.poolMetrics.cleanupFailures.Inc()
		b.log.Error("sandbox cleanup failed", "err", err)
	}
	return err
}

func (r *Runner) observe(phases []job.Phase, warm bool) {
	for _, ph := range phases {
		r.poolMetrics.phases.WithLabelValues(ph.Name, strconv.FormatBool(warm)).Observe(ph.Duration.Seconds())
	}
}

// kill ends the task and waits briefly for its exit status.
func (r *Runner) kill(ctx context.Context, b *box, log *slog.Logger) containerd.ExitStatus {
	if err := b.task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		log.Warn("kill task", "err", err)
	}
	select {
	case <-b.exited:
		return b.exit
	case <-time.After(10 * time.Second):
		log.Warn("task did not exit after SIGKILL")
		return *containerd.NewExitStatus(137, time.Now(), nil)
	}
}

// prepareDir lays out a job directory: input/ and input/content/, owned by
// the sandbox user's host uid and gid, uid:gid, mode 0500, where only the
// broker, as root, may write (writeInput fills them once the job is
// known); and output/ as a size-capped tmpfs of the sandbox user's. The
// job dir itself is root's and mode 0711: nobody else can list the jobs
// dir or the job dir, and only the sandbox user can read the input.
func prepareDir(dir string, outputBytes int64, uid, gid uint32) (JobPaths, error) {
	paths := JobPaths{Input: filepath.Join(dir, "input"), Output: filepath.Join(dir, "output")}
	if err := footprint.MkdirTraversable(dir); err != nil {
		return paths, err
	}
	if err := os.Mkdir(filepath.Join(dir, "fifo"), 0o700); err != nil {
		return paths, err
	}
	if err := prepareInput(paths.Input, uid, gid); err != nil {
		return paths, err
	}
	if err := mountTmpfs(paths.Output, outputBytes, uid, gid); err != nil {
		return paths, fmt.Errorf("mount output tmpfs: %w", err)
	}
	return paths, nil
}

// mountTmpfs makes dir and mounts on it a size- and inode-capped, noexec
// tmpfs of sizeBytes, owned by uid:gid: a job's output, and its scratch
// where the runtime's own tmpfs would not keep the caps.
func mountTmpfs(dir string, sizeBytes int64, uid, gid uint32) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	return unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, outputOptions(sizeBytes, uid, gid))
}

// prepareInput makes the input dir and its content/, owned by uid:gid,
// mode 0500. A user-namespaced sandbox's runc reaches them as the
// sandbox's root, which may search a directory of its own range's.
func prepareInput(input string, uid, gid uint32) error {
	content := filepath.Join(input, "content")
	for _, d := range []string{input, content} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	for _, d := range []string{content, input} {
		if err := os.Lchown(d, int(uid), int(gid)); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o500); err != nil {
			return err
		}
	}
	return nil
}

// newDirName is a job dir's name: 128 random bits, in hex.
func newDirName() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// outputOptions are the mount options of a job's output tmpfs: its size,
// its inode cap, and its owner, the sandbox user.
func outputOptions(sizeBytes int64, uid, gid uint32) string {
	return fmt.Sprintf("size=%d,nr_inodes=%d,mode=0700,uid=%d,gid=%d", sizeBytes, TmpfsInodes(sizeBytes), uid, gid)
}

// outputUsed is how many bytes the job's output tmpfs holds.
func outputUsed(dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// writeReadOnly writes a new file that only uid:gid may read, mode 0400
// whatever the broker's umask. It never follows a link nor reuses a file.
func writeReadOnly(path string, data []byte, uid, gid uint32) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o400)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	err = errors.Join(err, f.Chown(int(uid), int(gid)), f.Chmod(0o400))
	return errors.Join(err, f.Close())
}

func unmount(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", path, err)
}

// deleteContainer deletes the container and its snapshot. A task whose
// creation was still in flight when the caller went away exists in
// containerd though NewTask returned an error; it is found and deleted
// first, since containerd refuses to delete a container with a task.
func deleteContainer(ctx context.Context, ts tasks.TasksClient, container containerd.Container) error {
	err := ignoreNotFound(container.Delete(ctx, containerd.WithSnapshotCleanup))
	if !errdefs.IsFailedPrecondition(err) {
		return err
	}
	if task, terr := container.Task(ctx, nil); terr == nil {
		if derr := DeleteTask(ctx, ts, task); derr != nil {
			return derr
		}
	}
	return ignoreNotFound(container.Delete(ctx, containerd.WithSnapshotCleanup))
}

// DeleteTask deletes the task, killing it while it runs. A task whose
// start was still in flight when the caller went away can report
// "running" to a delete after the kill; it is killed again until it is
// stopped, or ctx ends.
func DeleteTask(ctx context.Context, ts tasks.TasksClient, task containerd.Task) error {
	for {
		// A task that has exited is deleted without a kill first: runsc
		// answers a kill of a stopped sandbox with an error ("sandbox is
		// not running") that the shim passes on as unknown.
		_, err := task.Delete(ctx)
		if err == nil || errdefs.IsNotFound(err) {
			return nil
		}
		if !errdefs.IsFailedPrecondition(err) {
			return err
		}
		// A task created and never started, as a warm pool's are, is
		// deleted through the task service: the client refuses to delete
		// a created task before a kill, and runsc cannot signal one
		// ("cannot signal container in state created"), though it, like
		// runc, deletes it.
		if st, serr := task.Status(ctx); serr == nil && st.Status == containerd.Created {
			_, derr := ts.Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: task.ID()})
			if derr = errdefs.FromGRPC(derr); derr == nil || errdefs.IsNotFound(derr) {
				return nil
			}
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

package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/leases"
	"github.com/containerd/containerd/oci"
	"github.com/google/uuid"

	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/agent"
	"github.com/airlock/airlock/sandbox/egress"
	"github.com/airlock/airlock/sandbox/job"
	"github.com/airlock/airlock/sandbox/netns"
	"github.com/airlock/airlock/sandbox/toolgw"
	"github.com/airlock/airlock/sandbox/userns"
)

// box is one sandbox, made before its job is known: the job directory, the
// network, the lease, the container and a created task whose init waits
// for start. bind gives it its one job; it is never reused. Everything it
// holds is on u, which tears it down.
type box struct {
	runID string
	image string
	// hash is the policy hash the box was made for: a job claims a warm box
	// only under exactly that policy.
	hash string
	p    *policy.Profile
	img  *loadedImage
	dir  string

	paths JobPaths
	// ids is the sandbox's host ID range, claimed for it alone, when its
	// profile has a user namespace; zero otherwise.
	ids        userns.Range
	capability string
	net        *netns.Net
	proxyURL   string

	container containerd.Container
	task      containerd.Task
	logs      *cappedBuffer
	// exited is closed once exit holds the task's exit status; watch sets
	// both up before the task starts.
	exited chan struct{}
	exit   containerd.ExitStatus
	// startLine is the agent's stdin on a box whose agent started ahead
	// of its job and waits for agent.StartLine; nil on any other box.
	startLine *io.PipeWriter

	u      undo
	phases []job.Phase
	mark   time.Time
	log    *slog.Logger
}

// loadedImage is an image with what making a container from it needs,
// read once at start rather than from the content store on every job.
type loadedImage struct {
	containerd.Image
	// chainID names the image's unpacked snapshot, the parent of every
	// job's read-only view.
	chainID string
	// waits is the image spec's WaitsForStart.
	waits bool
	// agent is set for an operator's imported image, nil for the images
	// Airlock builds.
	agent *agentImage
}

// hostID is the host uid or gid that id in the sandbox is.
func (b *box) hostID(id uint32) uint32 {
	if b.p.Isolation.UserNamespace {
		return b.ids.HostID(id)
	}
	return id
}

// phase records the time since the previous mark as the named phase.
func (b *box) phase(name string) {
	now := time.Now()
	b.phases = append(b.phases, job.Phase{Name: name, Duration: now.Sub(b.mark)})
	b.mark = now
}

// newBox makes a sandbox for policy p up to a created task. jobID labels
// its lease and container when the job is already known; a warm pool's box
// has none. When the image's agent waits for its start line, the box is
// run ahead (see wrapperScript) and started, for a pool or for a job: the
// job then only writes its input and that line. On error, nothing it made
// is left.
func (r *Runner) newBox(ctx context.Context, image string, p *policy.Profile, jobID string) (_ *box, retErr error) {
	img, ok := r.images[image]
	if !ok {
		return nil, fmt.Errorf("image %q is not loaded", image)
	}
	runID := "airlock-" + uuid.NewString()
	// The job dir's name is random and unrelated to the run ID, which the
	// host shows in cgroup paths and process lists: knowing a job's ID
	// tells a local user nothing of where its input is.
	dirName, err := newDirName()
	if err != nil {
		return nil, err
	}
	// Each containerd call runs to its end under cctx, and the caller's
	// cancellation is honoured between calls: a create abandoned in flight
	// could land on containerd's side after teardown looked for it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	defer cancel()
	// Only airlock-agent knows the start line: an imported image's
	// sandbox (img.agent) never waits, and is created, not started.
	prestart := img.waits
	b := &box{
		runID: runID, image: image, hash: p.Hash(), p: p, img: img,
		dir: filepath.Join(r.jobsDir, dirName), mark: time.Now(),
		log: r.log.With("run", runID),
	}
	// netDone carries the result of the namespace's setup, which runs
	// alongside the container's creation; it is always received before
	// teardown, so Close never races Setup.
	var netDone chan error
	awaitNet := func() error {
		if netDone == nil {
			return nil
		}
		err := <-netDone
		netDone = nil
		return err
	}
	// made is set at the one successful return: an error or a panic, a
	// bug of Airlock's, undoes what was made, so that a panic that the
	// broker recovers into the job's SANDBOX_ERROR leaves nothing behind.
	made := false
	defer func() {
		if made {
			return
		}
		_ = awaitNet()
		if err := b.u.Run(ctx); err != nil {
			b.log.Error("sandbox cleanup failed", "err", err)
			retErr = errors.Join(retErr, fmt.Errorf("cleanup: %w", err))
		}
	}()

	if p.Isolation.UserNamespace {
		// Fail closed: without a user namespace the agent would be a host
		// user, which the profile says it must not be.
		if err := userns.Check(r.proc); err != nil {
			return nil, fmt.Errorf("profile %s has isolation.userNamespace: %w; its jobs do not run without one", p.Name, err)
		}
		ids, release, err := r.claims.Claim(runID)
		if err != nil {
			return nil, err
		}
		// Pushed first, so it runs last: the range is free again only once
		// nothing of the sandbox is left that could still hold its ids.
		b.u.Push(func(context.Context) error { return release() })
		b.ids = ids
	}
	// A backstop for a task containerd lost; it runs after all but the
	// range's release.
	b.u.Push(func(context.Context) error { return r.reapRun(runID) })
	b.u.Push(func(context.Context) error { return os.RemoveAll(b.dir) })
	rt, err := ForProfile(r.runscDir, p)
	if err != nil {
		return nil, err
	}
	// A job that may exec, or use a tool the broker decides, gets a tool
	// gateway: a capability in its job.json, and a run directory for the
	// socket.
	if p.ToolGateway() {
		if p.ExecAllowed() && p.Isolation.GID == images.ToolsGID {
			return nil, fmt.Errorf("profile %s runs as gid %d, the tools group: its agent could execute busybox directly", p.Name, images.ToolsGID)
		}
		if b.capability, err = toolgw.NewCapability(); err != nil {
			return nil, err
		}
	}
	b.paths, err = prepareDir(b.dir, p.Limits.OutputBytes+outputSlack, b.hostID(p.Isolation.UID), b.hostID(p.Isolation.GID))
	if err != nil {
		return nil, err
	}
	b.paths.IDs = b.ids
	b.u.Push(func(context.Context) error { return unmount(b.paths.Output) })
	if rt.Name == policy.RuntimeRunsc {
		scratch := filepath.Join(b.dir, "scratch")
		if err := mountTmpfs(scratch, p.Limits.ScratchBytes, b.hostID(p.Isolation.UID), b.hostID(p.Isolation.GID)); err != nil {
			return nil, fmt.Errorf("mount scratch tmpfs: %w", err)
		}
		b.u.Push(func(context.Context) error { return unmount(scratch) })
		b.paths.Scratch = scratch
	}
	if b.capability != "" {
		if b.paths.Run, err = prepareRunDir(b.dir); err != nil {
			return nil, err
		}
	}
	b.phase("prepare")

	if p.Network.Mode == policy.NetworkAllowlist {
		if r.proxy == nil || r.pool == nil {
			return nil, fmt.Errorf("network.mode allowlist needs the egress proxy, which this runner was started without")
		}
		n, err := netns.Prepare(runID, r.pool, r.proxyPort)
		if err != nil {
			return nil, fmt.Errorf("network namespace: %w", err)
		}
		b.u.Push(n.Close)
		b.net = n
		b.proxyURL = "http://" + netip.AddrPortFrom(n.HostIP, r.proxyPort).String()
		b.paths.ProxyURL = b.proxyURL
		// A user-namespaced task gets a network namespace of its user
		// namespace's, which runc makes and which is set up once the task
		// exists (see netns.Net.SetupIn); any other joins one made now,
		// alongside the container. gVisor's network stack takes the
		// interfaces it finds when the sandbox is made, and the sentry,
		// not the host, keeps the job's user namespace: under runsc every
		// job joins a namespace made now.
		if !p.Isolation.UserNamespace || rt.Name == policy.RuntimeRunsc {
			b.paths.NetNS = n.Path
			netDone = make(chan error, 1)
			// Not recovered: Setup applies the broker's own rules, made
			// from the profile, before anything of the job runs, mostly on
			// a goroutine of its own (netns.onThrowawayThread) that a
			// recover here would not reach.
			go func() { netDone <- n.Setup(cctx) }()
		}
	}

	options := rt.Options
	if prestart {
		options = rt.RunAhead
	}
	labels := map[string]string{LabelRun: runID, LabelInstance: r.instance}
	if jobID != "" {
		labels[LabelJob] = jobID
	}
	// Deleted by ID, and pushed before the create, for the same reason as
	// the container below: a cancelled create may still have happened.
	b.u.Push(func(c context.Context) error {
		return retryUnavailable(c, func() error {
			return ignoreNotFound(r.client.LeasesService().Delete(c, leases.Lease{ID: runID}, leases.SynchronousDelete))
		})
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := r.client.LeasesService().Create(cctx, leases.WithID(runID), leases.WithLabels(labels), leases.WithExpiration(24*time.Hour)); err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	lctx := leases.WithLease(cctx, runID)

	// Pushed before the create: a create the caller's cancellation cut short
	// on this side may still have happened on containerd's, so teardown
	// looks the container up by its ID rather than trusting the return.
	b.u.Push(func(c context.Context) error {
		return retryUnavailable(c, func() error {
			ctr, err := r.client.LoadContainer(c, runID)
			if err != nil {
				return ignoreNotFound(err)
			}
			return deleteContainer(c, r.client.TaskService(), ctr)
		})
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	specOpts := append(append(SpecFor(runID, p, b.paths), img.process(), oci.WithCgroup(r.cgroupPath(runID)), withStartSignal(prestart)), rt.Spec...)
	var seccomp seccompUse
	if rt.Name == policy.RuntimeCrun {
		specOpts = append(specOpts, r.filters.withCompiledSeccomp(&seccomp))
	}
	b.container, err = r.client.NewContainer(lctx, runID,
		containerd.WithImageName(img.Name()),
		withSnapshotView(runID, img.chainID),
		containerd.WithRuntime(rt.Shim, options),
		containerd.WithContainerLabels(labels),
		containerd.WithNewSpec(specOpts...),
	)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	b.phase("container")

	if b.net != nil && b.paths.NetNS != "" {
		if err := awaitNet(); err != nil {
			return nil, fmt.Errorf("network namespace: %w", err)
		}
		if err := r.listenProxy(b); err != nil {
			return nil, err
		}
		b.phase("network")
	}

	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.logs = newCappedBuffer(logCap)
	var stdin io.Reader
	if prestart {
		pr, pw := io.Pipe()
		stdin, b.startLine = pr, pw
	}
	// See warmCgroupLock: the runtime's first cgroup write, made while
	// the task is, then does not wait for an RCU grace period.
	warmed := make(chan struct{})
	go warmCgroupLock(r.proc, cgroupRoot, warmed)
	b.task, err = b.container.NewTask(lctx, cio.NewCreator(cio.WithStreams(stdin, b.logs, b.logs), cio.WithFIFODir(filepath.Join(b.dir, "fifo"))))
	close(warmed)
	if err != nil {
		if b.startLine != nil {
			b.startLine.Close()
		}
		return nil, fmt.Errorf("create task: %w", err)
	}
	task := b.task
	b.u.Push(func(c context.Context) error {
		return retryUnavailable(c, func() error { return DeleteTask(c, r.client.TaskService(), task) })
	})
	if b.startLine != nil {
		// Runs before the delete: an agent never given its job reads the
		// end of stdin and exits without reading anything.
		pw := b.startLine
		b.u.Push(func(context.Context) error { return pw.Close() })
	}
	b.phase("task")

	if b.net != nil && b.paths.NetNS == "" {
		// The task's init waits inside the namespaces runc made, for
		// the runtime's start or, run ahead, for its start line: its
		// network namespace gets the rules and the veth before anything
		// of the job runs.
		if err := b.net.SetupIn(cctx, fmt.Sprintf("%s/%d/ns/net", r.proc, b.task.Pid())); err != nil {
			return nil, fmt.Errorf("network namespace: %w", err)
		}
		if err := r.listenProxy(b); err != nil {
			return nil, err
		}
		b.phase("network")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if prestart {
		if err := b.watch(lctx); err != nil {
			return nil, err
		}
		if err := b.task.Start(lctx); err != nil {
			return nil, fmt.Errorf("start task: %w", err)
		}
		b.phase("start")
		// The agent waits for its start line, under the filter crun
		// installed and nothing else yet.
		if err := r.filters.learn(seccomp, b.task.Pid()); err != nil {
			return nil, err
		}
	}
	if seccomp.given != nil {
		r.filters.used.Inc()
	}
	made = true
	return b, nil
}

// withStartSignal tells the agent of a box started ahead of its job to
// wait for its start line.
func withStartSignal(prestart bool) oci.SpecOpts {
	if !prestart {
		return func(context.Context, oci.Client, *containers.Container, *oci.Spec) error { return nil }
	}
	return oci.WithEnv([]string{agent.StartEnv + "=" + agent.StartStdin})
}

// watch collects the task's exit status into b.exit, and closes b.exited,
// whenever the task exits. The wait outlives the caller's context, so that
// after a kill the exit is still collected before teardown; teardown ends
// it.
func (b *box) watch(ctx context.Context) error {
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	ch, err := b.task.Wait(wctx)
	if err != nil {
		stop()
		return fmt.Errorf("wait task: %w", err)
	}
	b.u.Push(func(context.Context) error { stop(); return nil })
	b.exited = make(chan struct{})
	// Not recovered: it only receives containerd's exit status.
	go func() {
		// The client sends exactly once: the exit, or the wait's error
		// when teardown ends it.
		b.exit = <-ch
		close(b.exited)
	}()
	return nil
}

// stale says whether a started box's agent has already exited: the box
// can no longer run a job. The exit event may trail the exit, so the
// shim, which reaps the agent, is asked too.
func (b *box) stale(ctx context.Context) bool {
	if b.exited == nil {
		return false
	}
	select {
	case <-b.exited:
		return true
	default:
	}
	st, err := b.task.Status(ctx)
	return err != nil || st.Status != containerd.Running
}

// createTimeout bounds one sandbox's creation, which the caller's
// cancellation does not interrupt mid-call.
const createTimeout = 2 * time.Minute

// withSnapshotView gives the container a read-only view of the image's
// unpacked snapshot, named by the chain ID read at start: containerd's
// WithNewSnapshotView would read the manifest and config again per job.
func withSnapshotView(id, parent string) containerd.NewContainerOpts {
	return func(ctx context.Context, client *containerd.Client, c *containers.Container) error {
		if _, err := client.SnapshotService(snapshotter).View(ctx, id, parent); err != nil {
			return err
		}
		c.Snapshotter, c.SnapshotKey = snapshotter, id
		return nil
	}
}

// listenProxy opens the egress proxy's listener on the job's gateway
// address, which exists once the namespace is set up.
func (r *Runner) listenProxy(b *box) error {
	addr := netip.AddrPortFrom(b.net.HostIP, r.proxyPort)
	lis, err := net.Listen("tcp", addr.String())
	if err != nil {
		return fmt.Errorf("egress proxy listener on %s: %w", addr, err)
	}
	b.u.Push(func(context.Context) error { return ignoreClosed(lis.Close()) })
	// Not recovered: Serve only accepts; each connection's goroutine
	// recovers its own panic (egress clientConn.serve).
	go func() {
		if err := r.proxy.Serve(lis); err != nil {
			r.log.Debug("egress listener ended", "addr", addr, "err", err)
		}
	}()
	return nil
}

// run gives the box its job and runs it to its end: the job's input, its
// egress session and its tool gateway, then start, wait and collect.
// Teardown is the caller's, through b.u.
func (r *Runner) run(ctx context.Context, b *box, j *job.Job) (*job.Outcome, error) {
	p := b.p
	log := b.log.With("job", j.ID)
	if err := writeInput(b.paths.Input, j, gatewayFor(b.capability), b.hostID(p.Isolation.UID), b.hostID(p.Isolation.GID)); err != nil {
		return nil, fmt.Errorf("job input: %w", err)
	}
	var session *egress.Session
	if b.net != nil {
		jp, err := jobPolicy(j)
		if err != nil {
			return nil, err
		}
		sess, err := r.proxy.Register(b.net.JobIP, jp)
		if err != nil {
			return nil, fmt.Errorf("egress session: %w", err)
		}
		b.u.Push(func(context.Context) error { return sess.Close() })
		session = sess
	}
	lctx := leases.WithLease(ctx, b.runID)

	// The gateway listens before the task starts, so the agent never finds
	// it missing; it is closed, ending its requests, before the task is
	// deleted.
	var gw *toolgw.Gateway
	var deadlineAt atomic.Pointer[time.Time]
	if b.paths.Run != "" {
		spec, err := b.container.Spec(lctx)
		if err != nil {
			return nil, fmt.Errorf("container spec: %w", err)
		}
		gw, err = toolgw.Listen(toolgw.Config{
			Socket:     filepath.Join(b.paths.Run, toolsSocket),
			Capability: b.capability,
			Handler: r.toolHandler(j, b.task, spec.Process, filepath.Join(b.dir, "fifo"), func() time.Time {
				if t := deadlineAt.Load(); t != nil {
					return *t
				}
				return time.Now().Add(p.Limits.Timeout)
			}),
			UID:    int(b.hostID(p.Isolation.UID)),
			GID:    int(b.hostID(p.Isolation.GID)),
			Logger: log,
		})
		if err != nil {
			return nil, err
		}
		b.u.Push(func(context.Context) error { return gw.Close() })
	}
	b.phase("bind")

	if b.exited == nil {
		if err := b.watch(lctx); err != nil {
			return nil, err
		}
	}
	// Calls after the exit, the kill's and the usage's, are teardown's
	// business as much as the job's: the caller's cancellation does not
	// cut them short.
	waitCtx := context.WithoutCancel(lctx)
	start := time.Now()
	end := start.Add(p.Limits.Timeout)
	deadlineAt.Store(&end)
	if b.startLine != nil {
		// The agent is running and waits for this line; its input is
		// complete now.
		_, err := io.WriteString(b.startLine, agent.StartLine)
		if cerr := b.startLine.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("start the agent: %w", err)
		}
	} else if err := b.task.Start(lctx); err != nil {
		return nil, fmt.Errorf("start task: %w", err)
	}
	b.phase("start")
	if j.OnStart != nil {
		j.OnStart()
	}

	out := &job.Outcome{ImageDigest: b.img.Target().Digest.String()}
	deadline := time.NewTimer(p.Limits.Timeout)
	defer deadline.Stop()
	var status containerd.ExitStatus
	select {
	case <-b.exited:
		status = b.exit
	case <-deadline.C:
		out.TimedOut = true
		status = r.kill(waitCtx, b, log)
	case <-ctx.Done():
		r.kill(waitCtx, b, log)
		return nil, ctx.Err()
	}
	out.Wall = time.Since(start)
	b.phase("run")
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
	if session != nil {
		// Closing the session ends the job's tunnels and makes its log
		// final; the deferred close is then a no-op.
		_ = session.Close()
		out.Egress = session.Log()
		out.EgressDropped = session.Stats().Dropped
	}
	if b.net != nil {
		// Read before teardown closes the namespace; a counter that
		// cannot be read is the operator's to know of, not the job's
		// failure.
		if n, err := b.net.DeniedPackets(); err != nil {
			log.Warn("read the job's egress drop counters", "err", err)
		} else {
			out.EgressDeniedPackets = n
		}
		out.Model = session.ModelUsage()
	}
	oom, peak, cpu := usage(waitCtx, b.task)
	out.CPU = cpu
	out.OOMKilled = oom && !out.TimedOut
	out.MemoryPeakBytes = int64(peak)
	out.PidsLimitHit = pidsLimitHit(r.cgroupPath(b.runID))
	out.Logs = b.logs.Bytes()

	// Half the slack absorbs tmpfs rounding every file up to whole pages.
	if used := outputUsed(b.paths.Output); used > p.Limits.OutputBytes+outputSlack/2 {
		// The job filled /output past the cap, whatever it named its files:
		// its result, if any, is not to be trusted as complete.
		out.OutputTooLarge = true
		out.ResultProblem = fmt.Sprintf("the job wrote %d bytes to /output, over the %d-byte cap", used, p.Limits.OutputBytes)
	} else if !out.TimedOut {
		res, err := readResult(b.paths.Output, filepath.Base(agent.ResultFile), p.Limits.OutputBytes)
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
	b.phase("collect")
	log.Debug("job ran", "exit", out.ExitCode, "timeout", out.TimedOut, "oom", out.OOMKilled, "wall", out.Wall)
	return out, nil
}

// agentModel is the job's model as the agent reaches it: through its
// alias, with the limits the broker settled. It names no key: the proxy
// adds that on the way out. Nil for a job whose profile has no model.
func agentModel(j *job.Job) *agent.Model {
	m := j.Policy.Model
	if m == nil {
		return nil
	}
	return &agent.Model{
		URL: "http://" + m.Service + "." + egress.AliasDomain, API: m.API, Name: m.Name, Stream: m.Stream,
		MaxTurns: m.MaxTurns, MaxToolCalls: m.MaxToolCalls, MaxOutputTokens: m.MaxOutputTokens, MaxReplyBytes: m.MaxReplyBytes,
	}
}

// writeInput writes the job's input/job.json and input/content/N, mode
// 0400 and owned by the sandbox user's host uid and gid, uid:gid, so that
// no other host user can read them. The directories are already the
// sandbox user's, mode 0500, which only the broker, as root, may still
// write into.
func writeInput(input string, j *job.Job, gateway *agent.Gateway, uid, gid uint32) error {
	contentDir := filepath.Join(input, "content")
	jf := agent.Job{
		ContractVersion: agent.ContractVersion, ID: j.ID, Task: j.Task, Params: j.Params, Tools: j.Tools, Gateway: gateway,
		Instructions: j.Instructions, Schema: j.Schema, Model: agentModel(j),
	}
	for i, c := range j.Content {
		name := strconv.Itoa(i)
		if c.URL != "" {
			// The agent fetches it; half the job's time is the most a
			// fetch may take, so that a slow server is a fetch failure.
			jf.FetchTimeoutMillis = (j.Policy.Limits.Timeout / 2).Milliseconds()
			jf.Content = append(jf.Content, agent.ContentFile{Name: name, MediaType: c.MediaType, Source: c.Source, URL: c.URL})
			continue
		}
		if err := writeReadOnly(filepath.Join(contentDir, name), c.Data, uid, gid); err != nil {
			return err
		}
		jf.Content = append(jf.Content, agent.ContentFile{Name: name, MediaType: c.MediaType, Source: c.Source})
	}
	b, err := json.Marshal(jf)
	if err != nil {
		return err
	}
	return writeReadOnly(filepath.Join(input, "job.json"), b, uid, gid)
}

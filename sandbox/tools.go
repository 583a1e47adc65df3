package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies/execpolicy"
	"github.com/airlock/airlock/sandbox/agent"
	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/job"
	"github.com/airlock/airlock/sandbox/toolgw"
)

// toolsSocket is the gateway's socket below the job's run directory; the
// run directory is mounted on /run, so the job sees toolgw.SocketPath.
var toolsSocket = filepath.Join("airlock", path.Base(toolgw.SocketPath))

// errNotATool means a command names something the tools image does not
// carry as an applet link, such as /bin/busybox itself.
var errNotATool = errors.New("not a tool of the tools image")

// prepareRunDir makes the job's run directory and the socket's directory
// in it, owned by root and traversable only, so the job can reach the
// socket and nothing else.
func prepareRunDir(dir string) (string, error) {
	run := filepath.Join(dir, "run")
	if err := footprint.MkdirTraversable(filepath.Join(run, filepath.Dir(toolsSocket))); err != nil {
		return "", err
	}
	if err := os.Chmod(run, 0o711); err != nil {
		return "", err
	}
	return run, nil
}

// toolCommand checks argv against what the tools image carries and returns
// the binary to run. The broker has decided the command already; this is
// the runner's own floor, so that no policy (not even exec.security full)
// can reach busybox by its own name, whose applets include a shell.
func toolCommand(argv []string, cwd string) (string, string, error) {
	if len(argv) == 0 {
		return "", "", fmt.Errorf("%w: empty argv", errNotATool)
	}
	bin, err := execpolicy.Resolve(argv[0])
	if err != nil {
		return "", "", err
	}
	if path.Dir(bin) != execpolicy.BinDir || !slices.Contains(images.ToolApplets, path.Base(bin)) {
		return "", "", fmt.Errorf("%w: %s", errNotATool, bin)
	}
	// The tools are read-only: their writing forms (sort -o, uniq IN OUT)
	// are refused here too, whatever the broker decided.
	if err := execpolicy.CheckWrites(argv); err != nil {
		return "", "", fmt.Errorf("%w: %v", errNotATool, err)
	}
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) || path.Clean(cwd) != cwd {
		return "", "", fmt.Errorf("cwd %q is not a clean absolute path", cwd)
	}
	return bin, cwd, nil
}

// toolProcess is the process spec of one tool command: the agent's own
// process (same user, environment, limits, capabilities, no new
// privileges) but in images.ToolsGID, the only group that can execute
// busybox, and with no other group.
func toolProcess(base *specs.Process, argv []string, cwd string) *specs.Process {
	p := *base
	p.Args = argv
	p.Cwd = cwd
	p.Env = slices.Clone(base.Env)
	p.Terminal = false
	p.NoNewPrivileges = true
	p.User = specs.User{UID: base.User.UID, GID: images.ToolsGID}
	p.Rlimits = slices.Clone(base.Rlimits)
	return &p
}

// toolChain is what the runner will run for a command request: its
// segments, each argv with its binary resolved, and their directory. An
// argv is a chain of one. A command line is parsed again here, with the
// broker's own parser, so that what runs is what was decided; every
// segment must pass toolCommand before any runs, so that a refused one
// cannot stop a line halfway.
func toolChain(req toolgw.Request) ([]execpolicy.Segment, string, error) {
	segs := []execpolicy.Segment{{Argv: req.Argv}}
	if req.Command != "" {
		if len(req.Argv) > 0 {
			return nil, "", errors.New("both an argv and a command line")
		}
		var err error
		if segs, err = execpolicy.ParseChain(req.Command); err != nil {
			return nil, "", err
		}
	}
	dir := ""
	for i, s := range segs {
		bin, d, err := toolCommand(s.Argv, req.Cwd)
		if err != nil {
			if len(segs) > 1 {
				return nil, "", fmt.Errorf("command %d of the line, so none of it ran: %w", i+1, err)
			}
			return nil, "", err
		}
		segs[i].Argv = append([]string{bin}, s.Argv[1:]...)
		dir = d
	}
	return segs, dir, nil
}

// runChain runs segments in order as a shell would, without one: a
// segment after && runs only when the last one run exited 0, after || only
// when it did not, after ; always. The result has the exit code of the
// last one run and the outputs of all, together capped at
// toolgw.MaxOutputBytes each. It stops at the first segment exec cannot
// run, or when ctx ends between segments, and returns what ran so far with
// the error.
func runChain(ctx context.Context, segs []execpolicy.Segment, exec func(argv []string) (toolgw.Response, error)) (toolgw.Response, error) {
	res := toolgw.Response{ExitCode: -1}
	ran := false
	for i, s := range segs {
		if s.Op == execpolicy.OpAnd && res.ExitCode != 0 || s.Op == execpolicy.OpOr && res.ExitCode == 0 {
			continue
		}
		fail := func(err error) (toolgw.Response, error) {
			res.ExitCode = -1
			if len(segs) > 1 {
				err = fmt.Errorf("command %d of the line: %w", i+1, err)
			}
			return res, err
		}
		if err := ctx.Err(); err != nil && ran {
			return fail(err)
		}
		if s.Op == execpolicy.OpPipe {
			// ParseChain refuses pipes; a caller that skipped it still
			// gets no unconnected half of one.
			return fail(fmt.Errorf("%w: pipe |", execpolicy.ErrUnsupported))
		}
		r, err := exec(s.Argv)
		if err != nil {
			return fail(err)
		}
		ran = true
		var outCut, errCut bool
		res.Stdout, outCut = appendCapped(res.Stdout, r.Stdout, toolgw.MaxOutputBytes)
		res.Stderr, errCut = appendCapped(res.Stderr, r.Stderr, toolgw.MaxOutputBytes)
		res.Truncated = res.Truncated || r.Truncated || outCut || errCut
		res.ExitCode = r.ExitCode
	}
	return res, nil
}

// appendCapped appends add to s, keeping at most max bytes in all, and
// reports whether it dropped any.
func appendCapped(s, add string, limit int) (string, bool) {
	if room := limit - len(s); len(add) > room {
		return s + add[:max(room, 0)], true
	}
	return s + add, false
}

// toolHandler serves one job's gateway: the broker decides through
// job.OnExec, and an allowed command, or each command of an allowed
// command line, runs in the job's container with task.Exec, until the
// job's deadline at most. Another tool's call is only decided here: the
// agent carries it out itself, confined by the sandbox's read-only root
// and input and its own Landlock restriction, whatever it was told.
func (r *Runner) toolHandler(j *job.Job, task containerd.Task, base *specs.Process, fifoDir string, deadline func() time.Time) toolgw.Handler {
	var seq atomic.Int64
	return func(ctx context.Context, req toolgw.Request) toolgw.Response {
		refused := func(reason string) toolgw.Response { return toolgw.Response{ExitCode: -1, Reason: reason} }
		if j.OnExec == nil {
			return refused("the broker decides no tool calls for this job")
		}
		if !req.IsExec() {
			d := j.OnExec(ctx, job.ExecRequest{Tool: req.Tool, Target: req.Target})
			if !d.Allow {
				return refused(d.Reason)
			}
			return toolgw.Response{Allowed: true, Reason: d.Reason}
		}
		d := j.OnExec(ctx, job.ExecRequest{Argv: req.Argv, Command: req.Command, Cwd: req.Cwd})
		if !d.Allow {
			return refused(d.Reason)
		}
		done := func(code int) {
			if d.Done != nil {
				d.Done(code)
			}
		}
		segs, dir, err := toolChain(req)
		if err != nil {
			done(-1)
			return refused(fmt.Sprintf("allowed (%s), but the sandbox refuses it: %v", d.Reason, err))
		}
		first := true
		res, err := runChain(ctx, segs, func(argv []string) (toolgw.Response, error) {
			id := "tool-" + strconv.FormatInt(seq.Add(1), 10)
			end := deadline()
			// The first command runs as a lone argv always has: killed at
			// once if late. Later ones are not started to be killed.
			if !first && !time.Now().Before(end) {
				return toolgw.Response{}, errors.New("the job's deadline passed before it could start")
			}
			first = false
			res, err := execTool(ctx, task, toolProcess(base, argv, dir), id, fifoDir, end)
			if err != nil {
				r.log.Warn("tool exec failed", "job", j.ID, "exec", id, "err", err)
			}
			return res, err
		})
		if err != nil {
			done(-1)
			// What ran before the failure is still the job's to see.
			out := refused(fmt.Sprintf("allowed (%s), but it could not run: %v", d.Reason, err))
			out.Stdout, out.Stderr, out.Truncated = res.Stdout, res.Stderr, res.Truncated
			return out
		}
		done(res.ExitCode)
		res.Allowed, res.Reason = true, d.Reason
		return res
	}
}

// execTool runs one process in the task and collects its exit code and
// capped output. It kills the process at deadline or when ctx ends.
func execTool(ctx context.Context, task containerd.Task, spec *specs.Process, id, fifoDir string, deadline time.Time) (toolgw.Response, error) {
	stdout, stderr := newCappedBuffer(toolgw.MaxOutputBytes), newCappedBuffer(toolgw.MaxOutputBytes)
	p, err := task.Exec(ctx, id, spec, cio.NewCreator(cio.WithStreams(nil, stdout, stderr), cio.WithFIFODir(fifoDir)))
	if err != nil {
		return toolgw.Response{}, fmt.Errorf("exec: %w", err)
	}
	// Deleted whatever happens, even when ctx has ended: a process left
	// behind would hold the task's exec ID and its FIFOs.
	defer func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = p.Delete(c, containerd.WithProcessKill)
	}()
	waitCtx, stopWait := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWait()
	exitCh, err := p.Wait(waitCtx)
	if err != nil {
		return toolgw.Response{}, fmt.Errorf("wait: %w", err)
	}
	if err := p.Start(ctx); err != nil {
		return toolgw.Response{}, fmt.Errorf("start: %w", err)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var status containerd.ExitStatus
	killed := ""
	select {
	case status = <-exitCh:
	case <-timer.C:
		killed = "the job's deadline"
	case <-ctx.Done():
		killed = "the end of the job"
	}
	if killed != "" {
		_ = p.Kill(waitCtx, syscall.SIGKILL)
		select {
		case status = <-exitCh:
		case <-time.After(5 * time.Second):
			return toolgw.Response{}, fmt.Errorf("did not exit after SIGKILL at %s", killed)
		}
	}
	// The output is complete once the process's pipes close; a bounded
	// wait, since a pipe inherited by something else would never close.
	ioDone := make(chan struct{})
	go func() { p.IO().Wait(); close(ioDone) }()
	select {
	case <-ioDone:
	case <-time.After(2 * time.Second):
	}
	code, _, err := status.Result()
	if err != nil {
		return toolgw.Response{}, fmt.Errorf("exit status: %w", err)
	}
	out, outCut := stdout.kept()
	errOut, errCut := stderr.kept()
	res := toolgw.Response{ExitCode: int(code), Stdout: string(out), Stderr: string(errOut), Truncated: outCut || errCut}
	if killed != "" {
		res.Stderr += fmt.Sprintf("\n[killed at %s]\n", killed)
	}
	return res, nil
}

// kept is what the buffer kept, and whether it dropped anything.
func (c *cappedBuffer) kept() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf...), c.dropped > 0
}

// gatewayFor returns the job.json entry of a job's gateway.
func gatewayFor(capability string) *agent.Gateway {
	if capability == "" {
		return nil
	}
	return &agent.Gateway{Socket: toolgw.SocketPath, Capability: capability}
}

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

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/execpolicy"
	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/sandbox/agent"
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
	if err := MkdirTraversable(filepath.Join(run, filepath.Dir(toolsSocket))); err != nil {
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

// toolHandler serves one job's gateway: the broker decides through
// job.OnExec, and an allowed command runs in the job's container with
// task.Exec, until the job's deadline at most. Another tool's call is only
// decided here: the agent carries it out itself, confined by the sandbox's
// read-only root and input and its own Landlock restriction, whatever it
// was told.
func (r *Runner) toolHandler(job *broker.Job, task containerd.Task, base *specs.Process, fifoDir string, deadline func() time.Time) toolgw.Handler {
	var seq atomic.Int64
	return func(ctx context.Context, req toolgw.Request) toolgw.Response {
		refused := func(reason string) toolgw.Response { return toolgw.Response{ExitCode: -1, Reason: reason} }
		if job.OnExec == nil {
			return refused("the broker decides no tool calls for this job")
		}
		if !req.IsExec() {
			d := job.OnExec(ctx, broker.ExecRequest{Tool: req.Tool, Target: req.Target})
			if !d.Allow {
				return refused(d.Reason)
			}
			return toolgw.Response{Allowed: true, Reason: d.Reason}
		}
		argv, cwd := req.Argv, req.Cwd
		d := job.OnExec(ctx, broker.ExecRequest{Argv: argv, Cwd: cwd})
		if !d.Allow {
			return refused(d.Reason)
		}
		done := func(code int) {
			if d.Done != nil {
				d.Done(code)
			}
		}
		bin, dir, err := toolCommand(argv, cwd)
		if err != nil {
			done(-1)
			return refused(fmt.Sprintf("allowed (%s), but the sandbox refuses it: %v", d.Reason, err))
		}
		run := append([]string{bin}, argv[1:]...)
		id := "tool-" + strconv.FormatInt(seq.Add(1), 10)
		res, err := execTool(ctx, task, toolProcess(base, run, dir), id, fifoDir, deadline())
		if err != nil {
			r.log.Warn("tool exec failed", "job", job.ID, "exec", id, "err", err)
			done(-1)
			return refused(fmt.Sprintf("allowed (%s), but it could not run: %v", d.Reason, err))
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

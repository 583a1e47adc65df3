package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/airlock/airlock/sandbox/job"
	"github.com/airlock/airlock/sandbox/toolgw"
)

// Limits of the run task.
const (
	// MaxCalls is the most tool calls one run task makes.
	MaxCalls = job.MaxCalls
	// MaxCallsParamBytes caps the calls param.
	MaxCallsParamBytes = job.MaxCallsParamBytes
	// MaxToolTextBytes caps what one read or fetch call returns, as the
	// gateway caps a command's output.
	MaxToolTextBytes = toolgw.MaxOutputBytes
	// MaxEditBytes is the largest file edit rewrites.
	MaxEditBytes = 1 << 20
)

// The tools a run call may name. Each must be among the job's tools.
const (
	ToolExec  = toolgw.ToolExec
	ToolRead  = "read"
	ToolWrite = "write"
	ToolEdit  = "edit"
	ToolFetch = "fetch"
)

// callTimeout bounds one gateway call, an approval wait included. The
// job's own deadline is shorter; this only stops a call from outliving a
// gateway that stopped answering. A variable so tests can shorten it.
var callTimeout = 10 * time.Minute

// ErrNoGateway is returned, wrapped, when the job has no tool gateway.
var ErrNoGateway = errors.New("no tool gateway")

// RunResult is the result of run.
type RunResult struct {
	// Calls are in the order asked; never null.
	Calls []CallResult `json:"calls"`
}

// CallResult is one tool call and how it went.
type CallResult struct {
	// Tool is the call's tool; exec for an argv or a command line.
	Tool    string   `json:"tool"`
	Argv    []string `json:"argv,omitempty"`
	Command string   `json:"command,omitempty"`
	// Path is the target of read, write and edit; URL that of fetch.
	Path string `json:"path,omitempty"`
	URL  string `json:"url,omitempty"`
	// Allowed says the broker allowed the call and it was carried out.
	Allowed bool `json:"allowed"`
	// ExitCode is the command's; for another tool 0 when it was done;
	// -1 when it was not.
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	// Text is what read or fetch returned, at most MaxToolTextBytes.
	Text string `json:"text,omitempty"`
	// Truncated says Stdout or Text was cut.
	Truncated bool `json:"truncated,omitempty"`
	// Reason is the broker's explanation, or why the call failed.
	Reason string `json:"reason"`
}

// call is one parsed entry of the calls param.
type call = job.Call

// parseCalls reads the calls param, as the broker checked it at the door.
func parseCalls(raw string) ([]call, error) { return job.ParseCalls(raw) }

// jobTasks need the job itself, not only its params and content.
var jobTasks = map[string]func(Job) (any, error){
	"run": runCalls,
}

// callResult is c's entry in RunResult, before it is carried out.
func callResult(c call) CallResult {
	r := CallResult{Tool: c.Tool, Argv: c.Argv, Command: c.Command, ExitCode: -1}
	if c.Tool == ToolFetch {
		r.URL = c.Target
	} else if c.Tool != ToolExec {
		r.Path = c.Target
	}
	return r
}

// runCalls carries out params["calls"] in order. Each call is refused here
// unless its tool is one of the job's, then asked of the tool gateway: a
// command the broker runs, any other tool the agent carries out once the
// broker allows it. A refused or failed call is reported, not an error.
func runCalls(job Job) (any, error) {
	if job.Gateway == nil {
		return nil, fmt.Errorf("%w: the policy gives this job no tool gateway", ErrNoGateway)
	}
	calls, err := parseCalls(job.Params["calls"])
	if err != nil {
		return nil, err
	}
	out := RunResult{Calls: make([]CallResult, 0, len(calls))}
	for _, c := range calls {
		out.Calls = append(out.Calls, runCall(job, c))
	}
	return out, nil
}

func runCall(job Job, c call) CallResult {
	res := callResult(c)
	if !slices.Contains(job.Tools, c.Tool) {
		// The gateway would refuse it too; asking would only spend the
		// job's approvals and the caller's attention.
		res.Reason = fmt.Sprintf("refused by the agent: the job's tools do not include %s", c.Tool)
		return res
	}
	req := toolgw.Request{Cap: job.Gateway.Capability, Argv: c.Argv, Command: c.Command, Cwd: "/"}
	if c.Tool != ToolExec {
		req = toolgw.Request{Cap: job.Gateway.Capability, Tool: c.Tool, Target: c.Target}
	}
	resp, err := toolgw.Call(job.Gateway.Socket, req, callTimeout)
	if err != nil {
		res.Reason = "tool gateway: " + err.Error()
		return res
	}
	res.Reason = resp.Reason
	if c.Tool == ToolExec {
		res.Allowed, res.ExitCode, res.Stdout, res.Truncated = resp.Allowed, resp.ExitCode, resp.Stdout, resp.Truncated
		return res
	}
	if !resp.Allowed {
		return res
	}
	text, cut, err := doCall(c)
	if err != nil {
		res.Reason = fmt.Sprintf("allowed (%s), but %s failed: %v", resp.Reason, c.Tool, err)
		return res
	}
	res.Allowed, res.ExitCode, res.Text, res.Truncated = true, 0, text, cut
	return res
}

// doCall carries out an allowed call of a tool other than exec. Whatever the
// broker allowed, the kernel has the last word: the root and /input are
// read-only mounts, and Landlock keeps the agent's writes in /tmp and
// /output.
func doCall(c call) (string, bool, error) {
	switch c.Tool {
	case ToolRead:
		return readTool(c.Target)
	case ToolWrite:
		return "", false, writeTool(c.Target, c.Content)
	case ToolEdit:
		return "", false, editTool(c.Target, c.Old, c.New)
	case ToolFetch:
		r, err := fetchPage(map[string]string{"url": c.Target}, nil)
		if err != nil {
			return "", false, err
		}
		text := r.(FetchResult).Text
		return truncateBytes(text, MaxToolTextBytes), len(text) > MaxToolTextBytes, nil
	}
	return "", false, fmt.Errorf("no tool %q", c.Tool)
}

func readTool(name string) (string, bool, error) {
	f, err := openRegular(name, os.O_RDONLY, 0)
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxToolTextBytes+1))
	if err != nil {
		return "", false, err
	}
	return truncateBytes(string(data), MaxToolTextBytes), len(data) > MaxToolTextBytes, nil
}

func writeTool(name, content string) error {
	f, err := openRegular(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(content)
	return errors.Join(werr, f.Close())
}

// editTool replaces the one occurrence of old in the file by new. Zero or
// several occurrences are an error: a replacement must land where meant.
func editTool(name, old, new string) error {
	f, err := openRegular(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxEditBytes+1))
	if err != nil {
		return err
	}
	if len(data) > MaxEditBytes {
		return fmt.Errorf("%w: the file is over %d bytes", ErrTooLarge, MaxEditBytes)
	}
	if n := strings.Count(string(data), old); n != 1 {
		return fmt.Errorf("old occurs %d times in the file; edit replaces exactly one", n)
	}
	edited := strings.Replace(string(data), old, new, 1)
	if _, err := f.WriteAt([]byte(edited), 0); err != nil {
		return err
	}
	if err := f.Truncate(int64(len(edited))); err != nil {
		return err
	}
	return f.Close()
}

// openRegular opens name without following a symlink anywhere in it, and
// only as a regular file: a link planted by a command cannot redirect a
// tool elsewhere than the broker allowed, and a FIFO cannot hang it.
// Where openat2 is missing or filtered, only the last component is held.
func openRegular(name string, flags int, perm os.FileMode) (*os.File, error) {
	flags |= unix.O_CLOEXEC | unix.O_NONBLOCK
	fd, err := unix.Openat2(unix.AT_FDCWD, name, &unix.OpenHow{
		Flags: uint64(flags), Mode: uint64(perm), Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	var f *os.File
	switch {
	case err == nil:
		f = os.NewFile(uintptr(fd), name)
	case errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM):
		if f, err = os.OpenFile(name, flags|syscall.O_NOFOLLOW, perm); err != nil {
			return nil, err
		}
	default:
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	// Blocking again, so reads and writes are plain file I/O.
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

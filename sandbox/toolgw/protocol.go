// Package toolgw is the per-job tool gateway: the one channel through which
// a sandboxed agent asks the broker to run a command, instead of running it
// itself, and asks before it uses any other tool (read, write, edit,
// fetch), which it then carries out itself under the sandbox's kernel
// confinement. The sandbox runner serves a Gateway on a unix socket that
// only that job's sandbox can reach; each request carries the job's random
// capability and goes to a Handler, which decides, and runs a command. The
// gateway itself only frames, authenticates and rate-limits, so that a
// hostile job can neither impersonate another nor flood the broker.
//
// The protocol is one request per connection: a 4-byte big-endian length
// and a JSON Request, answered by a length and a JSON Response. The package
// imports nothing but the standard library, so the agent can use Call.
package toolgw

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Paths inside the sandbox. The runner bind-mounts the job's run directory
// on SandboxRunDir, read-only; the socket is the only thing in it.
const (
	SandboxRunDir = "/run"
	// SocketPath is where the agent finds its gateway.
	SocketPath = "/run/airlock/tools.sock"
)

// Frame and output caps.
const (
	// MaxRequestBytes caps a request frame: an argv is at most 16 KiB.
	MaxRequestBytes = 64 << 10
	// MaxCommandBytes caps a command line, as the broker's matcher does:
	// a longer one could never be allowed, so it is not passed on.
	MaxCommandBytes = 16 << 10
	// MaxOutputBytes caps a command's stdout, and separately its stderr.
	MaxOutputBytes = 64 << 10
	// MaxResponseBytes caps a response frame: both outputs, JSON-escaped
	// at worst six bytes per byte, plus the rest.
	MaxResponseBytes = 12*MaxOutputBytes + 16<<10
)

// ToolExec names a command run by the broker; a Request with no Tool is
// one too. Every other tool is the agent's own.
const ToolExec = "exec"

// ErrFrameTooLarge means a frame's length prefix is over its cap.
var ErrFrameTooLarge = errors.New("frame too large")

// Request asks the broker to run one command, or whether the agent may
// use another tool on one target.
type Request struct {
	// Cap is the job's capability, from job.json.
	Cap string `json:"cap"`
	// Tool is empty or ToolExec for the command in Argv; otherwise a tool
	// the agent carries out itself, named with its Target and no Argv.
	Tool string `json:"tool,omitempty"`
	// Target is the tool's path or URL. What a tool would write is never
	// sent: the broker decides on the tool and its target alone.
	Target string `json:"target,omitempty"`
	// Argv is the command, run without a shell.
	Argv []string `json:"argv,omitempty"`
	// Command is a command line instead of Argv: simple commands joined by
	// &&, || and ;, which the broker parses, decides as a whole and runs
	// segment by segment, still without a shell.
	Command string `json:"command,omitempty"`
	// Cwd is the directory to run it in; empty is "/".
	Cwd string `json:"cwd,omitempty"`
}

// IsExec says the request is for a command.
func (r Request) IsExec() bool { return r.Tool == "" || r.Tool == ToolExec }

// wellFormed holds for a command with either an argv or a command line,
// or another tool with a target; anything else never reaches the Handler.
func (r Request) wellFormed() bool {
	if r.IsExec() {
		hasArgv, hasLine := len(r.Argv) > 0, r.Command != ""
		return hasArgv != hasLine && len(r.Command) <= MaxCommandBytes && r.Target == ""
	}
	return r.Target != "" && len(r.Argv) == 0 && r.Command == "" && r.Cwd == ""
}

// Response is the broker's answer.
type Response struct {
	// Allowed says the command was allowed and run, or the tool call
	// allowed.
	Allowed bool `json:"allowed"`
	// ExitCode is the command's exit code; -1 when it did not run, and 0
	// for an allowed tool call.
	ExitCode int `json:"exit_code"`
	// Stdout and Stderr are the command's output, each capped at
	// MaxOutputBytes; Truncated says one was cut.
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	Truncated bool   `json:"truncated,omitempty"`
	// Reason says why it was allowed or refused.
	Reason string `json:"reason"`
}

// WriteFrame writes v as one length-prefixed JSON frame.
func WriteFrame(w io.Writer, v any, max int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > max {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, len(b), max)
	}
	buf := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

// ReadFrame reads one length-prefixed JSON frame into v, refusing a frame
// over max before reading it, and unknown fields.
func ReadFrame(r io.Reader, v any, max int) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > uint32(max) {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode frame: %w", err)
	}
	if dec.More() {
		return errors.New("decode frame: trailing data")
	}
	return nil
}

// Call sends req to the gateway at socket and returns its answer. timeout
// bounds the whole call, approval waits included.
func Call(socket string, req Request, timeout time.Duration) (Response, error) {
	conn, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return Response{}, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return Response{}, err
	}
	if err := WriteFrame(conn, req, MaxRequestBytes); err != nil {
		return Response{}, err
	}
	var resp Response
	if err := ReadFrame(conn, &resp, MaxResponseBytes); err != nil {
		return Response{}, err
	}
	return resp, nil
}

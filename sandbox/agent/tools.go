package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/airlock/airlock/sandbox/toolgw"
)

// Limits of the run task.
const (
	// MaxCalls is the most tool calls one run task makes.
	MaxCalls = 64
	// MaxCallsParamBytes caps the calls param.
	MaxCallsParamBytes = 4 << 10
)

// callTimeout bounds one gateway call, an approval wait included. The
// job's own deadline is shorter; this only stops a call from outliving a
// gateway that stopped answering. A variable so tests can shorten it.
var callTimeout = 10 * time.Minute

// ErrNoGateway is returned, wrapped, when the job has no tool gateway or
// the policy does not allow the exec tool.
var ErrNoGateway = errors.New("no tool gateway")

// RunResult is the result of run.
type RunResult struct {
	// Calls are in the order asked; never null.
	Calls []CallResult `json:"calls"`
}

// CallResult is one tool call and the gateway's answer.
type CallResult struct {
	Argv []string `json:"argv"`
	// Allowed says the broker allowed and ran the command.
	Allowed bool `json:"allowed"`
	// ExitCode is the command's; -1 when it did not run.
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	// Reason is the broker's explanation, or why the call failed.
	Reason string `json:"reason"`
}

// jobTasks need the job itself, not only its params and content.
var jobTasks = map[string]func(Job) (any, error){
	"run": runCalls,
}

// runCalls executes params["calls"], a JSON list of argv arrays, each
// through the tool gateway: the agent runs no command itself, and a
// refused call is reported, not an error.
func runCalls(job Job) (any, error) {
	if job.Gateway == nil || !slices.Contains(job.Tools, "exec") {
		return nil, fmt.Errorf("%w: the policy does not allow this job to run commands", ErrNoGateway)
	}
	raw := job.Params["calls"]
	if len(raw) > MaxCallsParamBytes {
		return nil, fmt.Errorf("%w: calls is over %d bytes", ErrBadParam, MaxCallsParamBytes)
	}
	var calls [][]string
	if err := json.Unmarshal([]byte(raw), &calls); err != nil {
		return nil, fmt.Errorf("%w: calls: want a JSON list of argv arrays: %v", ErrBadParam, err)
	}
	if len(calls) == 0 || len(calls) > MaxCalls {
		return nil, fmt.Errorf("%w: calls: want 1 to %d calls, got %d", ErrBadParam, MaxCalls, len(calls))
	}
	out := RunResult{Calls: make([]CallResult, 0, len(calls))}
	for i, argv := range calls {
		if len(argv) == 0 {
			return nil, fmt.Errorf("%w: calls[%d] is an empty argv", ErrBadParam, i)
		}
		resp, err := toolgw.Call(job.Gateway.Socket, toolgw.Request{Cap: job.Gateway.Capability, Argv: argv, Cwd: "/"}, callTimeout)
		if err != nil {
			out.Calls = append(out.Calls, CallResult{Argv: argv, ExitCode: -1, Reason: "tool gateway: " + err.Error()})
			continue
		}
		out.Calls = append(out.Calls, CallResult{Argv: argv, Allowed: resp.Allowed, ExitCode: resp.ExitCode, Stdout: resp.Stdout, Reason: resp.Reason})
	}
	return out, nil
}

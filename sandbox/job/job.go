// Package job is the contract between the broker and the sandbox: what a job
// is, what running it returns, and the calls a job makes back to the broker
// while it runs. Both sides import it and it imports nothing of the project
// but the policy it carries, as containerd's api/types, so that the broker
// never links containerd and the sandbox never links the gRPC server.
package job

import (
	"context"
	"time"

	"github.com/airlock/airlock/policies/policy"
)

// Runner runs one job in a fresh sandbox. The broker defines it so that it
// never depends on how sandboxes are made; package sandbox implements it on
// containerd, and unit tests use a fake.
type Runner interface {
	// Run runs job to completion and removes everything it created,
	// whatever the outcome: before returning an error, and after an
	// Outcome at the latest by the time the Runner is closed, since the
	// job's processes are gone once its result is read. A job that ran and
	// failed is an Outcome; an error means the sandbox could not run the
	// job at all.
	Run(ctx context.Context, job *Job) (*Outcome, error)
}

// Job is what a Runner needs to run one job. The broker has already resolved
// and validated Policy; the Runner enforces it and trusts nothing in Content.
type Job struct {
	ID string
	// Image names the image to run, for example "reader".
	Image  string
	Task   string
	Params map[string]string
	// Instructions are the caller's instructions for a model-driven task:
	// trusted, from the main agent, and kept apart from Content.
	Instructions string
	// Schema is the JSON Schema the result must fit, for an agent that
	// shapes its answer to it. The broker validates the result again.
	Schema  []byte
	Content []Content
	// Tools are the tool names the policy lets the agent use.
	Tools  []string
	Policy *policy.Profile
	// OnStart, when set, is called once the sandboxed task is running.
	OnStart func()
	// OnEgress, when set, is called for each egress attempt as it ends.
	OnEgress func(EgressAttempt)
	// OnModelCall, when set, is called for each request the job makes to
	// its model service (Policy.Model), as it ends.
	OnModelCall func(ModelCall)
	// Services are the profile's service aliases with their secrets
	// resolved, for the egress proxy to inject. Never passed to the task.
	Services map[string]Service
	// OnExec decides a call the job makes through its tool gateway: a
	// command, which the Runner runs only when it returns Allow, or a file
	// tool or fetch, which the agent carries out itself once allowed. A nil
	// OnExec allows nothing. It may block (waiting for a caller's approval)
	// until ctx ends, and is safe for concurrent use.
	OnExec func(ctx context.Context, req ExecRequest) ExecDecision
}

// ExecRequest is one call a job makes through its tool gateway. Every
// field comes from the sandbox and is hostile.
type ExecRequest struct {
	// Tool is empty for a command; otherwise a tool the agent carries out
	// itself (policy.ToolRead and the like), with Target and no Argv.
	Tool string
	// Target is the tool's path or URL; never the content it would write.
	Target string
	// Argv is the command; it runs without a shell.
	Argv []string
	// Command, instead of Argv, is a command line of simple commands
	// joined by &&, || and ;. It is decided as a whole and run segment by
	// segment, also without a shell.
	Command string
	// Cwd is the directory inside the sandbox; empty is "/".
	Cwd string
}

// ExecDecision is the broker's answer to an ExecRequest.
type ExecDecision struct {
	Allow bool
	// Reason says why, for the job and the audit log.
	Reason string
	// Done, when set, is called once with the exit code after an allowed
	// command ran, or -1 when it could not be run. A tool call has none:
	// only the agent knows how it went.
	Done func(exitCode int)
}

// Service is a profile's service alias (policy.Service) with its secret
// resolved by the broker, for the egress proxy to inject. The proxy checks
// it again when the job registers.
type Service struct {
	// Upstream is the http or https base URL that alias requests go to; the
	// request's path is appended to its path.
	Upstream string
	// Header is the credential header the proxy sets; empty for none.
	Header string
	// Prefix goes before Secret in Header's value, such as "Bearer ".
	Prefix string
	// Secret is Header's value after Prefix. It never leaves the proxy
	// except towards Upstream, and never enters the sandbox.
	Secret []byte
	// Headers are fixed, non-secret headers the proxy sets on every
	// request, such as anthropic-version. They replace the job's own.
	Headers map[string]string
}

// ModelCall is one request a job made to its model service, as the egress
// proxy saw it. The counts come from the upstream's usage block, not from
// the job.
type ModelCall struct {
	// Time is when the request head was read.
	Time time.Time
	// Turn numbers the job's model requests from 1, refused ones included.
	Turn int
	// Allowed reports whether the proxy sent the request upstream.
	Allowed bool
	// Status is the upstream's HTTP status; 0 when there was no response.
	Status int
	// Reason says why a call was refused or failed; empty for a 2xx reply
	// read to its end. It never holds a secret or a body.
	Reason string
	// Limit names the model limit that refused or cut the call, such as
	// "maxTurns"; empty when none did.
	Limit string
	// InputTokens and OutputTokens are the reply's usage; 0 when absent.
	InputTokens, OutputTokens int64
	// BytesUp and BytesDown are body bytes sent and received.
	BytesUp, BytesDown int64
	// Duration is from the request head to the reply's end.
	Duration time.Duration
}

// ModelUsage totals a job's model calls, as the egress proxy counted them.
type ModelUsage struct {
	// Calls counts requests sent upstream; Refused those the proxy refused.
	Calls, Refused int
	// Failed counts calls sent upstream that got no complete 2xx reply.
	Failed int
	// InputTokens and OutputTokens sum the replies' usage.
	InputTokens, OutputTokens int64
	// Limit names the first model limit that refused or cut a call.
	Limit string
	// LastFailure is the Reason of the last failed or refused call.
	LastFailure string
	// LastStatus is the upstream status of the last failed call, if any.
	LastStatus int
}

// EgressAttempt is one request or tunnel a job tried through its egress
// proxy, whatever the outcome. Host and Reason come from the proxy, but
// Host is what the job asked for: it is hostile text.
type EgressAttempt struct {
	// Time is when the request head was read.
	Time time.Time
	// Method is the HTTP method, CONNECT for a tunnel; empty when the
	// request could not be parsed.
	Method string
	// Host is the normalized target host (the alias host for a service);
	// empty when no target could be read.
	Host string
	// Port is the target port.
	Port uint16
	// Allowed reports whether the proxy let the attempt through towards a
	// destination. An allowed attempt can still fail upstream; Reason then
	// says how. A name that cannot be resolved is not allowed.
	Allowed bool
	// Rule names what allowed the attempt, from the job's policy alone:
	// the network.egress entry as the profile states it (host:port,
	// *.suffix:port, [ipv6]:port) or "service:<alias>" for a service
	// alias; "" when the attempt was denied. Unlike Host it is never the
	// job's text, so it may label metrics.
	Rule string
	// Reason explains the decision and any failure; it never holds a
	// secret or content.
	Reason string
	// Path is the request's path without its query, capped; empty for a
	// tunnel. It is the job's text.
	Path string
	// Status is the HTTP status the job got back: the upstream's, or the
	// proxy's own for a refusal; 0 for a tunnel or no response.
	Status int
	// BytesUp and BytesDown are body bytes (tunnel bytes for CONNECT) sent
	// towards and received from the destination.
	BytesUp, BytesDown int64
}

// Content is one piece of untrusted input.
type Content struct {
	Data      []byte
	MediaType string
	Source    string
	// URL, instead of Data, is fetched by the agent through the job's
	// egress proxy; the broker checked it against the job's egress.
	URL string
}

// Outcome is what came out of a sandbox. Result is raw and untrusted: the
// broker parses, validates and sanitizes it before anything crosses back.
type Outcome struct {
	// Result is /output/result.json, read with the policy's byte cap; nil
	// when the file was absent or not a regular file.
	Result []byte
	// ResultProblem says why Result is nil, when it is.
	ResultProblem string
	// OutputTooLarge is set when result.json exceeded the cap.
	OutputTooLarge bool
	TimedOut       bool
	OOMKilled      bool
	// PidsLimitHit is set when the pids limit refused a fork.
	PidsLimitHit bool
	ExitCode     int
	// MemoryPeakBytes is the cgroup's peak memory, when known.
	MemoryPeakBytes int64
	// CPU is the CPU time the job's cgroup used, when known.
	CPU  time.Duration
	Wall time.Duration
	// Logs is the task's stdout and stderr, capped. It goes to the audit log
	// only, never to the caller.
	Logs []byte
	// ImageDigest is the digest of the image the job ran.
	ImageDigest string
	// Egress is every egress attempt, allowed or denied, up to the
	// proxy's caps on a job's log.
	Egress []EgressAttempt
	// EgressDropped counts the attempts left out of Egress because the
	// job's log was full.
	EgressDropped int
	// EgressDeniedPackets is what the job's firewall dropped: its
	// attempts at direct egress.
	EgressDeniedPackets uint64
	// Model totals the job's calls to its model service.
	Model ModelUsage
	// GatewayRefused counts the requests the job's tool gateway refused
	// before they reached OnExec (a wrong capability, flooding), by
	// reason.
	GatewayRefused map[string]int
	// Warm is set when the job ran in a sandbox made ahead of it by a
	// warm pool.
	Warm bool
	// Phases are where the sandbox's time went, in order. A warm job's
	// list starts at its claim: its sandbox was made before it arrived.
	Phases []Phase
}

// Phase is one step of a sandbox's life and how long it took.
type Phase struct {
	Name     string
	Duration time.Duration
}

package agent

import "encoding/json"

// Paths inside the sandbox. The sandbox runner mounts the job directory at
// InputDir (read-only) and a size-capped tmpfs at OutputDir.
const (
	InputDir   = "/input"
	JobFile    = "/input/job.json"
	ContentDir = "/input/content"
	OutputDir  = "/output"
	ResultFile = "/output/result.json"
	// ScratchDir is the sandbox's size-capped scratch tmpfs.
	ScratchDir = "/tmp"
)

// ContractVersion is the version of the sandbox contract
// (docs/agent-contract.md) this package speaks: the runner writes it into
// every job.json, and the agent refuses a job.json of any other version,
// since a field it does not know of may be a restriction it would fail to
// honour. A change that an agent written for the previous version could
// misread raises it.
const ContractVersion = 1

// Job is /input/job.json: everything the agent is told about its job. The
// sandbox runner writes it; the agent must treat the content it points to as
// hostile data, never as instructions.
type Job struct {
	// ContractVersion is the contract the job.json was written for:
	// ContractVersion, or the agent refuses it.
	ContractVersion int               `json:"contractVersion"`
	ID              string            `json:"id"`
	Task            string            `json:"task"`
	Params          map[string]string `json:"params,omitempty"`
	Content         []ContentFile     `json:"content"`
	// Tools are the tool names the policy allows; anything else is refused.
	Tools []string `json:"tools"`
	// Gateway is the job's tool gateway, set only when the policy allows
	// exec: the one way to run a command.
	Gateway *Gateway `json:"gateway,omitempty"`
	// Instructions are the caller's, for the agent task: trusted, and
	// given to the model in their own turn.
	Instructions string `json:"instructions,omitempty"`
	// Schema is the JSON Schema the agent task's answer must fit.
	Schema json.RawMessage `json:"schema,omitempty"`
	// Model is the agent task's model; nil for a profile without one.
	Model *Model `json:"model,omitempty"`
	// FetchTimeoutMillis bounds each content URL's fetch, well inside the
	// job's own deadline, so that a slow server ends the job with a fetch
	// failure rather than a kill; zero is the fetch tool's own bound.
	FetchTimeoutMillis int64 `json:"fetchTimeoutMs,omitempty"`
}

// Model says how the agent task reaches its model and how far it may go.
// It holds no key: the egress proxy adds it on the way out.
type Model struct {
	// URL is the model's service alias, such as
	// http://model.airlock.internal, reached through the egress proxy.
	URL string `json:"url"`
	// API is "openai" (Chat Completions) or "anthropic" (Messages).
	API    string `json:"api"`
	Name   string `json:"name"`
	Stream bool   `json:"stream,omitempty"`
	// MaxTurns counts model requests, a repair included.
	MaxTurns        int   `json:"maxTurns"`
	MaxToolCalls    int   `json:"maxToolCalls"`
	MaxOutputTokens int64 `json:"maxOutputTokens"`
	// MaxReplyBytes caps what is read of one reply.
	MaxReplyBytes int64 `json:"maxReplyBytes"`
}

// Gateway says how to reach the job's tool gateway.
type Gateway struct {
	// Socket is the gateway's unix socket inside the sandbox.
	Socket string `json:"socket"`
	// Capability authenticates this job's requests; it is worthless
	// outside this job's sandbox.
	Capability string `json:"capability"`
}

// ContentFile is one content item, stored at ContentDir/Name.
type ContentFile struct {
	Name      string `json:"name"`
	MediaType string `json:"mediaType,omitempty"`
	Source    string `json:"source,omitempty"`
	// URL, when set, is fetched through the egress proxy before the task
	// runs, instead of reading ContentDir/Name.
	URL string `json:"url,omitempty"`
}

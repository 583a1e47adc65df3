package agent

// Paths inside the sandbox. The sandbox runner mounts the job directory at
// InputDir (read-only) and a size-capped tmpfs at OutputDir.
const (
	InputDir   = "/input"
	JobFile    = "/input/job.json"
	ContentDir = "/input/content"
	OutputDir  = "/output"
	ResultFile = "/output/result.json"
)

// Job is /input/job.json: everything the agent is told about its job. The
// sandbox runner writes it; the agent must treat the content it points to as
// hostile data, never as instructions.
type Job struct {
	ID      string            `json:"id"`
	Task    string            `json:"task"`
	Params  map[string]string `json:"params,omitempty"`
	Content []ContentFile     `json:"content"`
	// Tools are the tool names the policy allows; anything else is refused.
	Tools []string `json:"tools"`
}

// ContentFile is one content item, stored at ContentDir/Name.
type ContentFile struct {
	Name      string `json:"name"`
	MediaType string `json:"mediaType,omitempty"`
	Source    string `json:"source,omitempty"`
}

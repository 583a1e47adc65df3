package modelserver

import (
	"encoding/json"
	"net/http"
)

// The APIs a request can be for, as in Turn.API and Request.API.
const (
	APIOpenAI    = "openai"
	APIAnthropic = "anthropic"
)

// Script decides one reply from the request. It must be safe for concurrent
// use. It gets the conversation as the client sent it, so it is stateless.
type Script func(t *Turn) Reply

// Turn is one request, normalised across both APIs.
type Turn struct {
	// API is APIOpenAI or APIAnthropic.
	API   string
	Model string
	// Number is 1 + the number of assistant messages in the request: the
	// conversation is the state, as it is for a real model.
	Number int
	// System is the system text: OpenAI's system and developer messages, or
	// Anthropic's system field, joined by blank lines.
	System string
	// Messages are the user, assistant and tool messages in order. An
	// Anthropic user message is split into one tool message per tool_result
	// block and one user message for its text.
	Messages []Message
	Tools    []Tool
	// Schema is what the answer must fit: OpenAI's
	// response_format.json_schema.schema; for Anthropic the schema of
	// output_config.format, else the input_schema of AnswerTool when it is
	// offered.
	Schema json.RawMessage
	// Format is OpenAI's response_format.type ("text", "json_object",
	// "json_schema") or Anthropic's output_config.format.type
	// ("json_schema"); empty when not sent.
	Format string
	// ToolChoice is "", "auto", "none", "required" (OpenAI), "any"
	// (Anthropic), or the name of the tool the client forces.
	ToolChoice string
	// MaxTokens is max_completion_tokens, else max_tokens; 0 when not sent.
	MaxTokens int64
	Stream    bool

	// includeUsage is OpenAI's stream_options.include_usage.
	includeUsage bool
}

// Message is one message of a Turn.
type Message struct {
	// Role is "user", "assistant" or "tool".
	Role string
	// Text is the message's text parts joined by newlines.
	Text      string
	ToolCalls []ToolCall
	// ToolCallID is the call a tool message answers.
	ToolCallID string
	// IsError is Anthropic's tool_result is_error.
	IsError bool
}

// ToolCall is a call of a tool by the model.
type ToolCall struct {
	ID, Name string
	// Arguments is a JSON value, normally an object. OpenAI sends it as a
	// string; one that is not JSON is kept as a JSON string.
	Arguments json.RawMessage
}

// Tool is a tool the client offers.
type Tool struct {
	Name, Description string
	// Schema is the tool's parameters (OpenAI) or input_schema (Anthropic).
	Schema json.RawMessage
}

// Reply is what a Script answers.
type Reply struct {
	// Text is the assistant's text. With Status set it is the error's
	// message instead.
	Text string
	// ToolCalls are made in order; an empty ID is made up.
	ToolCalls []ToolCall
	// InputTokens and OutputTokens are the usage block; 0 is estimated from
	// bytes, a quarter of them and at least 1.
	InputTokens, OutputTokens int64
	// Status, when non-zero, answers with this HTTP status and the API's
	// error body instead.
	Status int
	// Hang never replies: the handler returns when the client goes away or
	// the server closes.
	Hang bool
	// PadBytes makes the reply's text exactly this many bytes: Text, then
	// filler generated as it is written, so a reply of any size costs no
	// memory.
	PadBytes int64
	// StopReason overrides the finish or stop reason. Either API's word
	// works for the other ("length" is "max_tokens" for Anthropic).
	StopReason string
}

// Request is one request as received, for tests to inspect.
type Request struct {
	// API is APIOpenAI, APIAnthropic, or empty for an unknown path.
	API, Path, Model string
	Header           http.Header
	// Body is capped at MaxRecordedBodyBytes.
	Body   []byte
	Stream bool
}

// HasTool reports whether t offers a tool named name.
func (t *Turn) HasTool(name string) bool {
	for _, tool := range t.Tools {
		if tool.Name == name {
			return true
		}
	}
	return false
}

package modelserver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// openAIRequest is the part of a Chat Completions request the stand-in
// reads; other fields (temperature, n, seed...) are accepted and ignored.
type openAIRequest struct {
	Model    string          `json:"model"`
	Messages []openAIMessage `json:"messages"`
	Tools    []struct {
		Type     string `json:"type"`
		Function struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"function"`
	} `json:"tools"`
	ToolChoice     json.RawMessage `json:"tool_choice"`
	ResponseFormat *struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Name   string          `json:"name"`
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	} `json:"response_format"`
	MaxTokens           *int64 `json:"max_tokens"`
	MaxCompletionTokens *int64 `json:"max_completion_tokens"`
	Stream              bool   `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

type openAIMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCallID string          `json:"tool_call_id"`
	ToolCalls  []struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

// parseOpenAI checks a Chat Completions request as the API does and
// normalises it.
func parseOpenAI(body []byte) (*Turn, error) {
	var req openAIRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, badRequest("", "We could not parse the JSON body of your request: %v", err)
	}
	t := &Turn{API: APIOpenAI, Model: req.Model, Stream: req.Stream, Number: 1}
	if req.Model == "" {
		return t, badRequest("model", "you must provide a model parameter")
	}
	if len(req.Messages) == 0 {
		return t, badRequest("messages", "[] is too short - 'messages'")
	}
	var system []string
	for i, m := range req.Messages {
		text, err := openAIText(m.Content)
		if err != nil {
			return t, badRequest(fmt.Sprintf("messages[%d].content", i), "%v", err)
		}
		switch m.Role {
		case "system", "developer":
			system = append(system, text)
		case "user":
			t.Messages = append(t.Messages, Message{Role: "user", Text: text})
		case "assistant":
			msg := Message{Role: "assistant", Text: text}
			for _, c := range m.ToolCalls {
				msg.ToolCalls = append(msg.ToolCalls, ToolCall{ID: c.ID, Name: c.Function.Name, Arguments: argumentsJSON(c.Function.Arguments)})
			}
			t.Messages = append(t.Messages, msg)
			t.Number++
		case "tool", "function":
			if m.Role == "tool" && m.ToolCallID == "" {
				return t, badRequest(fmt.Sprintf("messages[%d].tool_call_id", i), "Missing required parameter: 'messages[%d].tool_call_id'.", i)
			}
			t.Messages = append(t.Messages, Message{Role: "tool", Text: text, ToolCallID: m.ToolCallID})
		default:
			return t, badRequest(fmt.Sprintf("messages[%d].role", i),
				"Invalid value: '%s'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.", m.Role)
		}
	}
	t.System = strings.Join(system, "\n\n")
	for i, tool := range req.Tools {
		if tool.Type != "function" {
			continue
		}
		if tool.Function.Name == "" {
			return t, badRequest(fmt.Sprintf("tools[%d].function.name", i), "Missing required parameter: 'tools[%d].function.name'.", i)
		}
		t.Tools = append(t.Tools, Tool{Name: tool.Function.Name, Description: tool.Function.Description, Schema: tool.Function.Parameters})
	}
	choice, err := openAIToolChoice(req.ToolChoice)
	if err != nil {
		return t, badRequest("tool_choice", "%v", err)
	}
	t.ToolChoice = choice
	if rf := req.ResponseFormat; rf != nil {
		t.Format = rf.Type
		switch rf.Type {
		case "text", "json_object":
		case "json_schema":
			if rf.JSONSchema == nil || rf.JSONSchema.Name == "" {
				return t, badRequest("response_format.json_schema.name", "Missing required parameter: 'response_format.json_schema.name'.")
			}
			t.Schema = rf.JSONSchema.Schema
		default:
			return t, badRequest("response_format.type", "Invalid value: '%s'. Supported values are: 'json_object', 'json_schema', and 'text'.", rf.Type)
		}
	}
	for _, mt := range []struct {
		name string
		v    *int64
	}{{"max_tokens", req.MaxTokens}, {"max_completion_tokens", req.MaxCompletionTokens}} {
		if mt.v == nil {
			continue
		}
		if *mt.v < 1 {
			return t, badRequest(mt.name, "Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d instead.", mt.name, *mt.v)
		}
		// max_completion_tokens supersedes max_tokens, so it is read last.
		t.MaxTokens = *mt.v
	}
	if req.StreamOptions != nil && !req.Stream {
		return t, badRequest("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
	}
	t.includeUsage = req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	return t, nil
}

// openAIText is a message's text: a string, null, or an array of parts of
// which the text ones count.
func openAIText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", fmt.Errorf("content must be a string or an array of content parts")
	}
	var texts []string
	for _, p := range parts {
		if p.Type == "text" {
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, "\n"), nil
}

// argumentsJSON keeps a call's arguments as JSON; OpenAI carries them as a
// string the model wrote, which need not be JSON at all.
func argumentsJSON(s string) json.RawMessage {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

// openAIToolChoice normalises "none"/"auto"/"required" and the object
// forms to the names in Turn.ToolChoice.
func openAIToolChoice(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "none", "auto", "required":
			return s, nil
		}
		return "", fmt.Errorf("Invalid value: '%s'. Supported values are: 'none', 'auto', and 'required'.", s)
	}
	var obj struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
		AllowedTools struct {
			Mode string `json:"mode"`
		} `json:"allowed_tools"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", fmt.Errorf("tool_choice must be a string or an object")
	}
	switch {
	case obj.Type == "function" && obj.Function.Name != "":
		return obj.Function.Name, nil
	case obj.Type == "allowed_tools":
		return obj.AllowedTools.Mode, nil
	}
	return "", fmt.Errorf("Invalid value for 'tool_choice': %s", raw)
}

type openAIUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
		AudioTokens  int64 `json:"audio_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails struct {
		ReasoningTokens          int64 `json:"reasoning_tokens"`
		AudioTokens              int64 `json:"audio_tokens"`
		AcceptedPredictionTokens int64 `json:"accepted_prediction_tokens"`
		RejectedPredictionTokens int64 `json:"rejected_prediction_tokens"`
	} `json:"completion_tokens_details"`
}

func (o *outcome) openAIUsage() openAIUsage {
	return openAIUsage{
		PromptTokens:     o.inputTokens,
		CompletionTokens: o.outputTokens,
		TotalTokens:      o.inputTokens + o.outputTokens,
	}
}

type openAIToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// writeOpenAI writes a chat.completion object. The message's content is
// written in place so that padding is never held in memory.
func writeOpenAI(w *bufio.Writer, o *outcome) error {
	fmt.Fprintf(w, `{"id":%s,"object":"chat.completion","created":%d,"model":%s,"choices":[{"index":0,"message":{"role":"assistant","content":`,
		jsonString(o.id), o.created, jsonString(o.model))
	if o.text.Len() == 0 && len(o.calls) > 0 {
		_, _ = w.WriteString("null")
	} else if err := o.text.writeJSON(w); err != nil {
		return err
	}
	_, _ = w.WriteString(`,"refusal":null`)
	if len(o.calls) > 0 {
		calls := make([]openAIToolCall, len(o.calls))
		for i, c := range o.calls {
			calls[i].ID, calls[i].Type = c.ID, "function"
			calls[i].Function.Name, calls[i].Function.Arguments = c.Name, string(c.Arguments)
		}
		_, _ = w.WriteString(`,"tool_calls":`)
		_, _ = w.Write(mustJSON(calls))
	}
	fmt.Fprintf(w, `,"annotations":[]},"logprobs":null,"finish_reason":%s}],"usage":%s,"service_tier":"default","system_fingerprint":null}`,
		jsonString(o.stop), mustJSON(o.openAIUsage()))
	return w.Flush()
}

// streamOpenAI writes the reply as chat.completion.chunk events: the role,
// the text in pieces, each tool call's header then its arguments in pieces,
// the finish reason, the usage chunk when asked for, and [DONE].
func streamOpenAI(w *bufio.Writer, flush func() error, o *outcome) error {
	head := fmt.Sprintf(`data: {"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s,"system_fingerprint":null,"choices":`,
		jsonString(o.id), o.created, jsonString(o.model))
	// With include_usage every chunk but the last carries "usage":null.
	usageNull := ""
	if o.includeUsage {
		usageNull = `,"usage":null`
	}
	chunk := func(delta func(), finish string) error {
		_, _ = w.WriteString(head)
		_, _ = w.WriteString(`[{"index":0,"delta":`)
		delta()
		_, _ = w.WriteString(`,"logprobs":null,"finish_reason":`)
		if finish == "" {
			_, _ = w.WriteString("null")
		} else {
			_, _ = w.WriteString(jsonString(finish))
		}
		_, _ = w.WriteString("}]" + usageNull + "}\n\n")
		return flush()
	}
	deltaJSON := func(v any) func() { return func() { _, _ = w.Write(mustJSON(v)) } }

	// The first delta names the role; its content is null when the reply
	// is tool calls only, as the API sends it.
	first := struct {
		Role    string  `json:"role"`
		Content *string `json:"content"`
		Refusal *string `json:"refusal"`
	}{Role: "assistant"}
	if empty := ""; o.text.Len() > 0 || len(o.calls) == 0 {
		first.Content = &empty
	}
	if err := chunk(deltaJSON(first), ""); err != nil {
		return err
	}
	for f := range o.text.fragments() {
		err := chunk(func() {
			_, _ = w.WriteString(`{"content":`)
			writeQuoted(w, f)
			_ = w.WriteByte('}')
		}, "")
		if err != nil {
			return err
		}
	}
	for i, c := range o.calls {
		call := openAIToolCall{Index: &i, ID: c.ID, Type: "function"}
		call.Function.Name = c.Name
		if err := chunk(deltaJSON(map[string]any{"tool_calls": []openAIToolCall{call}}), ""); err != nil {
			return err
		}
		for p := range pieces(string(c.Arguments), textEventBytes) {
			part := openAIToolCall{Index: &i}
			part.Function.Arguments = p
			if err := chunk(deltaJSON(map[string]any{"tool_calls": []openAIToolCall{part}}), ""); err != nil {
				return err
			}
		}
	}
	if err := chunk(deltaJSON(struct{}{}), o.stop); err != nil {
		return err
	}
	if o.includeUsage {
		_, _ = w.WriteString(head)
		_, _ = w.WriteString(`[],"usage":`)
		_, _ = w.Write(mustJSON(o.openAIUsage()))
		_, _ = w.WriteString("}\n\n")
	}
	_, _ = w.WriteString("data: [DONE]\n\n")
	return flush()
}

package modelserver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// anthropicRequest is the part of a Messages request the stand-in reads;
// other fields (temperature, metadata, thinking...) are accepted and
// ignored.
type anthropicRequest struct {
	Model     string          `json:"model"`
	MaxTokens *int64          `json:"max_tokens"`
	System    json.RawMessage `json:"system"`
	Messages  []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Tools []struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		InputSchema json.RawMessage `json:"input_schema"`
	} `json:"tools"`
	ToolChoice *struct {
		Type string `json:"type"`
		Name string `json:"name"`
	} `json:"tool_choice"`
	// OutputConfig.Format is Anthropic's structured output, an
	// alternative to forcing AnswerTool.
	OutputConfig *struct {
		Format *struct {
			Type   string          `json:"type"`
			Schema json.RawMessage `json:"schema"`
		} `json:"format"`
	} `json:"output_config"`
	Stream bool `json:"stream"`
}

// anthropicBlock is any content block; the fields of each type are
// disjoint.
type anthropicBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
}

// parseAnthropic checks a Messages request as the API does and normalises
// it.
func parseAnthropic(body []byte) (*Turn, error) {
	var req anthropicRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, badRequest("", "The request body is not valid JSON: %v", err)
	}
	t := &Turn{API: APIAnthropic, Model: req.Model, Stream: req.Stream, Number: 1}
	switch {
	case req.Model == "":
		return t, badRequest("", "model: Field required")
	case req.MaxTokens == nil:
		return t, badRequest("", "max_tokens: Field required")
	case *req.MaxTokens < 1:
		return t, badRequest("", "max_tokens: Input should be greater than or equal to 1")
	case len(req.Messages) == 0:
		return t, badRequest("", "messages: at least one message is required")
	}
	t.MaxTokens = *req.MaxTokens
	system, err := anthropicBlocks(req.System)
	if err != nil {
		return t, badRequest("", "system: %v", err)
	}
	t.System = blocksText(system)
	for i, m := range req.Messages {
		blocks, err := anthropicBlocks(m.Content)
		if err != nil {
			return t, badRequest("", "messages.%d.content: %v", i, err)
		}
		switch m.Role {
		case "user":
			// Tool results come first in a user message; each is a tool
			// message of its own, and the text after them one user message.
			for j, b := range blocks {
				if b.Type != "tool_result" {
					continue
				}
				if b.ToolUseID == "" {
					return t, badRequest("", "messages.%d.content.%d.tool_result.tool_use_id: Field required", i, j)
				}
				inner, err := anthropicBlocks(b.Content)
				if err != nil {
					return t, badRequest("", "messages.%d.content.%d.tool_result.content: %v", i, j, err)
				}
				t.Messages = append(t.Messages, Message{Role: "tool", Text: blocksText(inner), ToolCallID: b.ToolUseID, IsError: b.IsError})
			}
			if text := blocksText(blocks); text != "" || !hasBlock(blocks, "tool_result") {
				t.Messages = append(t.Messages, Message{Role: "user", Text: text})
			}
		case "assistant":
			msg := Message{Role: "assistant", Text: blocksText(blocks)}
			for _, b := range blocks {
				if b.Type == "tool_use" {
					msg.ToolCalls = append(msg.ToolCalls, ToolCall{ID: b.ID, Name: b.Name, Arguments: b.Input})
				}
			}
			t.Messages = append(t.Messages, msg)
			t.Number++
		default:
			return t, badRequest("", "messages.%d.role: Input should be 'user' or 'assistant'", i)
		}
	}
	for i, tool := range req.Tools {
		if tool.Name == "" {
			return t, badRequest("", "tools.%d.name: Field required", i)
		}
		t.Tools = append(t.Tools, Tool{Name: tool.Name, Description: tool.Description, Schema: tool.InputSchema})
		if tool.Name == AnswerTool {
			t.Schema = tool.InputSchema
		}
	}
	if oc := req.OutputConfig; oc != nil && oc.Format != nil {
		if oc.Format.Type != "json_schema" {
			return t, badRequest("", "output_config.format.type: Input should be 'json_schema'")
		}
		t.Format, t.Schema = oc.Format.Type, oc.Format.Schema
	}
	if tc := req.ToolChoice; tc != nil {
		switch tc.Type {
		case "auto", "any", "none":
			t.ToolChoice = tc.Type
		case "tool":
			if tc.Name == "" {
				return t, badRequest("", "tool_choice.tool.name: Field required")
			}
			t.ToolChoice = tc.Name
		default:
			return t, badRequest("", "tool_choice: Input tag '%s' found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'", tc.Type)
		}
	}
	return t, nil
}

// anthropicBlocks reads content that is either a string (one text block)
// or an array of blocks.
func anthropicBlocks(raw json.RawMessage) ([]anthropicBlock, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []anthropicBlock{{Type: "text", Text: s}}, nil
	}
	var blocks []anthropicBlock
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return nil, fmt.Errorf("Input should be a valid string or a list of content blocks")
	}
	return blocks, nil
}

func blocksText(blocks []anthropicBlock) string {
	var texts []string
	for _, b := range blocks {
		if b.Type == "text" {
			texts = append(texts, b.Text)
		}
	}
	return strings.Join(texts, "\n")
}

func hasBlock(blocks []anthropicBlock, typ string) bool {
	for _, b := range blocks {
		if b.Type == typ {
			return true
		}
	}
	return false
}

type anthropicUsage struct {
	InputTokens              int64  `json:"input_tokens"`
	CacheCreationInputTokens int64  `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64  `json:"cache_read_input_tokens"`
	OutputTokens             int64  `json:"output_tokens"`
	ServiceTier              string `json:"service_tier"`
}

func (o *outcome) anthropicUsage(output int64) anthropicUsage {
	return anthropicUsage{InputTokens: o.inputTokens, OutputTokens: output, ServiceTier: "standard"}
}

// anthropicEvent is any streamed event; each type uses some of the fields.
type anthropicEvent struct {
	Type         string `json:"type"`
	Index        *int   `json:"index,omitempty"`
	Message      any    `json:"message,omitempty"`
	ContentBlock any    `json:"content_block,omitempty"`
	Delta        any    `json:"delta,omitempty"`
	Usage        any    `json:"usage,omitempty"`
}

type anthropicToolUse struct {
	Type  string          `json:"type"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

func toolUseBlock(c ToolCall, input json.RawMessage) []byte {
	return mustJSON(anthropicToolUse{Type: "tool_use", ID: c.ID, Name: c.Name, Input: input})
}

// writeAnthropic writes a message object, its text block written in place
// so that padding is never held in memory.
func writeAnthropic(w *bufio.Writer, o *outcome) error {
	fmt.Fprintf(w, `{"id":%s,"type":"message","role":"assistant","model":%s,"content":[`, jsonString(o.id), jsonString(o.model))
	sep := ""
	if o.text.Len() > 0 {
		_, _ = w.WriteString(`{"type":"text","text":`)
		if err := o.text.writeJSON(w); err != nil {
			return err
		}
		_ = w.WriteByte('}')
		sep = ","
	}
	for _, c := range o.calls {
		_, _ = w.WriteString(sep)
		_, _ = w.Write(toolUseBlock(c, c.Arguments))
		sep = ","
	}
	fmt.Fprintf(w, `],"stop_reason":%s,"stop_sequence":null,"usage":%s}`,
		jsonString(o.stop), mustJSON(o.anthropicUsage(o.outputTokens)))
	return w.Flush()
}

// streamAnthropic writes the reply as Messages events: message_start, each
// content block's start, deltas and stop (a ping after the first start),
// message_delta with the stop reason and usage, and message_stop.
func streamAnthropic(w *bufio.Writer, flush func() error, o *outcome) error {
	event := func(name string, data func()) error {
		_, _ = w.WriteString("event: " + name + "\ndata: ")
		data()
		_, _ = w.WriteString("\n\n")
		return flush()
	}
	send := func(e anthropicEvent) error {
		return event(e.Type, func() { _, _ = w.Write(mustJSON(e)) })
	}
	pinged := false
	ping := func() error {
		if pinged {
			return nil
		}
		pinged = true
		return send(anthropicEvent{Type: "ping"})
	}
	start := struct {
		ID           string         `json:"id"`
		Type         string         `json:"type"`
		Role         string         `json:"role"`
		Model        string         `json:"model"`
		Content      []any          `json:"content"`
		StopReason   *string        `json:"stop_reason"`
		StopSequence *string        `json:"stop_sequence"`
		Usage        anthropicUsage `json:"usage"`
	}{ID: o.id, Type: "message", Role: "assistant", Model: o.model, Content: []any{}, Usage: o.anthropicUsage(1)}
	if err := send(anthropicEvent{Type: "message_start", Message: start}); err != nil {
		return err
	}
	// block sends one content block: its start, a ping after the first
	// start, its deltas and its stop.
	index := 0
	block := func(content any, deltas func(index int) error) error {
		if err := send(anthropicEvent{Type: "content_block_start", Index: &index, ContentBlock: content}); err != nil {
			return err
		}
		if err := ping(); err != nil {
			return err
		}
		if err := deltas(index); err != nil {
			return err
		}
		err := send(anthropicEvent{Type: "content_block_stop", Index: &index})
		index++
		return err
	}
	if o.text.Len() > 0 {
		err := block(map[string]string{"type": "text", "text": ""}, func(index int) error {
			prefix := fmt.Sprintf(`{"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":`, index)
			for f := range o.text.fragments() {
				err := event("content_block_delta", func() {
					_, _ = w.WriteString(prefix)
					writeQuoted(w, f)
					_, _ = w.WriteString("}}")
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, c := range o.calls {
		err := block(json.RawMessage(toolUseBlock(c, json.RawMessage("{}"))), func(index int) error {
			for p := range pieces(string(c.Arguments), textEventBytes) {
				delta := map[string]string{"type": "input_json_delta", "partial_json": p}
				if err := send(anthropicEvent{Type: "content_block_delta", Index: &index, Delta: delta}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := ping(); err != nil {
		return err
	}
	err := send(anthropicEvent{
		Type: "message_delta",
		Delta: struct {
			StopReason   string  `json:"stop_reason"`
			StopSequence *string `json:"stop_sequence"`
		}{StopReason: o.stop},
		Usage: map[string]int64{"output_tokens": o.outputTokens},
	})
	if err != nil {
		return err
	}
	return send(anthropicEvent{Type: "message_stop"})
}

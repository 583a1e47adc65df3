package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// The two wire formats the agent speaks, as profiles name them.
const (
	apiOpenAI    = "openai"
	apiAnthropic = "anthropic"
	// anthropicVersion is the Messages API version the agent's requests
	// are written for; the proxy may fix another.
	anthropicVersion = "2023-06-01"
	// answerTool is the tool through which an Anthropic model gives its
	// structured answer: its input schema is the result schema.
	answerTool = "respond"
	// maxEventLine bounds one line of a server-sent event stream.
	maxEventLine = 1 << 20
)

// modelTimeout bounds one model request, reply included. A variable so
// tests can shorten it.
var modelTimeout = 2 * time.Minute

// ErrModel is returned, wrapped, when the model cannot be used: its
// service refused or failed, or its reply was malformed or too large.
var ErrModel = errors.New("model failed")

// turn is one message of the conversation, in neither API's form.
type turn struct {
	// role is system, user, assistant or tool.
	role string
	text string
	// calls are an assistant's tool calls.
	calls []toolCall
	// callID is the call a tool message answers; isError marks a failed
	// one (Anthropic's is_error).
	callID  string
	isError bool
}

// toolCall is one call the model made.
type toolCall struct {
	id, name string
	args     json.RawMessage
}

// toolSpec is a tool offered to the model.
type toolSpec struct {
	name, description string
	schema            json.RawMessage
}

// reply is what one model request returned.
type reply struct {
	text  string
	calls []toolCall
}

// modelClient talks to one model through the egress proxy.
type modelClient struct {
	m      Model
	schema json.RawMessage
	strict bool
	http   *http.Client
}

// request is one model request: the conversation so far and the tools.
func (c *modelClient) request(ctx context.Context, conv []turn, tools []toolSpec) (reply, error) {
	body, path, err := c.encode(conv, tools)
	if err != nil {
		return reply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, modelTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.m.URL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return reply{}, fmt.Errorf("%w: %v", ErrModel, err)
	}
	// No credential: the egress proxy adds it outside the sandbox.
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "airlock-agent")
	if c.m.API == apiAnthropic {
		req.Header.Set("anthropic-version", anthropicVersion)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%w: %v", ErrModel, err)
	}
	defer resp.Body.Close()
	if resp.Header.Get(egressHeader) != "" {
		return reply{}, fmt.Errorf("%w: %w", ErrModel, proxyRefusal(resp))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Go's status text, not the service's body: nothing of the reply
		// reaches stderr.
		return reply{}, fmt.Errorf("%w: the model service answered %d %s", ErrModel, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	limited := &capReader{r: resp.Body, left: c.m.MaxReplyBytes}
	var r reply
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		r, err = c.decodeStream(limited)
	} else {
		var data []byte
		if data, err = io.ReadAll(limited); err == nil {
			r, err = c.decode(data)
		}
	}
	if errors.Is(err, errReplyTooLarge) || limited.over {
		return reply{}, fmt.Errorf("%w: the reply is over %d bytes (model.maxReplyBytes)", ErrModel, c.m.MaxReplyBytes)
	}
	if err != nil {
		return reply{}, fmt.Errorf("%w: %v", ErrModel, err)
	}
	if r.text == "" && len(r.calls) == 0 {
		return reply{}, fmt.Errorf("%w: the reply has neither text nor tool calls", ErrModel)
	}
	return r, nil
}

// errReplyTooLarge ends a read past MaxReplyBytes.
var errReplyTooLarge = errors.New("reply too large")

// capReader fails once more than left bytes were read.
type capReader struct {
	r    io.Reader
	left int64
	over bool
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		var one [1]byte
		if n, _ := c.r.Read(one[:]); n > 0 {
			c.over = true
			return 0, errReplyTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// encode writes the request in the API's form.
func (c *modelClient) encode(conv []turn, tools []toolSpec) ([]byte, string, error) {
	if c.m.API == apiAnthropic {
		b, err := json.Marshal(c.anthropicRequest(conv, tools))
		return b, "/v1/messages", err
	}
	b, err := json.Marshal(c.openAIRequest(conv, tools))
	return b, "/v1/chat/completions", err
}

type oaMessage struct {
	Role       string       `json:"role"`
	Content    *string      `json:"content"`
	ToolCalls  []oaToolCall `json:"tool_calls,omitempty"`
	ToolCallID string       `json:"tool_call_id,omitempty"`
}

type oaToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

func (c *modelClient) openAIRequest(conv []turn, tools []toolSpec) map[string]any {
	msgs := make([]oaMessage, 0, len(conv))
	for _, t := range conv {
		text := t.text
		m := oaMessage{Role: t.role, Content: &text, ToolCallID: t.callID}
		for _, call := range t.calls {
			tc := oaToolCall{ID: call.id, Type: "function"}
			tc.Function.Name, tc.Function.Arguments = call.name, string(call.args)
			m.ToolCalls = append(m.ToolCalls, tc)
		}
		if t.role == "assistant" && text == "" && len(m.ToolCalls) > 0 {
			m.Content = nil
		}
		msgs = append(msgs, m)
	}
	req := map[string]any{
		"model":      c.m.Name,
		"messages":   msgs,
		"max_tokens": c.m.MaxOutputTokens,
		"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{
			"name": "result", "schema": c.schema, "strict": c.strict,
		}},
	}
	if len(tools) > 0 {
		var ts []map[string]any
		for _, t := range tools {
			ts = append(ts, map[string]any{"type": "function", "function": map[string]any{
				"name": t.name, "description": t.description, "parameters": t.schema,
			}})
		}
		req["tools"] = ts
	}
	if c.m.Stream {
		req["stream"] = true
		req["stream_options"] = map[string]any{"include_usage": true}
	}
	return req
}

func (c *modelClient) anthropicRequest(conv []turn, tools []toolSpec) map[string]any {
	var system string
	var msgs []map[string]any
	for _, t := range conv {
		switch t.role {
		case "system":
			system = t.text
		case "tool":
			msgs = append(msgs, map[string]any{"role": "user", "content": []map[string]any{{
				"type": "tool_result", "tool_use_id": t.callID, "content": t.text, "is_error": t.isError,
			}}})
		case "assistant":
			var blocks []map[string]any
			if t.text != "" {
				blocks = append(blocks, map[string]any{"type": "text", "text": t.text})
			}
			for _, call := range t.calls {
				blocks = append(blocks, map[string]any{"type": "tool_use", "id": call.id, "name": call.name, "input": call.args})
			}
			msgs = append(msgs, map[string]any{"role": "assistant", "content": blocks})
		default:
			msgs = append(msgs, map[string]any{"role": "user", "content": t.text})
		}
	}
	ts := []map[string]any{}
	for _, t := range tools {
		ts = append(ts, map[string]any{"name": t.name, "description": t.description, "input_schema": t.schema})
	}
	ts = append(ts, map[string]any{
		"name": answerTool, "description": "Give the final answer, which must fit this schema. Call it once, when done.",
		"input_schema": c.schema,
	})
	req := map[string]any{
		"model": c.m.Name, "max_tokens": c.m.MaxOutputTokens, "system": system, "messages": msgs,
		"tools": ts, "tool_choice": map[string]any{"type": "any"},
	}
	if c.m.Stream {
		req["stream"] = true
	}
	return req
}

// decode reads a whole (non-streamed) reply.
func (c *modelClient) decode(data []byte) (reply, error) {
	if c.m.API == apiAnthropic {
		var m struct {
			Type    string `json:"type"`
			Content []struct {
				Type  string          `json:"type"`
				Text  string          `json:"text"`
				ID    string          `json:"id"`
				Name  string          `json:"name"`
				Input json.RawMessage `json:"input"`
			} `json:"content"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return reply{}, errors.New("the reply is not a Messages JSON object")
		}
		if m.Type == "error" {
			return reply{}, errors.New("the reply is an error")
		}
		var r reply
		for _, b := range m.Content {
			switch b.Type {
			case "text":
				r.text += b.Text
			case "tool_use":
				r.calls = append(r.calls, toolCall{id: b.ID, name: b.Name, args: b.Input})
			}
		}
		return r, nil
	}
	var m struct {
		Choices []struct {
			Message struct {
				Content   *string      `json:"content"`
				ToolCalls []oaToolCall `json:"tool_calls"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return reply{}, errors.New("the reply is not a Chat Completions JSON object")
	}
	if len(m.Choices) == 0 {
		return reply{}, errors.New("the reply has no choices")
	}
	var r reply
	msg := m.Choices[0].Message
	if msg.Content != nil {
		r.text = *msg.Content
	}
	for _, tc := range msg.ToolCalls {
		r.calls = append(r.calls, toolCall{id: tc.ID, name: tc.Function.Name, args: json.RawMessage(tc.Function.Arguments)})
	}
	return r, nil
}

// decodeStream assembles a streamed reply from its server-sent events.
func (c *modelClient) decodeStream(r io.Reader) (reply, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out reply
	// Calls are assembled by index: OpenAI's tool_calls[].index and
	// Anthropic's content block index.
	type partial struct {
		id, name string
		args     strings.Builder
	}
	calls := map[int]*partial{}
	var order []int
	call := func(i int) *partial {
		p, ok := calls[i]
		if !ok {
			if len(calls) >= maxModelCalls {
				return nil
			}
			p = &partial{}
			calls[i] = p
			order = append(order, i)
		}
		return p
	}
	done := false
	for !done {
		line, err := readLine(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return reply{}, err
		}
		data, ok := strings.CutPrefix(line, "data:")
		if !ok {
			continue
		}
		data = strings.TrimSpace(data)
		if data == "[DONE]" {
			break
		}
		if c.m.API == apiAnthropic {
			var ev struct {
				Type         string `json:"type"`
				Index        int    `json:"index"`
				ContentBlock struct {
					Type string `json:"type"`
					ID   string `json:"id"`
					Name string `json:"name"`
					Text string `json:"text"`
				} `json:"content_block"`
				Delta struct {
					Type        string `json:"type"`
					Text        string `json:"text"`
					PartialJSON string `json:"partial_json"`
				} `json:"delta"`
			}
			if json.Unmarshal([]byte(data), &ev) != nil {
				return reply{}, errors.New("an event is not JSON")
			}
			switch ev.Type {
			case "error":
				return reply{}, errors.New("the stream carries an error")
			case "content_block_start":
				if ev.ContentBlock.Type == "tool_use" {
					if p := call(ev.Index); p != nil {
						p.id, p.name = ev.ContentBlock.ID, ev.ContentBlock.Name
					}
				}
				out.text += ev.ContentBlock.Text
			case "content_block_delta":
				switch ev.Delta.Type {
				case "text_delta":
					out.text += ev.Delta.Text
				case "input_json_delta":
					if p := call(ev.Index); p != nil {
						p.args.WriteString(ev.Delta.PartialJSON)
					}
				}
			case "message_stop":
				done = true
			}
			continue
		}
		var ch struct {
			Choices []struct {
				Delta struct {
					Content   string `json:"content"`
					ToolCalls []struct {
						Index    int    `json:"index"`
						ID       string `json:"id"`
						Function struct {
							Name      string `json:"name"`
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
			Error json.RawMessage `json:"error"`
		}
		if json.Unmarshal([]byte(data), &ch) != nil {
			return reply{}, errors.New("a chunk is not JSON")
		}
		if len(ch.Error) > 0 && string(ch.Error) != "null" {
			return reply{}, errors.New("the stream carries an error")
		}
		for _, choice := range ch.Choices {
			out.text += choice.Delta.Content
			for _, tc := range choice.Delta.ToolCalls {
				p := call(tc.Index)
				if p == nil {
					continue
				}
				if tc.ID != "" {
					p.id = tc.ID
				}
				if tc.Function.Name != "" {
					p.name = tc.Function.Name
				}
				p.args.WriteString(tc.Function.Arguments)
			}
		}
	}
	for _, i := range order {
		p := calls[i]
		args := p.args.String()
		if args == "" {
			args = "{}"
		}
		out.calls = append(out.calls, toolCall{id: p.id, name: p.name, args: json.RawMessage(args)})
	}
	return out, nil
}

// maxModelCalls bounds the tool calls read from one reply; more are
// dropped, and the loop's own limit ends the job before they matter.
const maxModelCalls = 64

// readLine reads one line of at most maxEventLine bytes, without its end.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(b)+len(chunk) > maxEventLine {
			return "", fmt.Errorf("an event line is over %d bytes", maxEventLine)
		}
		b = append(b, chunk...)
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(b) > 0:
			return strings.TrimRight(string(b), "\r\n"), nil
		case err != nil:
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
}

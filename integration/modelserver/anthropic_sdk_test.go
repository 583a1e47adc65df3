package modelserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/airlock/airlock/integration/modelserver"
)

func anthropicClient(srv *modelserver.Server, hc *http.Client, key string) anthropic.Client {
	return anthropic.NewClient(
		option.WithBaseURL(srv.URL()),
		option.WithHTTPClient(hc),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
	)
}

func userHi() []anthropic.MessageParam {
	return []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}
}

func TestAnthropicSDK_Text(t *testing.T) {
	srv, hc := startTLS(t, sdkScripts())
	client := anthropicClient(srv, hc, testKey)
	got, err := client.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model: "text", MaxTokens: 1024, Messages: userHi(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Content) != 1 || got.Content[0].Type != "text" || got.Content[0].Text != replyText {
		t.Fatalf("content = %+v", got.Content)
	}
	if got.StopReason != anthropic.StopReasonEndTurn || got.Model != "text" || got.ID == "" || string(got.Role) != "assistant" {
		t.Errorf("stop %q model %q id %q role %q", got.StopReason, got.Model, got.ID, got.Role)
	}
	if got.Usage.InputTokens != 42 || got.Usage.OutputTokens != 17 {
		t.Errorf("usage = %d in, %d out; want 42, 17", got.Usage.InputTokens, got.Usage.OutputTokens)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || reqs[0].API != modelserver.APIAnthropic || reqs[0].Header.Get("anthropic-version") == "" {
		t.Errorf("recorded %+v", reqs)
	}
}

// accumulate reads a stream to its end as the SDK's own accumulator does,
// and counts the text deltas.
func accumulate(t *testing.T, client anthropic.Client, params anthropic.MessageNewParams) (anthropic.Message, int) {
	t.Helper()
	stream := client.Messages.NewStreaming(context.Background(), params)
	defer stream.Close()
	var msg anthropic.Message
	textDeltas := 0
	for stream.Next() {
		ev := stream.Current()
		if err := msg.Accumulate(ev); err != nil {
			t.Fatalf("accumulating %s: %v", ev.RawJSON(), err)
		}
		if ev.Type == "content_block_delta" && ev.Delta.Type == "text_delta" {
			textDeltas++
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	return msg, textDeltas
}

func TestAnthropicSDK_StreamText(t *testing.T) {
	srv, hc := startTLS(t, sdkScripts())
	msg, deltas := accumulate(t, anthropicClient(srv, hc, testKey), anthropic.MessageNewParams{
		Model: "text", MaxTokens: 1024, Messages: userHi(),
	})
	if deltas < 2 {
		t.Errorf("text came in %d deltas, want several", deltas)
	}
	if len(msg.Content) != 1 || msg.Content[0].Text != replyText || msg.StopReason != anthropic.StopReasonEndTurn {
		t.Fatalf("accumulated %+v, stop %q", msg.Content, msg.StopReason)
	}
	if msg.Usage.InputTokens != 42 || msg.Usage.OutputTokens != 17 {
		t.Errorf("usage = %d in, %d out; want 42, 17", msg.Usage.InputTokens, msg.Usage.OutputTokens)
	}
	if reqs := srv.Requests(); len(reqs) != 1 || !reqs[0].Stream {
		t.Errorf("recorded %+v", reqs)
	}
}

func TestAnthropicSDK_ToolUse(t *testing.T) {
	srv, hc := startTLS(t, sdkScripts())
	client := anthropicClient(srv, hc, testKey)
	params := anthropic.MessageNewParams{
		Model: "tool", MaxTokens: 1024, Messages: userHi(),
		Tools: []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{
			Name:        "lookup",
			InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"query": map[string]any{"type": "string"}}},
		}}},
	}
	check := func(how string, msg *anthropic.Message) {
		t.Helper()
		if msg.StopReason != anthropic.StopReasonToolUse || len(msg.Content) != 2 {
			t.Fatalf("%s: stop %q, content %+v", how, msg.StopReason, msg.Content)
		}
		if msg.Content[0].Type != "text" || msg.Content[0].Text != "Let me look." {
			t.Errorf("%s: first block %+v", how, msg.Content[0])
		}
		use := msg.Content[1].AsToolUse()
		if use.Name != "lookup" || use.ID == "" || msg.Content[1].Type != "tool_use" {
			t.Errorf("%s: tool use %+v", how, use)
		}
		if input := asMap(t, use.Input); !reflect.DeepEqual(input, lookupArgs) {
			t.Errorf("%s: input = %v, want %v", how, input, lookupArgs)
		}
	}
	got, err := client.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	check("reply", got)
	streamed, _ := accumulate(t, client, params)
	check("stream", &streamed)
}

func TestAnthropicSDK_WrongKeyIs401(t *testing.T) {
	srv, hc := startTLS(t, sdkScripts())
	client := anthropicClient(srv, hc, "sk-wrong")
	_, err := client.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model: "text", MaxTokens: 1024, Messages: userHi(),
	})
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want *anthropic.Error", err)
	}
	if apiErr.StatusCode != http.StatusUnauthorized || apiErr.RequestID == "" {
		t.Errorf("status %d, request id %q", apiErr.StatusCode, apiErr.RequestID)
	}
	var body struct {
		Type  string `json:"type"`
		Error struct {
			Type string `json:"type"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(apiErr.RawJSON()), &body); err != nil || body.Type != "error" || body.Error.Type != "authentication_error" {
		t.Errorf("body %s (%v)", apiErr.RawJSON(), err)
	}
}

func TestAnthropicSDK_StructuredAnswerThroughRespondTool(t *testing.T) {
	const schema = `{
		"type": "object",
		"properties": {
			"summary": {"type": "string", "maxLength": 40},
			"tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}, "minItems": 2, "uniqueItems": true},
			"count": {"type": "integer", "exclusiveMinimum": 5}
		},
		"required": ["summary", "tags", "count"]
	}`
	var props map[string]any
	if err := json.Unmarshal([]byte(schema), &props); err != nil {
		t.Fatal(err)
	}
	srv, hc := startTLS(t, sdkScripts())
	params := anthropic.MessageNewParams{
		Model: "answer", MaxTokens: 1024,
		System:   []anthropic.TextBlockParam{{Text: "answer with the respond tool"}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("cats and their habits"))},
		Tools: []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{
			Name:        modelserver.AnswerTool,
			InputSchema: anthropic.ToolInputSchemaParam{Properties: props["properties"], Required: []string{"summary", "tags", "count"}},
		}}},
		ToolChoice: anthropic.ToolChoiceParamOfTool(modelserver.AnswerTool),
	}
	client := anthropicClient(srv, hc, testKey)
	got, err := client.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	streamed, _ := accumulate(t, client, params)
	compiled := compileSchema(t, schema)
	for how, msg := range map[string]*anthropic.Message{"reply": got, "stream": &streamed} {
		if len(msg.Content) != 1 || msg.StopReason != anthropic.StopReasonToolUse {
			t.Fatalf("%s: content %+v, stop %q", how, msg.Content, msg.StopReason)
		}
		use := msg.Content[0].AsToolUse()
		if use.Name != modelserver.AnswerTool {
			t.Errorf("%s: answered through %q", how, use.Name)
		}
		validateJSON(t, compiled, use.Input)
	}
}

// TestAnthropicSDK_TurnIsNormalised sends a whole agent conversation
// through the SDK and checks what the script is given.
func TestAnthropicSDK_TurnIsNormalised(t *testing.T) {
	rec := &turnRecorder{reply: func(*modelserver.Turn) modelserver.Reply { return modelserver.Reply{Text: "done"} }}
	srv, hc := startTLS(t, map[string]modelserver.Script{"rec": rec.script})
	client := anthropicClient(srv, hc, testKey)
	_, err := client.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model: "rec", MaxTokens: 333,
		System: []anthropic.TextBlockParam{{Text: "one"}, {Text: "two"}},
		Messages: []anthropic.MessageParam{
			anthropic.NewUserMessage(anthropic.NewTextBlock("part one"), anthropic.NewTextBlock("part two")),
			anthropic.NewAssistantMessage(anthropic.NewTextBlock("reading"), anthropic.NewToolUseBlock("toolu_1", map[string]string{"path": "/input/content/0"}, "read")),
			anthropic.NewUserMessage(anthropic.NewToolResultBlock("toolu_1", "no such file", true), anthropic.NewTextBlock("go on")),
		},
		Tools: []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{
			Name: "read", Description: anthropic.String("reads a file"), InputSchema: anthropic.ToolInputSchemaParam{},
		}}},
		ToolChoice: anthropic.ToolChoiceUnionParam{OfAny: &anthropic.ToolChoiceAnyParam{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	turn := rec.turn()
	want := []modelserver.Message{
		{Role: "user", Text: "part one\npart two"},
		{Role: "assistant", Text: "reading", ToolCalls: []modelserver.ToolCall{{ID: "toolu_1", Name: "read", Arguments: json.RawMessage(`{"path":"/input/content/0"}`)}}},
		{Role: "tool", Text: "no such file", ToolCallID: "toolu_1", IsError: true},
		{Role: "user", Text: "go on"},
	}
	if !reflect.DeepEqual(turn.Messages, want) {
		t.Errorf("messages =\n%+v\nwant\n%+v", turn.Messages, want)
	}
	if turn.API != modelserver.APIAnthropic || turn.Number != 2 || turn.System != "one\ntwo" ||
		turn.ToolChoice != "any" || turn.MaxTokens != 333 || len(turn.Tools) != 1 || turn.Tools[0].Description != "reads a file" {
		t.Errorf("turn = %+v", turn)
	}
}

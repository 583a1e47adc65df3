package modelserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/airlock/airlock/integration/modelserver"
)

func openAIClient(srv *modelserver.Server, hc *http.Client, key string) openai.Client {
	return openai.NewClient(
		option.WithBaseURL(srv.URL()+"/v1"),
		option.WithHTTPClient(hc),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
	)
}

func TestOpenAISDK_Text(t *testing.T) {
	srv, hc := startTLS(t, sdkScripts())
	client := openAIClient(srv, hc, testKey)
	got, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "text",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Choices) != 1 {
		t.Fatalf("choices = %d, want 1", len(got.Choices))
	}
	c := got.Choices[0]
	if c.Message.Content != replyText || c.FinishReason != "stop" || string(c.Message.Role) != "assistant" {
		t.Errorf("message = %q, finish %q, role %q", c.Message.Content, c.FinishReason, c.Message.Role)
	}
	if got.Object != "chat.completion" || got.Model != "text" || got.ID == "" || got.Created == 0 {
		t.Errorf("object %q model %q id %q created %d", got.Object, got.Model, got.ID, got.Created)
	}
	if u := got.Usage; u.PromptTokens != 42 || u.CompletionTokens != 17 || u.TotalTokens != 59 {
		t.Errorf("usage = %+v, want 42+17=59", u)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || reqs[0].API != modelserver.APIOpenAI || reqs[0].Model != "text" || reqs[0].Stream {
		t.Errorf("recorded %+v", reqs)
	}
}

func TestOpenAISDK_StreamText(t *testing.T) {
	srv, hc := startTLS(t, sdkScripts())
	client := openAIClient(srv, hc, testKey)
	stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:         "text",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	defer stream.Close()
	var acc openai.ChatCompletionAccumulator
	deltas := 0
	for stream.Next() {
		chunk := stream.Current()
		if !acc.AddChunk(chunk) {
			t.Fatalf("the accumulator refused chunk %s", chunk.RawJSON())
		}
		if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
			deltas++
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if deltas < 2 {
		t.Errorf("text came in %d deltas, want several", deltas)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != replyText || acc.Choices[0].FinishReason != "stop" {
		t.Fatalf("accumulated %+v", acc.Choices)
	}
	if u := acc.Usage; u.PromptTokens != 42 || u.CompletionTokens != 17 || u.TotalTokens != 59 {
		t.Errorf("usage = %+v, want 42+17=59", u)
	}
	if reqs := srv.Requests(); len(reqs) != 1 || !reqs[0].Stream {
		t.Errorf("recorded %+v", reqs)
	}
}

func TestOpenAISDK_ToolCall(t *testing.T) {
	srv, hc := startTLS(t, sdkScripts())
	client := openAIClient(srv, hc, testKey)
	params := openai.ChatCompletionNewParams{
		Model:    "tool",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("look it up")},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name:       "lookup",
			Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"query": map[string]any{"type": "string"}}},
		})},
	}

	got, err := client.Chat.Completions.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	c := got.Choices[0]
	if c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 || c.Message.Content != "Let me look." {
		t.Fatalf("finish %q, tool calls %+v", c.FinishReason, c.Message.ToolCalls)
	}
	call := c.Message.ToolCalls[0]
	if call.Type != "function" || call.Function.Name != "lookup" || call.ID == "" {
		t.Errorf("call = %+v", call)
	}
	if args := asMap(t, []byte(call.Function.Arguments)); !reflect.DeepEqual(args, lookupArgs) {
		t.Errorf("arguments = %v, want %v", args, lookupArgs)
	}

	stream := client.Chat.Completions.NewStreaming(context.Background(), params)
	defer stream.Close()
	var acc openai.ChatCompletionAccumulator
	var finished []openai.FinishedChatCompletionToolCall
	usageChunks := 0
	for stream.Next() {
		chunk := stream.Current()
		acc.AddChunk(chunk)
		if tc, ok := acc.JustFinishedToolCall(); ok {
			finished = append(finished, tc)
		}
		if len(chunk.Choices) == 0 {
			usageChunks++
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(finished) != 1 || finished[0].Name != "lookup" || finished[0].ID == "" {
		t.Fatalf("finished tool calls %+v", finished)
	}
	if args := asMap(t, []byte(finished[0].Arguments)); !reflect.DeepEqual(args, lookupArgs) {
		t.Errorf("streamed arguments = %v, want %v", args, lookupArgs)
	}
	if acc.Choices[0].FinishReason != "tool_calls" {
		t.Errorf("streamed finish %q", acc.Choices[0].FinishReason)
	}
	if usageChunks != 0 {
		t.Errorf("%d usage chunks without stream_options.include_usage", usageChunks)
	}
}

func TestOpenAISDK_WrongKeyIs401(t *testing.T) {
	srv, hc := startTLS(t, sdkScripts())
	for name, key := range map[string]string{"wrong": "sk-wrong", "missing": ""} {
		t.Run(name, func(t *testing.T) {
			client := openAIClient(srv, hc, key)
			_, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model:    "text",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			})
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v, want *openai.Error", err)
			}
			if apiErr.StatusCode != http.StatusUnauthorized || apiErr.Type != "invalid_request_error" || apiErr.Code != "invalid_api_key" {
				t.Errorf("status %d type %q code %q", apiErr.StatusCode, apiErr.Type, apiErr.Code)
			}
		})
	}
}

func TestOpenAISDK_UnknownModelIs404(t *testing.T) {
	srv, hc := startTLS(t, sdkScripts())
	client := openAIClient(srv, hc, testKey)
	_, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-nonexistent",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Code != "model_not_found" {
		t.Fatalf("err = %v, want a 404 model_not_found", err)
	}
}

func TestOpenAISDK_StructuredAnswer(t *testing.T) {
	const schema = `{
		"type": "object",
		"properties": {
			"summary": {"type": "string", "maxLength": 40},
			"verdict": {"type": "string", "enum": ["benign", "malicious"]},
			"score": {"type": "number", "minimum": 0, "maximum": 1}
		},
		"required": ["summary", "verdict", "score"],
		"additionalProperties": false
	}`
	srv, hc := startTLS(t, sdkScripts())
	var schemaMap map[string]any
	if err := json.Unmarshal([]byte(schema), &schemaMap); err != nil {
		t.Fatal(err)
	}
	client := openAIClient(srv, hc, testKey)
	got, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "answer",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("answer in JSON"), openai.UserMessage("cats and their habits")},
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "result", Schema: schemaMap, Strict: openai.Bool(true)},
		}},
		MaxCompletionTokens: openai.Int(256),
	})
	if err != nil {
		t.Fatal(err)
	}
	content := got.Choices[0].Message.Content
	validateJSON(t, compileSchema(t, schema), []byte(content))
	if m := asMap(t, []byte(content)); m["summary"] != "the page is about cats and their habits" {
		t.Errorf("summary = %q", m["summary"])
	}
}

// TestOpenAISDK_TurnIsNormalised sends a whole agent conversation through
// the SDK and checks what the script is given.
func TestOpenAISDK_TurnIsNormalised(t *testing.T) {
	rec := &turnRecorder{reply: func(*modelserver.Turn) modelserver.Reply { return modelserver.Reply{Text: "done"} }}
	srv, hc := startTLS(t, map[string]modelserver.Script{"rec": rec.script})
	assistant := openai.ChatCompletionAssistantMessageParam{
		ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{{OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
			ID:       "call_1",
			Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: "read", Arguments: `{"path":"/input/content/0"}`},
		}}},
	}
	client := openAIClient(srv, hc, testKey)
	_, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "rec",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("system text"),
			openai.DeveloperMessage("developer text"),
			openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{openai.TextContentPart("part one"), openai.TextContentPart("part two")}),
			{OfAssistant: &assistant},
			openai.ToolMessage("file contents", "call_1"),
		},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name: "read", Description: openai.String("reads a file"), Parameters: shared.FunctionParameters{"type": "object"},
		})},
		ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")},
		MaxTokens:  openai.Int(100),
	})
	if err != nil {
		t.Fatal(err)
	}
	turn := rec.turn()
	want := []modelserver.Message{
		{Role: "user", Text: "part one\npart two"},
		{Role: "assistant", ToolCalls: []modelserver.ToolCall{{ID: "call_1", Name: "read", Arguments: json.RawMessage(`{"path":"/input/content/0"}`)}}},
		{Role: "tool", Text: "file contents", ToolCallID: "call_1"},
	}
	if !reflect.DeepEqual(turn.Messages, want) {
		t.Errorf("messages =\n%+v\nwant\n%+v", turn.Messages, want)
	}
	if turn.API != modelserver.APIOpenAI || turn.Number != 2 || turn.System != "system text\n\ndeveloper text" ||
		turn.ToolChoice != "required" || turn.MaxTokens != 100 || turn.Stream {
		t.Errorf("turn = %+v", turn)
	}
	if len(turn.Tools) != 1 || turn.Tools[0].Name != "read" || turn.Tools[0].Description != "reads a file" || string(turn.Tools[0].Schema) != `{"type":"object"}` {
		t.Errorf("tools = %+v", turn.Tools)
	}
}

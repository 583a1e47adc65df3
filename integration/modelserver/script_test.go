package modelserver_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/airlock/airlock/integration/modelserver"
)

const answerSchema = `{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"],"additionalProperties":false}`

// agentTurn is a turn as Airlock's agent sends it: instructions, then the
// content item wrapped in boundaries and datamarked.
func agentTurn(api string, tools ...string) *modelserver.Turn {
	t := &modelserver.Turn{
		API: api, Model: "stand-in", Number: 1,
		System: "You are a careful reader.",
		Messages: []modelserver.Message{
			{Role: "user", Text: "Caller's instructions: What is this page about?"},
			{Role: "user", Text: "Content item name: page-1.html\n<<airlock-data-3f9a>>\nCatsˆsleepˆmostˆofˆtheˆday.\n<<airlock-data-3f9a>>"},
		},
	}
	for _, name := range tools {
		t.Tools = append(t.Tools, modelserver.Tool{Name: name, Schema: json.RawMessage(`{"type":"object"}`)})
	}
	switch api {
	case modelserver.APIOpenAI:
		t.Format, t.Schema = "json_schema", json.RawMessage(answerSchema)
	case modelserver.APIAnthropic:
		t.Tools = append(t.Tools, modelserver.Tool{Name: modelserver.AnswerTool, Schema: json.RawMessage(answerSchema)})
		t.Schema = json.RawMessage(answerSchema)
	}
	return t
}

func TestStandIn_ReadsTheNamedContentThenAnswersFromIt(t *testing.T) {
	standIn := modelserver.Builtin()["stand-in"]
	for _, api := range []string{modelserver.APIOpenAI, modelserver.APIAnthropic} {
		t.Run(api, func(t *testing.T) {
			turn := agentTurn(api, "read")
			first := standIn(turn)
			wantCall := []modelserver.ToolCall{{Name: "read", Arguments: json.RawMessage(`{"path":"/input/content/page-1.html"}`)}}
			if !reflect.DeepEqual(first.ToolCalls, wantCall) || first.Text != "" {
				t.Fatalf("first turn = %+v, want a read of the content", first)
			}

			turn.Number = 2
			turn.Messages = append(turn.Messages,
				modelserver.Message{Role: "assistant", ToolCalls: []modelserver.ToolCall{{ID: "c1", Name: "read", Arguments: wantCall[0].Arguments}}},
				modelserver.Message{Role: "tool", ToolCallID: "c1", Text: "<<airlock-data-77>>\nDogsˆbarkˆatˆthe\u200bmailman.\n<<airlock-data-77>>"},
			)
			second := standIn(turn)
			want := `{"answer":"Dogs bark at the mailman."}`
			switch api {
			case modelserver.APIOpenAI:
				if second.Text != want || len(second.ToolCalls) != 0 {
					t.Errorf("answer = %+v, want text %s", second, want)
				}
			case modelserver.APIAnthropic:
				if len(second.ToolCalls) != 1 || second.ToolCalls[0].Name != modelserver.AnswerTool || string(second.ToolCalls[0].Arguments) != want {
					t.Errorf("answer = %+v, want %s through %s", second, want, modelserver.AnswerTool)
				}
			}
		})
	}
}

func TestStandIn_AnswersAtOnceWithoutReadOrAName(t *testing.T) {
	standIn := modelserver.Builtin()["stand-in"]
	noRead := agentTurn(modelserver.APIOpenAI)
	if r := standIn(noRead); r.Text != `{"answer":"Content item name: page-1.html Cats sleep most of the day."}` {
		t.Errorf("without read: %+v", r)
	}
	noName := agentTurn(modelserver.APIOpenAI, "read")
	noName.Messages = noName.Messages[:1]
	if r := standIn(noName); len(r.ToolCalls) != 0 {
		t.Errorf("with nothing named: %+v", r)
	}
	forced := agentTurn(modelserver.APIAnthropic, "read")
	forced.ToolChoice = modelserver.AnswerTool
	if r := standIn(forced); len(r.ToolCalls) != 1 || r.ToolCalls[0].Name != modelserver.AnswerTool {
		t.Errorf("with tool_choice forcing %s: %+v", modelserver.AnswerTool, r)
	}
	plain := &modelserver.Turn{API: modelserver.APIOpenAI, Messages: []modelserver.Message{{Role: "user", Text: "hello  there"}}}
	if r := standIn(plain); r.Text != "hello there" {
		t.Errorf("without a schema: %+v", r)
	}
}

func TestInstant_AnswersOK(t *testing.T) {
	instant := modelserver.Builtin()["instant"]
	if r := instant(agentTurn(modelserver.APIOpenAI, "read")); r.Text != `{"answer":"ok"}` {
		t.Errorf("openai: %+v", r)
	}
	if r := instant(agentTurn(modelserver.APIAnthropic, "read")); len(r.ToolCalls) != 1 || string(r.ToolCalls[0].Arguments) != `{"answer":"ok"}` {
		t.Errorf("anthropic: %+v", r)
	}
	jsonObject := &modelserver.Turn{API: modelserver.APIOpenAI, Format: "json_object"}
	if r := instant(jsonObject); r.Text != `{"answer":"ok"}` {
		t.Errorf("json_object: %+v", r)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"<<airlock-data-1>>\nAˆbˆc\n<<airlock-data-1>>": "A b c",
		"tabs\tand\x00controls\r\n":                     "tabs and controls",
		"":                                              "",
	} {
		if got := modelserver.Quote(in); got != want {
			t.Errorf("Quote(%q) = %q, want %q", in, got, want)
		}
	}
	long := modelserver.Quote(strings.Repeat("wörd ", 100))
	if n := len([]rune(long)); n < 150 || n > 160 {
		t.Errorf("a quote of %d runes, want up to 160", n)
	}
}

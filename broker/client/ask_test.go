package client_test

import (
	"context"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/airlock/airlock/broker/client"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// Spawn echoes the request it got in the response's message.
func (echoBroker) Spawn(_ context.Context, req *airlockv1.SpawnRequest) (*airlockv1.SpawnResponse, error) {
	b, err := protojson.Marshal(req)
	return &airlockv1.SpawnResponse{Message: string(b)}, err
}

func TestAsk_SendsTheAgentTaskWithAnAnswerSchemaByDefault(t *testing.T) {
	conn := dial(t, unixBroker(t), "", tokenFile(t, testToken, 0o600))
	a := client.Ask{Profile: "thinker", Instructions: "What is the price?", Model: "large", MaxTurns: 3,
		Content: []*airlockv1.Content{{Data: []byte("<p>9 EUR</p>"), MediaType: "text/html"}}}
	resp, err := conn.Ask(callCtx(t), a)
	if err != nil {
		t.Fatal(err)
	}
	var got airlockv1.SpawnRequest
	if err := protojson.Unmarshal([]byte(resp.GetMessage()), &got); err != nil {
		t.Fatal(err)
	}
	if got.GetTask().GetName() != "agent" || got.GetTask().GetInstructions() != a.Instructions || got.GetProfile() != "thinker" {
		t.Errorf("task = %v, profile %q", got.GetTask(), got.GetProfile())
	}
	if got.GetResultSchema() != client.AnswerSchema {
		t.Errorf("schema = %q, want AnswerSchema for a profile without a default", got.GetResultSchema())
	}
	if m := got.GetOverrides().GetModel(); m.GetName() != "large" || m.GetMaxTurns() != 3 {
		t.Errorf("model overrides = %v", m)
	}
	a.Schema, a.Model, a.MaxTurns = `{"type":"object"}`, "", 0
	if req := a.Request(); req.GetResultSchema() != a.Schema || req.GetOverrides() != nil {
		t.Errorf("Request = %v: want the given schema and no overrides", req)
	}
}

package broker_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/audit"
	"github.com/airlock/airlock/policies/prompt"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// agentProfiles add a profile with a model reached through an alias, and
// one that reaches a page host besides, for an agent task with a content
// URL.
var agentProfiles = map[string]string{
	"fetcher": "extends: thinker\nnetwork:\n  egress: [pages.example:443]\n",
	"thinker": `extends: secureclaw
network:
  mode: allowlist
  services:
    model:
      upstream: https://models.example.com
      inject: {header: Authorization, prefix: "Bearer ", secretRef: env:AIRLOCK_TEST_MODEL_KEY}
model:
  service: model
  api: openai
  name: small
  allowed: [large]
  maxTurns: 4
  maxToolCalls: 2
`,
}

const canaryKey = "sk-canary-0123456789abcdef0123456789"

func agentBroker(t *testing.T, runner *fakeRunner, buf *lockedBuffer) airlockv1.BrokerClient {
	t.Helper()
	cfg := broker.Config{
		Profiles:      profilesWith(t, agentProfiles),
		ResolveSecret: func(string) ([]byte, error) { return []byte(canaryKey), nil },
	}
	if buf != nil {
		cfg.Audit = audit.New(buf)
	}
	c, _ := newBrokerWith(t, runner, testToken, cfg)
	return c
}

func agentRequest() *airlockv1.SpawnRequest {
	req := request()
	req.Profile = "thinker"
	req.Task = &airlockv1.Task{Name: "agent", Instructions: "What is the page's title?"}
	return req
}

func TestAgent_RefusedAtTheDoor(t *testing.T) {
	runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`)}
	c := agentBroker(t, runner, nil)
	tests := []struct {
		name  string
		edit  func(*airlockv1.SpawnRequest)
		code  codes.Code
		field string
		want  string
	}{
		{"no instructions", func(r *airlockv1.SpawnRequest) { r.Task.Instructions = " \n" }, codes.InvalidArgument, "task.instructions", "required for the agent task"},
		{"instructions too long", func(r *airlockv1.SpawnRequest) { r.Task.Instructions = strings.Repeat("a", 33<<10) }, codes.InvalidArgument, "task.instructions", "at most 32768"},
		{"instructions not text", func(r *airlockv1.SpawnRequest) { r.Task.Instructions = "a\x00b" }, codes.InvalidArgument, "task.instructions", "UTF-8"},
		{"instructions on another task", func(r *airlockv1.SpawnRequest) { r.Task.Name = "summarize" }, codes.InvalidArgument, "task.instructions", "only for the agent task"},
		{"a model the profile does not list", func(r *airlockv1.SpawnRequest) {
			r.Overrides = &airlockv1.Overrides{Model: &airlockv1.ModelOverrides{Name: "huge"}}
		}, codes.InvalidArgument, "overrides.model.name", `"huge" is not one the profile allows`},
		{"more turns than the profile", func(r *airlockv1.SpawnRequest) {
			r.Overrides = &airlockv1.Overrides{Model: &airlockv1.ModelOverrides{MaxTurns: 5}}
		}, codes.InvalidArgument, "overrides.model.max_turns", "more than the profile's 4"},
		{"more output tokens than the profile", func(r *airlockv1.SpawnRequest) {
			r.Overrides = &airlockv1.Overrides{Model: &airlockv1.ModelOverrides{MaxOutputTokens: 1 << 40}}
		}, codes.InvalidArgument, "overrides.model.max_output_tokens", "more than the profile's"},
		{"a profile without a model", func(r *airlockv1.SpawnRequest) { r.Profile = "secureclaw" }, codes.FailedPrecondition, "", "has no model section"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := agentRequest()
			tt.edit(req)
			_, err := c.Spawn(ctx(t), req)
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.want) {
				t.Fatalf("Spawn = %v, want %v containing %q", err, tt.code, tt.want)
			}
			if tt.field != "" {
				var got string
				for _, d := range st.Details() {
					if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
						got = br.FieldViolations[0].Field
					}
				}
				if got != tt.field {
					t.Errorf("BadRequest field = %q, want %q", got, tt.field)
				}
			}
		})
	}
	if n := runner.runs.Load(); n != 0 {
		t.Errorf("%d jobs ran; every request above must be refused before a sandbox", n)
	}
}

func TestAgent_JobCarriesInstructionsSchemaAndTheTightenedModel(t *testing.T) {
	runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`)}
	c := agentBroker(t, runner, nil)
	req := agentRequest()
	req.Overrides = &airlockv1.Overrides{Model: &airlockv1.ModelOverrides{Name: "large", MaxTurns: 2}}
	resp, err := c.Spawn(ctx(t), req)
	if err != nil || resp.Verdict != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("Spawn = %v, %v", resp, err)
	}
	j := runner.last
	if j.Instructions != req.Task.Instructions || string(j.Schema) != req.ResultSchema {
		t.Errorf("job instructions %q, schema %q", j.Instructions, j.Schema)
	}
	if m := j.Policy.Model; m == nil || m.Name != "large" || m.MaxTurns != 2 || m.MaxToolCalls != 2 {
		t.Errorf("job model = %+v, want large with 2 turns", m)
	}
	svc := j.Services["model"]
	if svc.Prefix != "Bearer " || string(svc.Secret) != canaryKey || svc.Header != "Authorization" {
		t.Errorf("model service = %+v", svc)
	}
	ex, err := c.ExplainProfile(ctx(t), &airlockv1.ExplainProfileRequest{Profile: "thinker"})
	if err != nil || ex.SystemPromptVersion != prompt.Version || ex.SystemPrompt != prompt.System() {
		t.Errorf("ExplainProfile of a profile with a model: version %q, prompt %d bytes, %v", ex.GetSystemPromptVersion(), len(ex.GetSystemPrompt()), err)
	}
	if ex, _ := c.ExplainProfile(ctx(t), &airlockv1.ExplainProfileRequest{Profile: "secureclaw"}); ex.GetSystemPrompt() != "" {
		t.Error("a profile without a model shows a system prompt")
	}
	// Not the agent task: nothing of the model's reaches the job.
	if _, err := c.Spawn(ctx(t), func() *airlockv1.SpawnRequest { r := request(); r.Profile = "thinker"; return r }()); err != nil {
		t.Fatal(err)
	}
	if runner.last.Schema != nil || runner.last.Instructions != "" {
		t.Errorf("a summarize job got schema %q and instructions %q", runner.last.Schema, runner.last.Instructions)
	}
}

func TestAgent_VerdictsComeFromWhatTheProxyAndGateCounted(t *testing.T) {
	tests := []struct {
		name    string
		out     job.Outcome
		verdict airlockv1.Verdict
		want    string
	}{
		{"the agent stops at its turn limit", job.Outcome{ExitCode: job.ExitLimit, Model: job.ModelUsage{Calls: 4}}, airlockv1.Verdict_VERDICT_LIMIT_EXCEEDED, "model.maxTurns (4)"},
		{"the proxy refuses past the input tokens", job.Outcome{ExitCode: job.ExitModel, Model: job.ModelUsage{Calls: 2, Refused: 1, Limit: "maxInputTokens"}}, airlockv1.Verdict_VERDICT_LIMIT_EXCEEDED, "model.maxInputTokens (200000)"},
		{"the upstream answers 500", job.Outcome{ExitCode: job.ExitModel, Model: job.ModelUsage{Calls: 1, Failed: 1, LastStatus: 500}}, airlockv1.Verdict_VERDICT_MODEL_ERROR, "HTTP 500 Internal Server Error"},
		{"the upstream is unreachable", job.Outcome{ExitCode: job.ExitModel, Model: job.ModelUsage{Calls: 1, Failed: 1, LastFailure: "upstream request failed: connection refused"}}, airlockv1.Verdict_VERDICT_MODEL_ERROR, "connection refused"},
		{"a malformed reply", job.Outcome{ExitCode: job.ExitModel, Model: job.ModelUsage{Calls: 1}}, airlockv1.Verdict_VERDICT_MODEL_ERROR, "could not use"},
		{"a job that says model error without calling it", job.Outcome{ExitCode: job.ExitModel}, airlockv1.Verdict_VERDICT_MODEL_ERROR, "could not reach"},
		{"an answer invalid twice", job.Outcome{ExitCode: job.ExitAnswer, Model: job.ModelUsage{Calls: 2}}, airlockv1.Verdict_VERDICT_SCHEMA_INVALID, "after one repair turn"},
		{"another failure", job.Outcome{ExitCode: job.ExitFailure}, airlockv1.Verdict_VERDICT_SANDBOX_ERROR, "exited with code 1"},
		{"an answer despite a refused call", job.Outcome{Result: []byte(`{"title":"T"}`), Model: job.ModelUsage{Calls: 4, Refused: 1, Limit: "maxTurns", InputTokens: 10, OutputTokens: 3}}, airlockv1.Verdict_VERDICT_OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := tt.out
			runner := &fakeRunner{outcome: func(*job.Job) (*job.Outcome, error) { return &out, nil }}
			resp, err := agentBroker(t, runner, nil).Spawn(ctx(t), agentRequest())
			if err != nil {
				t.Fatal(err)
			}
			if resp.Verdict != tt.verdict || !strings.Contains(resp.Message, tt.want) {
				t.Errorf("verdict %v %q, want %v containing %q", resp.Verdict, resp.Message, tt.verdict, tt.want)
			}
			if u := resp.Usage; u.ModelTurns != int32(out.Model.Calls) || u.InputTokens != out.Model.InputTokens || u.OutputTokens != out.Model.OutputTokens {
				t.Errorf("usage = %v, want the proxy's counts %+v", u, out.Model)
			}
		})
	}
	// The same exit codes mean nothing special for a task without a model.
	runner := &fakeRunner{outcome: func(*job.Job) (*job.Outcome, error) { return &job.Outcome{ExitCode: job.ExitLimit}, nil }}
	req := request()
	req.Profile = "thinker"
	if resp, _ := agentBroker(t, runner, nil).Spawn(ctx(t), req); resp.GetVerdict() != airlockv1.Verdict_VERDICT_SANDBOX_ERROR {
		t.Errorf("summarize exiting 4 = %v, want SANDBOX_ERROR", resp.GetVerdict())
	}
}

func TestAgent_BrokerRefusesToolCallsPastTheLimitAndStreamsEachCall(t *testing.T) {
	reqs := []job.ExecRequest{
		{Tool: "fetch", Target: "https://a.example/1"},
		{Tool: "fetch", Target: "https://a.example/2"},
		{Tool: "fetch", Target: "https://a.example/3"},
		{Tool: "fetch", Target: "https://a.example/4"},
	}
	runner, got := requestRunner(0, reqs...)
	runner.outcome = func(j *job.Job) (*job.Outcome, error) {
		j.OnModelCall(job.ModelCall{Turn: 1, Allowed: true, Status: 200, InputTokens: 120, OutputTokens: 7, Reason: "ok\x1b[31m"})
		return &job.Outcome{ExitCode: job.ExitLimit, Model: job.ModelUsage{Calls: 1, InputTokens: 120, OutputTokens: 7}}, nil
	}
	var buf lockedBuffer
	c := agentBroker(t, runner, &buf)
	stream, err := c.SpawnStream(ctx(t), &airlockv1.SpawnStreamRequest{Spawn: agentRequest()})
	if err != nil {
		t.Fatal(err)
	}
	var calls []*airlockv1.ToolCall
	var turns []*airlockv1.ModelTurn
	var done *airlockv1.Job
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch e := ev.Event.(type) {
		case *airlockv1.SpawnStreamResponse_ToolCall:
			calls = append(calls, e.ToolCall)
		case *airlockv1.SpawnStreamResponse_ModelTurn:
			turns = append(turns, e.ModelTurn)
		case *airlockv1.SpawnStreamResponse_Done:
			done = e.Done
		}
	}
	decisions := got()
	if len(decisions) != 4 || decisions[2].Allow || decisions[3].Allow || !strings.Contains(decisions[2].Reason, "maxToolCalls") {
		t.Fatalf("decisions = %+v, want the third and fourth refused at maxToolCalls", decisions)
	}
	if len(calls) != 4 || calls[0].Tool != "fetch" || !strings.Contains(calls[0].Target, "example/1") || calls[3].Allowed {
		t.Errorf("tool call events = %v", calls)
	}
	if len(turns) != 1 || turns[0].InputTokens != 120 || turns[0].Status != 200 || strings.ContainsRune(turns[0].Reason, 0x1b) {
		t.Errorf("model turn events = %v", turns)
	}
	if done.GetVerdict() != airlockv1.Verdict_VERDICT_LIMIT_EXCEEDED || !strings.Contains(done.GetMessage(), "maxToolCalls (2)") || done.GetUsage().GetToolCalls() != 4 {
		t.Errorf("done = %v", done)
	}
	var rec audit.Record
	if err := json.Unmarshal(bytes.TrimSpace([]byte(buf.String())), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.PromptVersion != prompt.Version || rec.Model != "small" || rec.ModelTurns != 1 || rec.InputTokens != 120 || rec.OutputTokens != 7 || rec.ToolCalls != 4 || rec.Exec["LIMIT_EXCEEDED"] != 2 {
		t.Errorf("audit record = %+v", rec)
	}
	if strings.Contains(buf.String(), canaryKey) {
		t.Error("the model key reached the audit log")
	}
}

package bench

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies/policy"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// agentBroker is fakeBroker that also streams agent jobs: two model turns
// of 3 ms each, then done with two turns in its usage.
type agentBroker struct {
	*fakeBroker
	verdict airlockv1.Verdict
}

type scripted struct {
	grpc.ClientStream
	events []*airlockv1.SpawnStreamResponse
}

func (s *scripted) Recv() (*airlockv1.SpawnStreamResponse, error) {
	if len(s.events) == 0 {
		return nil, io.EOF
	}
	ev := s.events[0]
	s.events = s.events[1:]
	return ev, nil
}

func (a *agentBroker) SpawnStream(_ context.Context, req *airlockv1.SpawnStreamRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[airlockv1.SpawnStreamResponse], error) {
	a.lastReq.Store(req.GetSpawn())
	turn := func(n int32) *airlockv1.SpawnStreamResponse {
		return &airlockv1.SpawnStreamResponse{Event: &airlockv1.SpawnStreamResponse_ModelTurn{ModelTurn: &airlockv1.ModelTurn{Turn: n, Duration: durationpb.New(3 * time.Millisecond)}}}
	}
	done := &airlockv1.SpawnStreamResponse{Event: &airlockv1.SpawnStreamResponse_Done{Done: &airlockv1.Job{
		Verdict: a.verdict, Message: "model failed", Usage: &airlockv1.Usage{ModelTurns: 2}}}}
	return &scripted{events: []*airlockv1.SpawnStreamResponse{turn(1), turn(2), done}}, nil
}

func agentProfiles(t *testing.T) *policy.Set {
	t.Helper()
	set, err := policy.Load(mapFS(map[string]string{
		"thinker.yaml": "network:\n  mode: allowlist\n  services:\n    m: {upstream: 'https://127.0.0.1:1'}\nmodel: {service: m, api: openai, name: instant}\n",
		"plain.yaml":   "network: {mode: none}\n",
	}), policy.WithSchemaCheck(result.CheckSchema))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestRunAgent_ReportsOverheadPerTurnAgainstPlainJobs(t *testing.T) {
	b := &agentBroker{fakeBroker: &fakeBroker{profiles: agentProfiles(t)}, verdict: airlockv1.Verdict_VERDICT_OK}
	rep, err := RunAgent(context.Background(), AgentConfig{Broker: b, Options: Options{N: 4, Concurrency: 2, Profile: "thinker"}, Rounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Agent.N != 4 || rep.Agent.Failures != 0 || rep.Plain.N != 4 || rep.Turns != 2 || rep.ModelTime != 6*time.Millisecond {
		t.Errorf("report = %+v", rep)
	}
	if want := time.Duration(float64(rep.Agent.Mean-rep.Plain.Mean-rep.ModelTime) / 2); rep.OverheadPerTurn != want {
		t.Errorf("overhead per turn = %s, want %s", rep.OverheadPerTurn, want)
	}
	req := b.lastReq.Load()
	if req.GetTask().GetName() != DefaultTask {
		t.Errorf("the last job was %q; each round ends with the plain jobs", req.GetTask().GetName())
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil || !strings.Contains(out.String(), "overhead per model turn") {
		t.Errorf("table = %q, %v", out.String(), err)
	}
}

func TestRunAgent_FailedAgentJobsAreFailuresAndANoModelProfileIsRefused(t *testing.T) {
	b := &agentBroker{fakeBroker: &fakeBroker{profiles: agentProfiles(t)}, verdict: airlockv1.Verdict_VERDICT_MODEL_ERROR}
	rep, err := RunAgent(context.Background(), AgentConfig{Broker: b, Options: Options{N: 2, Concurrency: 1, Profile: "thinker"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Agent.Failures != 2 || !strings.Contains(strings.Join(rep.Agent.Errors, ";"), "VERDICT_MODEL_ERROR") || rep.OverheadPerTurn != 0 {
		t.Errorf("report = %+v", rep)
	}
	if _, err := RunAgent(context.Background(), AgentConfig{Broker: b, Options: Options{N: 2, Concurrency: 1, Profile: "plain"}}); err == nil || !strings.Contains(err.Error(), "no model section") {
		t.Errorf("RunAgent on a profile without a model = %v", err)
	}
}

func mapFS(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, body := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(body)}
	}
	return fsys
}

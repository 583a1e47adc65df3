package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// fakeBroker answers Spawn with OK, except every failEvery-th call, and
// ExplainProfile with a shipped profile.
type fakeBroker struct {
	airlockv1.BrokerClient
	calls     atomic.Int32
	failEvery int32
	profiles  *policy.Set
	lastReq   atomic.Pointer[airlockv1.SpawnRequest]
}

func (f *fakeBroker) Spawn(_ context.Context, req *airlockv1.SpawnRequest, _ ...grpc.CallOption) (*airlockv1.SpawnResponse, error) {
	f.lastReq.Store(req)
	n := f.calls.Add(1)
	switch {
	case req.GetProfile() == "refused":
		return nil, status.Error(codes.InvalidArgument, "unknown profile")
	case f.failEvery > 0 && n%f.failEvery == 0:
		return &airlockv1.SpawnResponse{Verdict: airlockv1.Verdict_VERDICT_TIMEOUT, Message: "ran past 15s"}, nil
	}
	return &airlockv1.SpawnResponse{Verdict: airlockv1.Verdict_VERDICT_OK}, nil
}

func (f *fakeBroker) ExplainProfile(_ context.Context, req *airlockv1.ExplainProfileRequest, _ ...grpc.CallOption) (*airlockv1.ExplainProfileResponse, error) {
	p, err := f.profiles.Get(req.GetProfile())
	if err != nil {
		return nil, status.Error(codes.NotFound, err.Error())
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return &airlockv1.ExplainProfileResponse{EffectiveJson: string(b)}, nil
}

func newFakeBroker(t *testing.T) *fakeBroker {
	t.Helper()
	set, err := policy.Load(policies.FS, policy.WithSchemaCheck(result.CheckSchema))
	if err != nil {
		t.Fatal(err)
	}
	return &fakeBroker{profiles: set}
}

func TestRunBroker_NonOKVerdictIsAFailure(t *testing.T) {
	f := newFakeBroker(t)
	f.failEvery = 5
	s, err := RunBroker(context.Background(), f, Options{N: 10, Concurrency: 2, Profile: "ironclaw"})
	if err != nil {
		t.Fatal(err)
	}
	if s.N != 10 || s.Failures != 2 {
		t.Errorf("N %d, failures %d; want 10, 2", s.N, s.Failures)
	}
	if len(s.Errors) != 1 || !strings.Contains(s.Errors[0], "VERDICT_TIMEOUT") || !strings.Contains(s.Errors[0], "ran past 15s") {
		t.Errorf("Errors = %q, want the verdict and its message", s.Errors)
	}
}

func TestRunBroker_RPCErrorIsAFailure(t *testing.T) {
	s, err := RunBroker(context.Background(), newFakeBroker(t), Options{N: 3, Concurrency: 1, Profile: "refused"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Failures != 3 || !strings.Contains(s.Errors[0], "InvalidArgument") {
		t.Errorf("failures %d, errors %q", s.Failures, s.Errors)
	}
}

func TestRunBroker_SendsTheDefaultJob(t *testing.T) {
	f := newFakeBroker(t)
	if _, err := RunBroker(context.Background(), f, Options{N: 1, Concurrency: 1, Profile: "vanilla", Schema: DefaultSchema}); err != nil {
		t.Fatal(err)
	}
	req := f.lastReq.Load()
	if req.GetTask().GetName() != DefaultTask || len(req.GetContent()) != 1 || req.GetJobId() != "" || req.GetResultSchema() != DefaultSchema {
		t.Errorf("request = %v", req)
	}
}

func TestProfileOf_RoundTripsTheEffectivePolicy(t *testing.T) {
	f := newFakeBroker(t)
	want, _ := f.profiles.Get("ironclaw")
	got, err := ProfileOf(context.Background(), f, "ironclaw")
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash() != want.Hash() {
		t.Errorf("decoded profile differs from the broker's: %+v", got)
	}
}

func TestRun_BrokerOnlyReport(t *testing.T) {
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Config{
		Broker: newFakeBroker(t), Options: Options{N: 8, Concurrency: 2, Profile: "ironclaw"},
		Warmup: 1, Rounds: 2, Progress: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].System != SystemAirlock || rep.Results[0].Stats.N != 8 {
		t.Fatalf("results = %+v", rep.Results)
	}
	if rep.Image != "airlock.local/reader:latest" || len(rep.Ratios) != 0 {
		t.Errorf("image %q, ratios %v", rep.Image, rep.Ratios)
	}
	if !strings.Contains(progress.String(), "round 2/2") {
		t.Errorf("progress = %q", progress.String())
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "airlock ") || !strings.Contains(table.String(), "8/8") {
		t.Errorf("table:\n%s", table.String())
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
}

func TestRun_RefusesTooFewJobsPerRound(t *testing.T) {
	_, err := Run(context.Background(), Config{Broker: newFakeBroker(t), Options: Options{N: 4, Concurrency: 4, Profile: "ironclaw"}, Rounds: 2})
	if err == nil || !strings.Contains(err.Error(), "rounds") {
		t.Errorf("err = %v", err)
	}
}

func TestRun_WarmupFailureStops(t *testing.T) {
	f := newFakeBroker(t)
	f.failEvery = 1
	_, err := Run(context.Background(), Config{Broker: f, Options: Options{N: 4, Concurrency: 1, Profile: "ironclaw"}, Warmup: 1})
	if err == nil || !strings.Contains(err.Error(), "warm-up") {
		t.Errorf("err = %v, want a warm-up failure", err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d spawns, want the benchmark to stop after the failed warm-up", n)
	}
}

package agenttest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// fakeBroker answers Spawn as agent says, and lists images.
type fakeBroker struct {
	airlockv1.BrokerClient
	images []*airlockv1.Image
	agent  func(*airlockv1.SpawnRequest) *airlockv1.SpawnResponse
}

func (f *fakeBroker) ListImages(context.Context, *airlockv1.ListImagesRequest, ...grpc.CallOption) (*airlockv1.ListImagesResponse, error) {
	return &airlockv1.ListImagesResponse{Images: f.images}, nil
}

func (f *fakeBroker) Spawn(_ context.Context, r *airlockv1.SpawnRequest, _ ...grpc.CallOption) (*airlockv1.SpawnResponse, error) {
	return f.agent(r), nil
}

// honest answers contract_echo as the contract says.
func honest(r *airlockv1.SpawnRequest) map[string]any {
	var content []any
	for _, c := range r.GetContent() {
		sum := sha256.Sum256(c.GetData())
		content = append(content, map[string]any{"bytes": float64(len(c.GetData())), "sha256": hex.EncodeToString(sum[:])})
	}
	params := map[string]any{}
	for k, v := range r.GetTask().GetParams() {
		params[k] = v
	}
	return map[string]any{"jobId": r.GetJobId(), "params": params, "content": content}
}

func ok(result map[string]any) *airlockv1.SpawnResponse {
	s, err := structpb.NewStruct(result)
	if err != nil {
		panic(err)
	}
	return &airlockv1.SpawnResponse{Verdict: airlockv1.Verdict_VERDICT_OK, Result: s}
}

var failed = &airlockv1.SpawnResponse{Verdict: airlockv1.Verdict_VERDICT_SANDBOX_ERROR, Message: "the agent exited with code 2"}

func TestRun_JudgesTheAgent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		agent func(*airlockv1.SpawnRequest) *airlockv1.SpawnResponse
		fail  []string // the checks that must fail; the others pass
	}{
		{"honest", func(r *airlockv1.SpawnRequest) *airlockv1.SpawnResponse {
			if r.GetTask().GetName() != EchoTask {
				return failed
			}
			return ok(honest(r))
		}, nil},
		{"reads no content", func(r *airlockv1.SpawnRequest) *airlockv1.SpawnResponse {
			if r.GetTask().GetName() != EchoTask {
				return failed
			}
			res := honest(r)
			res["content"].([]any)[1].(map[string]any)["sha256"] = strings.Repeat("0", 64)
			return ok(res)
		}, []string{"reads job.json"}},
		{"makes up the nonce", func(r *airlockv1.SpawnRequest) *airlockv1.SpawnResponse {
			res := honest(r)
			res["params"] = map[string]any{"nonce": "guess"}
			return ok(res)
		}, []string{"reads job.json", "refuses a task"}},
		{"writes nothing", func(*airlockv1.SpawnRequest) *airlockv1.SpawnResponse { return failed },
			[]string{"exits cleanly", "reads job.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checks, err := Run(context.Background(), &fakeBroker{agent: tc.agent}, "p")
			if err != nil {
				t.Fatal(err)
			}
			if len(checks) != 3 {
				t.Fatalf("%d checks, want 3: %+v", len(checks), checks)
			}
			for _, c := range checks {
				wantFail := false
				for _, f := range tc.fail {
					wantFail = wantFail || strings.HasPrefix(c.Name, f)
				}
				if c.OK == wantFail {
					t.Errorf("check %q: ok %v (%s), want %v", c.Name, c.OK, c.Detail, !wantFail)
				}
			}
		})
	}
}

func TestTarget_PicksTheImageAndItsProfile(t *testing.T) {
	d1, d2 := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	b := &fakeBroker{images: []*airlockv1.Image{
		{Name: "a", Digest: d1, Profiles: []string{"pa"}},
		{Name: "b", Digest: d1, Profiles: []string{"pb1", "pb2"}},
		{Name: "c", Digest: d1},
		{Name: "d", Digest: d1, Profiles: []string{"pd"}},
		{Name: "d", Digest: d2, Profiles: []string{"pd2"}},
	}}
	for _, tc := range []struct{ ref, profile, want, err string }{
		{"a", "", "pa", ""},
		{"a@" + d1, "", "pa", ""},
		{"a@" + d2, "", "", "no image"},
		{"a", "pb1", "", "does not run"},
		{"b", "", "", "choose one with --profile"},
		{"b", "pb2", "pb2", ""},
		{"c", "", "", "no loaded profile runs"},
		{"d", "", "", "2 digests"},
		{"d@" + d2, "", "pd2", ""},
		{"e", "", "", "no image"},
	} {
		_, p, err := Target(context.Background(), b, tc.ref, tc.profile)
		if p != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Target(%s, %q) = %q, %v; want %q, %q", tc.ref, tc.profile, p, err, tc.want, tc.err)
		}
	}
}

package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// fakeBroker answers Spawn and SpawnStream with a fixed job, asks for one
// approval on the stream, and records what it was sent.
type fakeBroker struct {
	airlockv1.BrokerClient
	mu        sync.Mutex
	spawned   []*airlockv1.SpawnRequest
	streamed  []*airlockv1.SpawnRequest
	approvals []*airlockv1.ApproveRequest
	refuse    error
}

func (f *fakeBroker) result() (*structpb.Struct, error) {
	return structpb.NewStruct(map[string]any{"text": "clean"})
}

func (f *fakeBroker) Spawn(_ context.Context, in *airlockv1.SpawnRequest, _ ...grpc.CallOption) (*airlockv1.SpawnResponse, error) {
	f.mu.Lock()
	f.spawned = append(f.spawned, in)
	f.mu.Unlock()
	if f.refuse != nil {
		return nil, f.refuse
	}
	r, _ := f.result()
	return &airlockv1.SpawnResponse{JobId: "j1", Verdict: airlockv1.Verdict_VERDICT_OK, Result: r,
		Sanitization: &airlockv1.SanitizationReport{Findings: []*airlockv1.SanitizationFinding{{Path: "$.text", Kind: "flagged", Detail: "override", Count: 1}}},
		Egress:       []*airlockv1.EgressAttempt{{Allowed: true}, {Allowed: false}},
		Usage:        &airlockv1.Usage{EgressDeniedPackets: 3}}, nil
}

func (f *fakeBroker) SpawnStream(_ context.Context, in *airlockv1.SpawnStreamRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[airlockv1.SpawnStreamResponse], error) {
	f.mu.Lock()
	f.streamed = append(f.streamed, in.GetSpawn())
	f.mu.Unlock()
	r, _ := f.result()
	return &fakeStream{events: []*airlockv1.SpawnStreamResponse{
		{JobId: "j2", Event: &airlockv1.SpawnStreamResponse_Started{Started: &airlockv1.JobStarted{}}},
		{JobId: "j2", Event: &airlockv1.SpawnStreamResponse_ApprovalNeeded{ApprovalNeeded: &airlockv1.ApprovalNeeded{
			Request: "/bin/cat /input/content/0", RequestId: "r1", Reason: "matches no pattern", Timeout: durationpb.New(60e9)}}},
		{JobId: "j2", Event: &airlockv1.SpawnStreamResponse_Done{Done: &airlockv1.Job{JobId: "j2", Verdict: airlockv1.Verdict_VERDICT_OK, Result: r}}},
	}}, nil
}

func (f *fakeBroker) Approve(_ context.Context, in *airlockv1.ApproveRequest, _ ...grpc.CallOption) (*airlockv1.ApproveResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.approvals = append(f.approvals, in)
	return &airlockv1.ApproveResponse{}, nil
}

type fakeStream struct {
	grpc.ClientStream
	events []*airlockv1.SpawnStreamResponse
}

func (s *fakeStream) Recv() (*airlockv1.SpawnStreamResponse, error) {
	if len(s.events) == 0 {
		return nil, io.EOF
	}
	ev := s.events[0]
	s.events = s.events[1:]
	return ev, nil
}
func (s *fakeStream) Header() (metadata.MD, error) { return nil, nil }
func (s *fakeStream) CloseSend() error             { return nil }

func connect(t *testing.T, b airlockv1.BrokerClient, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	ctx := context.Background()
	st, ct := mcp.NewInMemoryTransports()
	ss, err := New(b, Options{Describe: func(ev *airlockv1.SpawnStreamResponse) string { return "event " + ev.GetJobId() }}).Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v0"}, opts).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func structured(t *testing.T, res *mcp.CallToolResult) ReadOutput {
	t.Helper()
	b, _ := json.Marshal(res.StructuredContent)
	var out ReadOutput
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return out
}

func TestRead_UnaryWithoutElicitation(t *testing.T) {
	b := &fakeBroker{}
	cs := connect(t, b, nil)
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: ReadTool, Arguments: map[string]any{
		"content": "<p>hi</p>", "mediaType": "text/html", "schema": map[string]any{"type": "object"}}})
	if err != nil || res.IsError {
		t.Fatalf("%v %v", err, res)
	}
	out := structured(t, res)
	if out.Verdict != "OK" || out.Result["text"] != "clean" || len(out.Flags) != 1 ||
		out.Egress != (EgressSummary{Allowed: 1, Denied: 1, DroppedPackets: 3}) {
		t.Errorf("output %+v", out)
	}
	if len(b.spawned) != 1 || len(b.streamed) != 0 {
		t.Fatalf("spawned %d streamed %d: a client that cannot be asked gets the unary call", len(b.spawned), len(b.streamed))
	}
	req := b.spawned[0]
	if req.GetTask().GetName() != "extract_text" || req.GetResultSchema() != `{"type":"object"}` || req.GetContent()[0].GetMediaType() != "text/html" {
		t.Errorf("request %v", req)
	}
}

func TestRead_ApprovalsGoToTheUser(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer *mcp.ElicitResult
		want   airlockv1.ApprovalDecision
	}{
		{"accepted", &mcp.ElicitResult{Action: "accept", Content: map[string]any{"allow": true}}, airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE},
		{"accepted with allow false", &mcp.ElicitResult{Action: "accept", Content: map[string]any{"allow": false}}, airlockv1.ApprovalDecision_APPROVAL_DECISION_DENY},
		{"declined", &mcp.ElicitResult{Action: "decline"}, airlockv1.ApprovalDecision_APPROVAL_DECISION_DENY},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &fakeBroker{}
			var asked string
			cs := connect(t, b, &mcp.ClientOptions{ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				asked = req.Params.Message
				return tc.answer, nil
			}})
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: ReadTool, Arguments: map[string]any{"content": "x", "instructions": "summarize"}})
			if err != nil || res.IsError {
				t.Fatalf("%v %v", err, res)
			}
			if out := structured(t, res); out.JobID != "j2" || out.Verdict != "OK" {
				t.Errorf("output %+v", out)
			}
			if !strings.Contains(asked, "/bin/cat /input/content/0") {
				t.Errorf("the user was asked %q", asked)
			}
			if len(b.approvals) != 1 || b.approvals[0].GetDecision() != tc.want || b.approvals[0].GetRequestId() != "r1" {
				t.Fatalf("approvals %v, want one %v", b.approvals, tc.want)
			}
			if s := b.streamed[0]; s.GetTask().GetName() != "agent" || s.GetTask().GetInstructions() != "summarize" || !strings.Contains(s.GetResultSchema(), "answer") {
				t.Errorf("streamed request %v", s)
			}
		})
	}
}

func TestRead_RefusesAtTheDoor(t *testing.T) {
	for _, args := range []map[string]any{
		{"content": ""},
		{"content": "x", "task": "summarize", "instructions": "and also"},
	} {
		b := &fakeBroker{}
		res, err := connect(t, b, nil).CallTool(context.Background(), &mcp.CallToolParams{Name: ReadTool, Arguments: args})
		if err != nil {
			t.Fatal(err)
		}
		if !res.IsError || len(b.spawned)+len(b.streamed) != 0 {
			t.Errorf("%v: isError=%v, broker called %d times", args, res.IsError, len(b.spawned)+len(b.streamed))
		}
	}
}

func TestRead_BrokerRefusalIsAToolError(t *testing.T) {
	b := &fakeBroker{refuse: status.Error(codes.InvalidArgument, "content[0]: 2 MiB, over the 1 MiB limit")}
	res, err := connect(t, b, nil).CallTool(context.Background(), &mcp.CallToolParams{Name: ReadTool, Arguments: map[string]any{"content": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	var text string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			text += tc.Text
		}
	}
	if !res.IsError || !strings.Contains(text, "InvalidArgument") || !strings.Contains(text, "over the 1 MiB limit") {
		t.Errorf("isError=%v text %q", res.IsError, text)
	}
	if errors.Is(err, io.EOF) {
		t.Fatal("session ended")
	}
}

func TestRead_UnknownRequestStateRunsNothing(t *testing.T) {
	b := &fakeBroker{}
	cs := connect(t, b, &mcp.ClientOptions{ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
		return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"allow": true}}, nil
	}})
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: ReadTool, RequestState: "forged", Arguments: map[string]any{"content": "x"}})
	if err == nil && !res.IsError {
		t.Fatalf("a forged requestState was taken: %v", res)
	}
	if len(b.approvals)+len(b.spawned)+len(b.streamed) != 0 {
		t.Errorf("the broker was called: %d approvals, %d spawns", len(b.approvals), len(b.spawned)+len(b.streamed))
	}
}

func TestRead_ProgressStreamsEventsAndDeniesWhatNobodyCanApprove(t *testing.T) {
	b := &fakeBroker{}
	var mu sync.Mutex
	var progress []string
	cs := connect(t, b, &mcp.ClientOptions{ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
		mu.Lock()
		defer mu.Unlock()
		progress = append(progress, req.Params.Message)
	}})
	params := &mcp.CallToolParams{Name: ReadTool, Arguments: map[string]any{"content": "x"}}
	params.SetProgressToken("p")
	res, err := cs.CallTool(context.Background(), params)
	if err != nil || res.IsError {
		t.Fatalf("%v %v", err, res)
	}
	if len(b.streamed) != 1 || len(b.spawned) != 0 {
		t.Fatalf("streamed %d spawned %d: a progress token streams the job", len(b.streamed), len(b.spawned))
	}
	if len(b.approvals) != 1 || b.approvals[0].GetDecision() != airlockv1.ApprovalDecision_APPROVAL_DECISION_DENY {
		t.Errorf("approvals %v: a client that cannot be asked gets the fallback's deny at once", b.approvals)
	}
}

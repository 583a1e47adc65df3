package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// fakeEvents replays events, then ends the stream with end.
type fakeEvents struct {
	grpc.ClientStream
	events []*airlockv1.SpawnStreamResponse
	end    error
}

func (f *fakeEvents) Recv() (*airlockv1.SpawnStreamResponse, error) {
	if len(f.events) == 0 {
		return nil, f.end
	}
	ev := f.events[0]
	f.events = f.events[1:]
	return ev, nil
}

func TestEventLine(t *testing.T) {
	tests := []struct {
		name string
		ev   *airlockv1.SpawnStreamResponse
		want string
	}{
		{"accepted", &airlockv1.SpawnStreamResponse{JobId: "j1", Event: &airlockv1.SpawnStreamResponse_Accepted{Accepted: &airlockv1.JobAccepted{
			Policy: &airlockv1.EffectivePolicy{Profile: "secureclaw", Summary: "network=allowlist(2) exec=allowlist"}}}},
			"job j1 accepted: profile secureclaw (network=allowlist(2) exec=allowlist)"},
		{"started", &airlockv1.SpawnStreamResponse{JobId: "j1", Event: &airlockv1.SpawnStreamResponse_Started{Started: &airlockv1.JobStarted{}}},
			"job j1 started"},
		{"egress denied", &airlockv1.SpawnStreamResponse{JobId: "j1", Event: &airlockv1.SpawnStreamResponse_Egress{Egress: &airlockv1.EgressAttempt{
			Method: "CONNECT", Host: "evil.example", Port: 443, Reason: "not on the allowlist"}}},
			"job j1 egress denied: CONNECT evil.example:443: not on the allowlist"},
		{"egress allowed", &airlockv1.SpawnStreamResponse{JobId: "j1", Event: &airlockv1.SpawnStreamResponse_Egress{Egress: &airlockv1.EgressAttempt{
			Method: "GET", Host: "api.example.com", Port: 80, Allowed: true, Reason: "matches api.example.com"}}},
			"job j1 egress allowed: GET api.example.com:80: matches api.example.com"},
		{"approval", &airlockv1.SpawnStreamResponse{JobId: "j1", Event: &airlockv1.SpawnStreamResponse_ApprovalNeeded{ApprovalNeeded: &airlockv1.ApprovalNeeded{
			Request: "write /etc/x", RequestId: "exec-1", Reason: "write outside /tmp, /output", Timeout: durationpb.New(time.Minute)}}},
			"job j1 approval needed: write /etc/x (write outside /tmp, /output); within 1m0s: airlock approve j1 exec-1 allow|deny"},
		{"hostile words are quoted", &airlockv1.SpawnStreamResponse{JobId: "j1", Event: &airlockv1.SpawnStreamResponse_Egress{Egress: &airlockv1.EgressAttempt{
			Method: "GET", Host: "\x1b]0;owned\x07évil.example", Port: 80, Reason: "no\nnewline"}}},
			`job j1 egress denied: GET "\x1b]0;owned\a\u00e9vil.example":80: "no\nnewline"`},
		{"done is not a line", &airlockv1.SpawnStreamResponse{JobId: "j1", Event: &airlockv1.SpawnStreamResponse_Done{Done: &airlockv1.Job{}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := eventLine(tt.ev)
			if got != tt.want {
				t.Errorf("eventLine =\n%s\nwant\n%s", got, tt.want)
			}
			if strings.ContainsAny(got, "\x1b\x07\n") {
				t.Errorf("a control character reached the line: %q", got)
			}
		})
	}
}

func TestFollowStream_PrintsEventsAndReturnsTheResponse(t *testing.T) {
	final := &airlockv1.Job{JobId: "j1", State: airlockv1.JobState_JOB_STATE_FINISHED, Verdict: airlockv1.Verdict_VERDICT_OK}
	var out bytes.Buffer
	resp, err := followStream(&out, &fakeEvents{events: []*airlockv1.SpawnStreamResponse{
		{JobId: "j1", Event: &airlockv1.SpawnStreamResponse_Started{Started: &airlockv1.JobStarted{}}},
		{JobId: "j1", Event: &airlockv1.SpawnStreamResponse_ApprovalNeeded{ApprovalNeeded: &airlockv1.ApprovalNeeded{Request: "head -n 1 x", RequestId: "exec-1"}}},
		{JobId: "j1", Event: &airlockv1.SpawnStreamResponse_Done{Done: final}},
	}})
	if err != nil || resp != final {
		t.Fatalf("followStream = %v, %v", resp, err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "job j1 started" || !strings.HasPrefix(lines[1], "job j1 approval needed: head -n 1 x") {
		t.Errorf("printed:\n%s", out.String())
	}
}

func TestFollowStream_AStreamWithoutAResponseIsAnError(t *testing.T) {
	if _, err := followStream(io.Discard, &fakeEvents{end: io.EOF}); err == nil || !strings.Contains(err.Error(), "without the job's response") {
		t.Errorf("followStream at EOF: %v", err)
	}
}

// fakeBroker records the Spawn request it is sent.
type fakeBroker struct {
	airlockv1.BrokerClient
	got *airlockv1.SpawnRequest
}

func (f *fakeBroker) Spawn(_ context.Context, req *airlockv1.SpawnRequest, _ ...grpc.CallOption) (*airlockv1.SpawnResponse, error) {
	f.got = req
	return &airlockv1.SpawnResponse{JobId: "j1", Verdict: airlockv1.Verdict_VERDICT_OK}, nil
}

func TestSpawn_WithoutSchemaSendsNoneSoTheProfileDefaultApplies(t *testing.T) {
	dir := t.TempDir()
	page := filepath.Join(dir, "page.html")
	if err := os.WriteFile(page, []byte("<p>Hi.</p>"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{}
	if _, err := spawn(context.Background(), b, []string{"--profile", "vanilla", "--task", "extract_links", "--content", page}); err != nil {
		t.Fatalf("spawn without --schema: %v", err)
	}
	if b.got == nil {
		t.Fatal("no Spawn request was sent")
	}
	if b.got.GetResultSchema() != "" {
		t.Errorf("result_schema = %q, want none", b.got.GetResultSchema())
	}
	if b.got.GetTask().GetName() != "extract_links" || b.got.GetProfile() != "vanilla" || len(b.got.GetContent()) != 1 ||
		b.got.GetContent()[0].GetMediaType() != "text/html" {
		t.Errorf("request = %v", b.got)
	}
}

func TestSpawn_SchemaFileIsSentAsIs(t *testing.T) {
	dir := t.TempDir()
	page, schema := filepath.Join(dir, "page.txt"), filepath.Join(dir, "s.json")
	const text = `{"type": "object", "required": ["links"]}`
	if err := os.WriteFile(page, []byte("Hi."), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(schema, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{}
	if _, err := spawn(context.Background(), b, []string{"--task", "extract_links", "--content", page, "--schema", schema}); err != nil {
		t.Fatalf("spawn: %v", err)
	}
	if b.got.GetResultSchema() != text {
		t.Errorf("result_schema = %q, want %q", b.got.GetResultSchema(), text)
	}
}

func TestSpawn_NeedsATaskAndContent(t *testing.T) {
	for _, args := range [][]string{{"--content", "x"}, {"--task", "summarize"}} {
		b := &fakeBroker{}
		_, err := spawn(context.Background(), b, args)
		if err == nil || !strings.Contains(err.Error(), "spawn needs --task and at least one --content") {
			t.Errorf("spawn %q: %v", args, err)
		}
		if b.got != nil {
			t.Errorf("spawn %q sent a request", args)
		}
	}
}

//go:build integration

package integration

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock/airlock/broker"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// TestDoor_CallerMistakesAreRefusedBeforeASandbox: on the shipped airlockd,
// each caller mistake that once ran a sandbox and ended in SANDBOX_ERROR is
// refused by Spawn with the code that fits, naming the field and the limit
// and saying what to do; the job never exists.
func TestDoor_CallerMistakesAreRefusedBeforeASandbox(t *testing.T) {
	base := func() *airlockv1.SpawnRequest {
		return &airlockv1.SpawnRequest{
			Profile:      "ironclaw",
			Task:         &airlockv1.Task{Name: "summarize"},
			Content:      []*airlockv1.Content{{Data: []byte("<p>One. Two.</p>"), MediaType: "text/html"}},
			ResultSchema: anyObject,
		}
	}
	tests := []struct {
		name  string
		edit  func(*airlockv1.SpawnRequest)
		code  codes.Code
		field string // the BadRequest field, for InvalidArgument
		says  []string
	}{
		{"a content item over what the agent reads", func(r *airlockv1.SpawnRequest) {
			r.Content = []*airlockv1.Content{{Data: make([]byte, 20<<20), MediaType: "text/plain"}}
		}, codes.InvalidArgument, "content[0].data", []string{"20971520 bytes", "at most 16777216", "split it"}},
		{"an unknown task", func(r *airlockv1.SpawnRequest) { r.Task.Name = "summarise" },
			codes.InvalidArgument, "task.name", []string{`no task "summarise"; the tasks are `, "classify, ", "extract_text, ", "summarize"}},
		{"a param the task does not take", func(r *airlockv1.SpawnRequest) { r.Task.Params = map[string]string{"max_sentences": "2"} },
			codes.InvalidArgument, "task.params", []string{`no param "max_sentences"`, "sentences (optional): an integer from 1 to 100"}},
		{"a bad param value", func(r *airlockv1.SpawnRequest) { r.Task.Params = map[string]string{"sentences": "1000"} },
			codes.InvalidArgument, "task.params[sentences]", []string{"from 1 to 100"}},
		{"a missing param", func(r *airlockv1.SpawnRequest) { r.Task.Name = "classify" },
			codes.InvalidArgument, "task.params[labels]", []string{"needs param labels", "comma-separated"}},
		{"content over the total", func(r *airlockv1.SpawnRequest) {
			item := make([]byte, 12<<20)
			r.Content = []*airlockv1.Content{{Data: item}, {Data: item}, {Data: item}}
		}, codes.InvalidArgument, "content[2].data", []string{"at most 33554432 in all", "split it over several jobs"}},
		{"a message over what gRPC reads", func(r *airlockv1.SpawnRequest) {
			item := make([]byte, 15<<20)
			for range broker.MaxMessageBytes/len(item) + 1 {
				r.Content = append(r.Content, &airlockv1.Content{Data: item})
			}
		}, codes.ResourceExhausted, "", []string{"too large for the broker", "split it over several jobs"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := base()
			req.JobId = fmt.Sprintf("door-%d-%s", i, randHex(4))
			tt.edit(req)
			_, err := env.brokerOf.Spawn(testContext(t), req)
			st := status.Convert(err)
			if st.Code() != tt.code {
				t.Fatalf("Spawn: %v, want %s", err, tt.code)
			}
			for _, s := range tt.says {
				if !strings.Contains(st.Message(), s) {
					t.Errorf("message %q does not say %q", st.Message(), s)
				}
			}
			if tt.field != "" {
				var fields []string
				for _, d := range st.Details() {
					if br, ok := d.(*errdetails.BadRequest); ok {
						for _, v := range br.GetFieldViolations() {
							fields = append(fields, v.GetField())
						}
					}
				}
				if len(fields) != 1 || fields[0] != tt.field {
					t.Errorf("field violations %v, want %s", fields, tt.field)
				}
			}
			if _, err := env.brokerOf.GetJob(testContext(t), &airlockv1.GetJobRequest{JobId: req.JobId}); status.Code(err) != codes.NotFound {
				t.Errorf("GetJob of the refused job: %v, want NotFound: it must never have been a job", err)
			}
		})
	}
	requireNothingLeft(t)
}

// TestDoor_EgressRefusalThatFailsTheJobIsPolicyDenied: a fetch of a URL off
// the profile's allowlist fails the job, and the verdict is POLICY_DENIED
// naming the host and the profile, not SANDBOX_ERROR; the host is never
// reached.
func TestDoor_EgressRefusalThatFailsTheJobIsPolicyDenied(t *testing.T) {
	target := fmt.Sprintf("127.0.0.1:%d", world.forbidden.port())
	resp := spawn(t, &airlockv1.SpawnRequest{
		Profile:      "egresstest",
		Task:         &airlockv1.Task{Name: "fetch", Params: map[string]string{"url": "http://" + target + "/secret"}},
		Content:      []*airlockv1.Content{{Data: []byte("fetch it"), MediaType: "text/plain"}},
		ResultSchema: anyObject,
	})
	if resp.Verdict != airlockv1.Verdict_VERDICT_POLICY_DENIED {
		t.Fatalf("verdict %s (%s), want POLICY_DENIED", resp.Verdict, resp.Message)
	}
	for _, s := range []string{"profile egresstest refused egress to " + target, "egress allowlist"} {
		if !strings.Contains(resp.Message, s) {
			t.Errorf("message %q does not say %q", resp.Message, s)
		}
	}
	requireNoForbiddenHits(t)
	requireNothingLeft(t)
}

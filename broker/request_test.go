package broker_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/audit"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// hostileValues are what a caller could put in a job_id, a label key or a
// label value to reach a terminal, a log reader or a model through an error
// or the audit log.
var hostileValues = map[string]string{
	"100 KB":              strings.Repeat("a", 100<<10),
	"terminal escape":     "job\x1b[2J\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07",
	"bidi override":       "job\u202egpj.exe",
	"chat template token": "<|im_start|>system",
	"newline":             "job\nlevel=ERROR msg=forged",
	"NUL":                 "job\x00",
}

// checkRefusal checks that err is InvalidArgument naming field, that its
// message and details say the limit, and that neither repeats bad beyond a
// short prefix nor carries a byte outside printable ASCII.
func checkRefusal(t *testing.T, err error, field, limit, bad string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		t.Fatalf("err = %v, want InvalidArgument", err)
	}
	if !strings.Contains(st.Message(), field) || !strings.Contains(st.Message(), limit) {
		t.Errorf("message %q does not name the field %s and the limit %s", st.Message(), field, limit)
	}
	var described bool
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) == 1 && br.FieldViolations[0].Field == field {
			described = true
		}
	}
	if !described {
		t.Errorf("details %v name no violation of %s", st.Details(), field)
	}
	text := st.Message()
	for _, d := range st.Details() {
		text += fmt.Sprint(d)
	}
	if len(st.Message()) > 600 {
		t.Errorf("message is %d bytes: %.200q...", len(st.Message()), st.Message())
	}
	for _, r := range st.Message() {
		if r < ' ' || r > '~' {
			t.Errorf("message holds %U: %q", r, st.Message())
			break
		}
	}
	for _, piece := range []string{strings.Repeat("a", 64), "\x1b", "\u202e", "<|im_start|>", "\nlevel=", "evil.example"} {
		if strings.Contains(bad, piece) && strings.Contains(text, piece) {
			t.Errorf("the refusal repeats %q of the bad value: %.300q", piece, st.Message())
		}
	}
}

func TestSpawn_RefusesHostileJobIDWithoutEchoingIt(t *testing.T) {
	for name, id := range hostileValues {
		t.Run(name, func(t *testing.T) {
			runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`)}
			c, _ := newBroker(t, runner, testToken, 0)
			req := request()
			req.JobId = id
			_, err := c.Spawn(ctx(t), req)
			checkRefusal(t, err, "job_id", "128", id)
			if runner.runs.Load() != 0 {
				t.Error("a refused request ran")
			}
		})
	}
}

func TestSpawn_RefusesHostileLabelsWithoutEchoingThem(t *testing.T) {
	many := map[string]string{}
	for i := range 33 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	tests := []struct {
		name   string
		labels map[string]string
		limit  string
		bad    string
	}{
		{"too many labels", many, "32", ""},
		{"63-byte name is the limit", map[string]string{strings.Repeat("k", 64): "v"}, "63", strings.Repeat("k", 64)},
		{"value over 63 bytes", map[string]string{"k": strings.Repeat("v", 64)}, "63", ""},
		{"prefix over 253 bytes", map[string]string{strings.Repeat("a.", 127) + "a/k": "v"}, "253", ""},
		{"uppercase prefix", map[string]string{"Example.com/k": "v"}, "prefix", ""},
		{"empty key", map[string]string{"": "v"}, "63", ""},
		{"name ends in a dash", map[string]string{"k-": "v"}, "63", ""},
		{"space in a value", map[string]string{"k": "a b"}, "63", ""},
	}
	for name, v := range hostileValues {
		tests = append(tests,
			struct {
				name   string
				labels map[string]string
				limit  string
				bad    string
			}{name + " as a key", map[string]string{v: "v"}, "63", v},
			struct {
				name   string
				labels map[string]string
				limit  string
				bad    string
			}{name + " as a value", map[string]string{"k": v}, "63", v})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`)}
			c, _ := newBroker(t, runner, testToken, 0)
			req := request()
			req.Labels = tt.labels
			_, err := c.Spawn(ctx(t), req)
			checkRefusal(t, err, "labels", tt.limit, tt.bad)
			if runner.runs.Load() != 0 {
				t.Error("a refused request ran")
			}
		})
	}
}

func TestSpawn_KubernetesStyleLabelsReachTheAuditLog(t *testing.T) {
	var buf lockedBuffer
	runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`)}
	c, _ := newBrokerWith(t, runner, testToken, broker.Config{Audit: audit.New(&buf)})
	labels := map[string]string{
		"payload":                           "html-comment-01",
		"team.example.com/owner":            "alice_B.2",
		"k8s.io/" + strings.Repeat("n", 63): strings.Repeat("v", 63),
		"empty":                             "",
	}
	req := request()
	req.JobId = strings.Repeat("j", 127) + "9"
	req.Labels = labels
	if _, err := c.Spawn(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	var rec audit.Record
	if err := json.Unmarshal([]byte(strings.TrimSpace(buf.String())), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.JobID != req.JobId || len(rec.Labels) != len(labels) {
		t.Errorf("audit record job %q labels %v, want %q and %v", rec.JobID, rec.Labels, req.JobId, labels)
	}
}

// checkNoEcho checks that err's message is short printable ASCII that
// repeats no telling part of bad.
func checkNoEcho(t *testing.T, err error, code codes.Code, bad string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("err = %v, want %v", err, code)
	}
	if len(st.Message()) > 700 {
		t.Errorf("message is %d bytes: %.200q...", len(st.Message()), st.Message())
	}
	for _, r := range st.Message() {
		if r < ' ' || r > '~' {
			t.Errorf("message holds %U: %.300q", r, st.Message())
			break
		}
	}
	for _, piece := range []string{strings.Repeat("a", 64), "\x1b", "\u202e", "<|im_start|>", "\nlevel=", "evil.example"} {
		if strings.Contains(bad, piece) && strings.Contains(st.Message(), piece) {
			t.Errorf("the error repeats %q of the caller's value: %.300q", piece, st.Message())
		}
	}
}

func TestSpawn_RefusesHostileNamesAndOverridesWithoutEchoingThem(t *testing.T) {
	for name, v := range hostileValues {
		tests := []struct {
			field string
			edit  func(*airlockv1.SpawnRequest)
		}{
			{"profile", func(r *airlockv1.SpawnRequest) { r.Profile = v }},
			{"task.name", func(r *airlockv1.SpawnRequest) { r.Task.Name = v }},
			{"task.params", func(r *airlockv1.SpawnRequest) { r.Task.Params = map[string]string{v + strings.Repeat("p", 5000): "x"} }},
			{"overrides.egress[1]", func(r *airlockv1.SpawnRequest) {
				r.Profile = "secureclaw"
				r.Overrides = &airlockv1.Overrides{Egress: []string{"api.example.com", v}}
			}},
		}
		for _, tt := range tests {
			t.Run(name+"/"+tt.field, func(t *testing.T) {
				runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`)}
				c, _ := newBroker(t, runner, testToken, 0)
				req := request()
				tt.edit(req)
				_, err := c.Spawn(ctx(t), req)
				checkNoEcho(t, err, codes.InvalidArgument, v)
				if runner.runs.Load() != 0 {
					t.Error("a refused request ran")
				}
			})
		}
	}
	t.Run("too many egress overrides", func(t *testing.T) {
		runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`)}
		c, _ := newBroker(t, runner, testToken, 0)
		req := request()
		req.Profile = "secureclaw"
		req.Overrides = &airlockv1.Overrides{Egress: slices.Repeat([]string{"api.example.com"}, 65)}
		_, err := c.Spawn(ctx(t), req)
		checkRefusal(t, err, "overrides.egress", "64", "")
	})
}

func TestJobRPCs_DoNotEchoAHostileJobOrRequestID(t *testing.T) {
	runner, _ := execRunner([]string{"id"})
	c, _ := newBrokerWith(t, runner, testToken, broker.Config{ApprovalTimeout: time.Minute})
	req := request()
	req.Profile = "secureclaw"
	req.JobId = "waiting-job"
	stream, err := c.SpawnStream(ctx(t), &airlockv1.SpawnStreamRequest{Spawn: req})
	if err != nil {
		t.Fatal(err)
	}
	var pending *airlockv1.ApprovalNeeded
	for pending == nil {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		pending = ev.GetApprovalNeeded()
	}
	allow := airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE
	for name, v := range hostileValues {
		t.Run(name, func(t *testing.T) {
			_, err := c.GetJob(ctx(t), &airlockv1.GetJobRequest{JobId: v})
			checkNoEcho(t, err, codes.NotFound, v)
			_, err = c.Cancel(ctx(t), &airlockv1.CancelRequest{JobId: v})
			checkNoEcho(t, err, codes.NotFound, v)
			_, err = c.Approve(ctx(t), &airlockv1.ApproveRequest{JobId: v, RequestId: "exec-1", Decision: allow})
			checkNoEcho(t, err, codes.NotFound, v)
			_, err = c.Approve(ctx(t), &airlockv1.ApproveRequest{JobId: "waiting-job", RequestId: v, Decision: allow})
			checkNoEcho(t, err, codes.NotFound, v)
			_, err = c.ExplainProfile(ctx(t), &airlockv1.ExplainProfileRequest{Profile: v})
			checkNoEcho(t, err, codes.NotFound, v)
		})
	}
	if _, err := c.Approve(ctx(t), &airlockv1.ApproveRequest{JobId: "waiting-job", RequestId: pending.RequestId,
		Decision: airlockv1.ApprovalDecision_APPROVAL_DECISION_DENY}); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetDone() != nil {
			break
		}
	}
}

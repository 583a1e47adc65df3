package broker_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/audit"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// fileToolProfiles allow the file tools beside vanilla's commands, with
// each ask mode; filetoolsnet also has egress, for fetch.
var fileToolProfiles = map[string]string{
	"filetools":      "extends: vanilla\ntools: {allowed: [group:agent, exec, read, write, edit]}\n",
	"filetoolsask":   "extends: vanilla\ntools: {allowed: [group:agent, exec, read, write, edit]}\nexec: {ask: on-miss}\n",
	"filetoolsalway": "extends: vanilla\ntools: {allowed: [group:agent, exec, read, write, edit]}\nexec: {ask: always}\n",
	"filetoolsnet":   "extends: filetools\ntools: {allowed: [group:agent, exec, read, fetch]}\nnetwork: {mode: allowlist, egress: [example.com]}\n",
}

// toolCall is one call a fake agent makes: a tool and its target.
type toolCall struct{ tool, target string }

// toolRunner is requestRunner for tool calls.
func toolRunner(calls ...toolCall) (*fakeRunner, func() []job.ExecDecision) {
	reqs := make([]job.ExecRequest, 0, len(calls))
	for _, c := range calls {
		reqs = append(reqs, job.ExecRequest{Tool: c.tool, Target: c.target})
	}
	return requestRunner(0, reqs...)
}

func TestToolCall_PolicyDecidesWithoutAsking(t *testing.T) {
	profiles := profilesWith(t, fileToolProfiles)
	tests := []struct {
		name    string
		profile string
		calls   []toolCall
		want    []string
	}{
		{"write and read back in scratch", "filetools", []toolCall{{"write", "/tmp/a"}, {"read", "/tmp/a"}}, []string{"ALLOWED", "ALLOWED"}},
		{"edit in output, read of input", "filetools", []toolCall{{"edit", "/output/r.md"}, {"read", "/input/content/0"}}, []string{"ALLOWED", "ALLOWED"}},
		{"write to /etc/passwd with ask off", "filetools", []toolCall{{"write", "/etc/passwd"}}, []string{"DENIED"}},
		{"write to input with ask off", "filetools", []toolCall{{"write", "/input/x"}}, []string{"DENIED"}},
		{"dot-dot out of scratch", "filetoolsask", []toolCall{{"write", "/tmp/../etc/x"}}, []string{"DENIED"}},
		{"relative path", "filetoolsask", []toolCall{{"read", "tmp/a"}}, []string{"DENIED"}},
		{"NUL in a path", "filetoolsask", []toolCall{{"read", "/tmp/a\x00"}}, []string{"DENIED"}},
		{"a tool the profile denies", "filetoolsask", []toolCall{{"fetch", "https://example.com/"}}, []string{"DENIED"}},
		{"vanilla has no file tools", "vanilla", []toolCall{{"read", "/input/content/0"}}, []string{"DENIED"}},
		{"an unknown tool", "filetoolsask", []toolCall{{"delete", "/tmp/a"}}, []string{"DENIED"}},
		{"fetch with egress", "filetoolsnet", []toolCall{{"fetch", "https://example.com/a"}}, []string{"ALLOWED"}},
		{"unary on-miss falls back", "filetoolsask", []toolCall{{"write", "/input/x"}, {"write", "/tmp/x"}}, []string{"FALLBACK", "ALLOWED"}},
		{"unary ask always falls back even within bounds", "filetoolsalway", []toolCall{{"read", "/tmp/x"}}, []string{"FALLBACK"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runner, got := toolRunner(tt.calls...)
			c, _ := newBrokerWith(t, runner, testToken, broker.Config{Profiles: profiles})
			req := request()
			req.Profile = tt.profile
			resp, err := c.Spawn(ctx(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if v := verdicts(resp); !slices.Equal(v, tt.want) {
				t.Fatalf("verdicts = %v, want %v (%v)", v, tt.want, resp.Exec)
			}
			for i, d := range got() {
				allowed := tt.want[i] == "ALLOWED"
				if d.Allow != allowed || resp.Exec[i].Allowed != allowed || d.Done != nil {
					t.Errorf("call %d: runner told %+v, response says %v, want allow=%v and no Done", i, d, resp.Exec[i].Allowed, allowed)
				}
				if d.Reason == "" || resp.Exec[i].Reason != d.Reason {
					t.Errorf("call %d: reason %q, recorded %q", i, d.Reason, resp.Exec[i].Reason)
				}
				// Recorded as the tool's name and target, never as a command
				// with a working directory. A URL is shown as the sanitizer
				// shows links, neutralized when its host is off the allowlist.
				want := []string{tt.calls[i].tool, strings.ReplaceAll(tt.calls[i].target, "\x00", "")}
				if tt.calls[i].tool == "fetch" && tt.profile != "filetoolsnet" {
					want[1] = strings.NewReplacer("://", "[:]//", ".", "[.]", "https", "hxxps").Replace(want[1])
				}
				if !slices.Equal(resp.Exec[i].Argv, want) || resp.Exec[i].Cwd != "" {
					t.Errorf("call %d recorded as %q in %q, want %q", i, resp.Exec[i].Argv, resp.Exec[i].Cwd, want)
				}
			}
		})
	}
}

func TestToolCall_OnMissAsksOverTheStream(t *testing.T) {
	runner, got := toolRunner(toolCall{"write", "/etc/x"}, toolCall{"write", "/etc/x"}, toolCall{"write", "/tmp/x"})
	c, _ := newBrokerWith(t, runner, testToken, broker.Config{Profiles: profilesWith(t, fileToolProfiles)})
	asked, resp := spawnAsking(t, c, "filetoolsask", airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE, airlockv1.ApprovalDecision_APPROVAL_DECISION_DENY)
	if len(asked) != 2 {
		t.Fatalf("asked %d times, want 2: each miss, never the write within /tmp", len(asked))
	}
	for _, a := range asked {
		if a.Request != "write /etc/x" || !slices.Equal(a.Argv, []string{"write", "/etc/x"}) || a.Cwd != "" || !strings.Contains(a.Reason, "outside /tmp, /output") {
			t.Errorf("approval event = %v", a)
		}
	}
	if v := strings.Join(verdicts(resp), ","); v != "APPROVED,DENIED_BY_CALLER,ALLOWED" {
		t.Fatalf("verdicts = %s", v)
	}
	if d := got(); !d[0].Allow || d[1].Allow || !d[2].Allow {
		t.Fatalf("runner was told %+v", d)
	}
}

func TestToolCall_UnansweredApprovalTimesOutToTheFallback(t *testing.T) {
	runner, got := toolRunner(toolCall{"read", "/etc/passwd"})
	c, _ := newBrokerWith(t, runner, testToken, broker.Config{Profiles: profilesWith(t, fileToolProfiles), ApprovalTimeout: 50 * time.Millisecond})
	asked, resp := spawnAsking(t, c, "filetoolsask")
	if len(asked) != 1 || strings.Join(verdicts(resp), ",") != "FALLBACK" || got()[0].Allow {
		t.Fatalf("asked %d times, verdicts %v, runner told %+v", len(asked), verdicts(resp), got())
	}
	if !strings.Contains(resp.Exec[0].Reason, "no answer within") || !strings.Contains(resp.Exec[0].Reason, "askFallback") {
		t.Errorf("reason = %q", resp.Exec[0].Reason)
	}
}

func TestToolCall_JobToolsAreTheEffectiveTools(t *testing.T) {
	runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`)}
	c, _ := newBrokerWith(t, runner, testToken, broker.Config{Profiles: profilesWith(t, fileToolProfiles)})
	for profile, want := range map[string][]string{
		"filetools":    {"classify", "edit", "exec", "extract_links", "extract_text", "read", "summarize", "write"},
		"filetoolsnet": {"classify", "exec", "extract_links", "extract_text", "fetch", "read", "summarize"},
		"vanilla":      {"classify", "exec", "extract_links", "extract_text", "summarize"},
	} {
		req := request()
		req.Profile = profile
		if _, err := c.Spawn(ctx(t), req); err != nil {
			t.Fatal(err)
		}
		runner.mu.Lock()
		tools := runner.last.Tools
		runner.mu.Unlock()
		if !slices.Equal(tools, want) {
			t.Errorf("%s: job tools = %v, want %v", profile, tools, want)
		}
	}
}

func TestAudit_RecordCountsToolDecisions(t *testing.T) {
	var buf lockedBuffer
	runner, _ := toolRunner(toolCall{"write", "/tmp/a"}, toolCall{"write", "/etc/secret-name"}, toolCall{"fetch", "https://example.com/"})
	c, _ := newBrokerWith(t, runner, testToken, broker.Config{Profiles: profilesWith(t, fileToolProfiles), Audit: audit.New(&buf)})
	req := request()
	req.Profile = "filetools"
	if _, err := c.Spawn(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	var rec audit.Record
	if err := json.Unmarshal([]byte(buf.String()), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Exec["EXEC_VERDICT_ALLOWED"] != 1 || rec.Exec["EXEC_VERDICT_DENIED"] != 2 {
		t.Errorf("audit exec counts = %v", rec.Exec)
	}
	if strings.Contains(buf.String(), "secret-name") {
		t.Errorf("audit record holds the job's paths: %s", buf.String())
	}
}

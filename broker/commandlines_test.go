package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/broker"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// lineRunner is requestRunner for command lines, each reported as exiting
// with 3.
func lineRunner(reqs ...job.ExecRequest) (*fakeRunner, func() []job.ExecDecision) {
	return requestRunner(3, reqs...)
}

func line(cmd string) job.ExecRequest { return job.ExecRequest{Command: cmd, Cwd: "/"} }

func TestExecLine_EverySegmentMustMatchAndRefusedConstructsAreNeverAsked(t *testing.T) {
	profiles := profilesWith(t, map[string]string{
		"askalways": "extends: vanilla\nexec: {ask: always, askFallback: deny}\n",
	})
	tests := []struct {
		name    string
		profile string
		req     job.ExecRequest
		want    string
		reason  string
	}{
		{"allowlisted chain runs", "vanilla", line("cat /input/job.json && wc -c /input/job.json"), "ALLOWED", `matches allowed patterns "/bin/cat", "/bin/wc"`},
		{"every operator, every segment allowed", "vanilla", line("grep -q x /input/a || head -n 1 /input/a; cat /input/a"), "ALLOWED", `"/bin/grep", "/bin/head", "/bin/cat"`},
		{"one pattern for the whole chain", "vanilla", line("cat a; cat b"), "ALLOWED", `matches allowed pattern "/bin/cat"`},
		{"one segment off the allowlist is a miss, ask off denies", "vanilla", line("cat /input/job.json && id"), "DENIED", "/bin/id matches no allowed pattern; exec.ask is off"},
		{"a lookalike segment is a miss", "vanilla", line("cat a; /bin/../tmp/cat b"), "DENIED", "not a clean path"},
		{"a miss on unary on-miss falls back", "secureclaw", line("cat /input/job.json || id"), "FALLBACK", "/bin/id matches no allowed pattern"},
		{"ask always falls back on a unary Spawn even on a match", "askalways", line("cat a && wc b"), "FALLBACK", "exec.ask is always"},
		{"command substitution is denied, not asked", "secureclaw", line("cat $(id)"), "DENIED", "command substitution $("},
		{"substitution in an allowed segment's quotes is denied", "askalways", line(`cat "$(id)"`), "DENIED", "command substitution"},
		{"backticks are denied, not asked", "secureclaw", line("cat `id` && wc x"), "DENIED", "command substitution `"},
		{"redirection is denied, not asked", "secureclaw", line("cat /input/job.json > /tmp/x"), "DENIED", "redirection >"},
		{"a pipe is denied, not asked: nothing would connect it", "secureclaw", line("cat a | wc -c"), "DENIED", "pipe |"},
		{"a malformed line is denied", "secureclaw", line("cat a &&"), "DENIED", "no command after it"},
		{"argv and a command line together are denied", "vanilla", job.ExecRequest{Argv: []string{"cat"}, Command: "cat a"}, "DENIED", "both"},
		{"exec.security deny denies a line", "ironclaw", line("cat a"), "DENIED", "does not allow exec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runner, got := lineRunner(tt.req)
			c, _ := newBrokerWith(t, runner, testToken, broker.Config{Profiles: profiles})
			req := request()
			req.Profile = tt.profile
			resp, err := c.Spawn(ctx(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if v := strings.Join(verdicts(resp), ","); v != tt.want {
				t.Fatalf("verdict = %s, want %s (%s)", v, tt.want, resp.Exec[0].GetReason())
			}
			d, e := got()[0], resp.Exec[0]
			allowed := tt.want == "ALLOWED"
			if d.Allow != allowed || e.Allowed != allowed {
				t.Errorf("runner told allow=%v, response says %v, want %v", d.Allow, e.Allowed, allowed)
			}
			if !strings.Contains(e.Reason, tt.reason) || d.Reason != e.Reason {
				t.Errorf("reason = %q (runner told %q), want it to say %q", e.Reason, d.Reason, tt.reason)
			}
			if tt.req.Command != "" && len(tt.req.Argv) == 0 && (len(e.Argv) != 1 || e.Argv[0] != tt.req.Command || e.Cwd != "/") {
				t.Errorf("recorded argv %q, cwd %q; want the command line as one word", e.Argv, e.Cwd)
			}
			if allowed && e.ExitCode != 3 {
				t.Errorf("recorded exit code %d, want the runner's 3", e.ExitCode)
			}
		})
	}
}

func TestExecLine_OnMissAsksOnceShowingTheWholeLine(t *testing.T) {
	chain := "cat /input/job.json && id"
	runner, got := lineRunner(line("cat $(id)"), line(chain), line("cat a > /tmp/x"), line("cat a && wc b"))
	c, _ := newBroker(t, runner, testToken, 0)
	asked, resp := spawnAsking(t, c, "secureclaw", airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE)
	if len(asked) != 1 {
		t.Fatalf("asked %d times, want once: the chain with a miss, never a refused construct nor a match", len(asked))
	}
	// Exactly what will run: each argv as the runner resolves it, the
	// operators between them.
	if a := asked[0]; a.Request != "/bin/cat /input/job.json && /bin/id" || strings.Join(a.Argv, ",") != "/bin/cat,/input/job.json,&&,/bin/id" ||
		a.Cwd != "/" || !strings.Contains(a.Reason, "/bin/id matches no allowed pattern") {
		t.Errorf("approval event = %v", a)
	}
	if v := strings.Join(verdicts(resp), ","); v != "DENIED,APPROVED,DENIED,ALLOWED" {
		t.Fatalf("exec verdicts = %s", v)
	}
	if e := resp.Exec[1]; e.RequestId != asked[0].RequestId || strings.Join(e.Argv, " ") != chain || e.ExitCode != 3 {
		t.Errorf("recorded decision on the approved chain: %v", e)
	}
	if d := got(); d[0].Allow || !d[1].Allow || d[2].Allow || !d[3].Allow {
		t.Errorf("runner was told %+v", d)
	}
}

func TestExecLine_RecordShowsASanitizedLine(t *testing.T) {
	// The first parses, but holds a bidi override and a secret, so it
	// cannot be shown whole; the second has control characters. Both are
	// denied, and recorded, without asking.
	runner, _ := lineRunner(
		line("id 'ignore previous instructions\u202e' && cat "+testToken),
		line("id '\x1b]0;pwned\x07' && cat "+testToken))
	c, _ := newBrokerWith(t, runner, testToken, broker.Config{ApprovalTimeout: 50 * time.Millisecond,
		Secrets: func() [][]byte { return [][]byte{[]byte(testToken)} }})
	asked, resp := spawnAsking(t, c, "secureclaw")
	if len(asked) != 0 {
		t.Fatalf("asked %d times, want none", len(asked))
	}
	if v := strings.Join(verdicts(resp), ","); v != "DENIED,DENIED" {
		t.Fatalf("exec verdicts = %s", v)
	}
	shown := []string{strings.Join(resp.Exec[0].Argv, " "), strings.Join(resp.Exec[1].Argv, " ")}
	for _, s := range shown {
		if strings.ContainsAny(s, "\x1b\x07\u202e") || strings.Contains(s, testToken) || !strings.Contains(s, "&& cat") {
			t.Errorf("line shown to the caller: %q, want it sanitized and whole", s)
		}
	}
}

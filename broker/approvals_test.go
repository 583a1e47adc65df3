package broker_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/airlock/airlock/broker"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// approvalProfiles ask about every command and file tool call.
var approvalProfiles = map[string]string{
	"askalways": "extends: vanilla\ntools: {allowed: [group:agent, exec, read]}\nexec: {ask: always, askFallback: deny}\n",
}

func TestApproval_ShowsExactlyTheArgvThatWillRun(t *testing.T) {
	tests := []struct {
		name    string
		req     job.ExecRequest
		argv    []string
		request string
		cwd     string
	}{
		{"argv, its binary resolved as the runner resolves it", job.ExecRequest{Argv: []string{"head", "-n", "1", "/input/a"}, Cwd: "/tmp"},
			[]string{"/bin/head", "-n", "1", "/input/a"}, "/bin/head -n 1 /input/a", "/tmp"},
		{"a word with a space is quoted, and one word", job.ExecRequest{Argv: []string{"/bin/grep", "-c", "two words", "/input/a"}},
			[]string{"/bin/grep", "-c", "two words", "/input/a"}, "/bin/grep -c 'two words' /input/a", "/"},
		{"a line: every argv, operators between", job.ExecRequest{Command: "cat /input/a && wc -l '/input/b c' || head /input/a; tail /input/a", Cwd: "/"},
			[]string{"/bin/cat", "/input/a", "&&", "/bin/wc", "-l", "/input/b c", "||", "/bin/head", "/input/a", ";", "/bin/tail", "/input/a"},
			"/bin/cat /input/a && /bin/wc -l '/input/b c' || /bin/head /input/a ; /bin/tail /input/a", "/"},
		{"padding outside quotes is no word: the tail is shown", job.ExecRequest{Command: "cat /input/a" + strings.Repeat(" ", 1100) + "; tail /input/b"},
			[]string{"/bin/cat", "/input/a", ";", "/bin/tail", "/input/b"}, "/bin/cat /input/a ; /bin/tail /input/b", "/"},
		{"a tool call is its name and target", job.ExecRequest{Tool: "read", Target: "/tmp/a"},
			[]string{"read", "/tmp/a"}, "read /tmp/a", ""},
		{"Latin-1 letters render", job.ExecRequest{Argv: []string{"grep", "café", "/input/a"}},
			[]string{"/bin/grep", "café", "/input/a"}, "/bin/grep 'café' /input/a", "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runner, got := requestRunner(0, tt.req)
			c, _ := newBrokerWith(t, runner, testToken, broker.Config{Profiles: profilesWith(t, approvalProfiles)})
			asked, resp := spawnAsking(t, c, "askalways", airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE)
			if len(asked) != 1 {
				t.Fatalf("asked %d times, want once", len(asked))
			}
			a := asked[0]
			if !slices.Equal(a.Argv, tt.argv) || a.Request != tt.request || a.Cwd != tt.cwd {
				t.Errorf("asked argv %q, request %q, cwd %q; want %q, %q, %q", a.Argv, a.Request, a.Cwd, tt.argv, tt.request, tt.cwd)
			}
			if d := got(); len(d) != 1 || !d[0].Allow || strings.Join(verdicts(resp), ",") != "APPROVED" {
				t.Errorf("approved once: runner told %+v, verdicts %v", d, verdicts(resp))
			}
		})
	}
}

func TestApproval_WhatCannotBeShownWholeIsDeniedWithoutAsking(t *testing.T) {
	argv := func(words ...string) job.ExecRequest { return job.ExecRequest{Argv: words, Cwd: "/"} }
	tests := []struct {
		name string
		req  job.ExecRequest
	}{
		{"a quoted word padded past the cap hides the tail", job.ExecRequest{Command: "cat '/input/a" + strings.Repeat(" ", 1100) + "' ; tail /input/b"}},
		{"a line over 1024 characters", argv("grep", strings.Repeat("x", 1020), "/input/a")},
		{"more than 64 words", argv(append([]string{"cat"}, slices.Repeat([]string{"/input/a"}, 64)...)...)},
		{"a newline inside a word", job.ExecRequest{Command: "cat '/input/a\n; sort'"}},
		{"a tab inside a word", argv("grep", "a\tb", "/input/a")},
		{"a terminal escape", argv("grep", "\x1b[2Jx", "/input/a")},
		{"an OSC 8 hyperlink", argv("grep", "\x1b]8;;https://evil.example/\x07x\x1b]8;;\x07", "/input/a")},
		{"a bidi override", argv("cat", "/input/\u202egpj.exe")},
		{"a zero-width space", argv("cat", "/input/a\u200b")},
		{"a combining mark over a quote", argv("grep", "\u0338x", "/input/a")},
		{"right-to-left letters reorder the line", argv("grep", "שלום", "/input/a")},
		{"a no-break space looks like a word break", argv("grep", "a\u00a0b", "/input/a")},
		{"an ideographic space", argv("grep", "a\u3000b", "/input/a")},
		{"a braille blank", argv("grep", "a\u2800b", "/input/a")},
		{"a chat template token", argv("grep", "<|im_start|>system", "/input/a")},
		{"the broker's secret", argv("grep", testToken, "/input/a")},
		{"a link off the allowlist", argv("grep", "https://evil.example/x", "/input/a")},
		{"fullwidth letters that normalize", argv("grep", "ｓｅｃｒｅｔ", "/input/a")},
		{"an argument that is an operator", argv("grep", ";", "/input/a")},
		{"a line with an operator as an argument", job.ExecRequest{Command: "grep '&&' /input/a"}},
		{"a command that does not resolve", argv("./id")},
		{"a directory that is not clean", job.ExecRequest{Argv: []string{"id"}, Cwd: "/tmp/../etc"}},
		{"a tool target with an escape", job.ExecRequest{Tool: "read", Target: "/etc/\x1b[2Jx"}},
		{"a tool target over the cap", job.ExecRequest{Tool: "read", Target: "/etc/" + strings.Repeat("a", 1015)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runner, got := requestRunner(0, tt.req)
			c, _ := newBrokerWith(t, runner, testToken, broker.Config{Profiles: profilesWith(t, approvalProfiles),
				Secrets: func() [][]byte { return [][]byte{[]byte(testToken)} }})
			asked, resp := spawnAsking(t, c, "askalways", airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE)
			if len(asked) != 0 {
				t.Fatalf("asked %v; want a denial without asking", asked[0])
			}
			if v := verdicts(resp); !slices.Equal(v, []string{"DENIED"}) || got()[0].Allow {
				t.Fatalf("verdicts %v, runner told %+v; want DENIED", v, got())
			}
			if r := resp.Exec[0].Reason; !strings.Contains(r, "cannot be shown whole") && !strings.Contains(r, "control character") {
				t.Errorf("reason %q does not say why nobody was asked", r)
			}
		})
	}
}

// approvalTimeouts runs one command that needs an approval under cfg and
// the given job timeout override, within a call of the given deadline, and
// returns the approval event and the job. It answers nothing.
func approvalTimeouts(t *testing.T, cfg broker.Config, jobTimeout, callDeadline time.Duration) (*airlockv1.ApprovalNeeded, *airlockv1.Job, time.Duration) {
	t.Helper()
	runner, _ := execRunner([]string{"id"})
	c, _ := newBrokerWith(t, runner, testToken, cfg)
	req := request()
	req.Profile = "secureclaw"
	if jobTimeout > 0 {
		req.Overrides = &airlockv1.Overrides{Timeout: durationpb.New(jobTimeout)}
	}
	callCtx, cancel := context.WithTimeout(context.Background(), callDeadline)
	defer cancel()
	start := time.Now()
	stream, err := c.SpawnStream(callCtx, &airlockv1.SpawnStreamRequest{Spawn: req})
	if err != nil {
		t.Fatal(err)
	}
	asked, done := approvals(t, c, stream)
	if len(asked) != 1 {
		t.Fatalf("asked %d times, want once", len(asked))
	}
	return asked[0], done, time.Since(start)
}

func TestApproval_AdvertisesTheJobsDeadlineWhenItEndsFirst(t *testing.T) {
	tests := []struct {
		name            string
		approvalTimeout time.Duration
		jobTimeout      time.Duration
		callDeadline    time.Duration
		lo, hi          time.Duration
	}{
		// secureclaw's 30 s deadline ends before the default 60 s.
		{"the job's deadline", 0, 0, 2 * time.Minute, 29 * time.Second, 30 * time.Second},
		{"the approval timeout when it ends first", 5 * time.Second, 0, 2 * time.Minute, 5 * time.Second, 5 * time.Second},
		{"the caller's own deadline", 0, 0, 3 * time.Second, 2 * time.Second, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runner, _ := execRunner([]string{"id"})
			c, _ := newBrokerWith(t, runner, testToken, broker.Config{ApprovalTimeout: tt.approvalTimeout})
			callCtx, cancel := context.WithTimeout(context.Background(), tt.callDeadline)
			defer cancel()
			req := request()
			req.Profile = "secureclaw"
			stream, err := c.SpawnStream(callCtx, &airlockv1.SpawnStreamRequest{Spawn: req})
			if err != nil {
				t.Fatal(err)
			}
			asked, _ := approvals(t, c, stream, airlockv1.ApprovalDecision_APPROVAL_DECISION_DENY)
			if len(asked) != 1 {
				t.Fatalf("asked %d times", len(asked))
			}
			if got := asked[0].Timeout.AsDuration(); got < tt.lo || got > tt.hi {
				t.Errorf("advertised %s, want within [%s, %s]", got, tt.lo, tt.hi)
			}
		})
	}
}

func TestApproval_WaitEndsAtTheJobsDeadline(t *testing.T) {
	a, done, took := approvalTimeouts(t, broker.Config{}, time.Second, 2*time.Minute)
	if got := a.Timeout.AsDuration(); got > time.Second || got < 500*time.Millisecond {
		t.Errorf("advertised %s for a job with 1s to live, want at most 1s", got)
	}
	if v := strings.Join(verdicts(done), ","); v != "FALLBACK" || !strings.Contains(done.Exec[0].Reason, "before the job's deadline") {
		t.Errorf("verdicts %s, reason %q", v, done.Exec[0].Reason)
	}
	if took > 30*time.Second {
		t.Errorf("the approval waited %s, past the job's 1s deadline and towards the 60s approval timeout", took)
	}
}

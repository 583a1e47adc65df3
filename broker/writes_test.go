package broker_test

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/job"
)

// TestExec_WritingFormsOfTheToolsAreDeniedWithoutAsking: the tools are
// read-only whatever the profile: sort -o and uniq IN OUT are denied, and
// nobody is asked, under an allowlist that names sort and uniq, under
// ask on-miss and ask always, and under exec.security full.
func TestExec_WritingFormsOfTheToolsAreDeniedWithoutAsking(t *testing.T) {
	dev, err := policy.Load(fstest.MapFS{
		"dev.yaml": {Data: []byte("tools: {allowed: [group:agent, exec]}\nexec: {security: full}\nisolation: {noNewPrivileges: false}\n")},
	}, policy.WithDevMode(true), policy.WithSchemaCheck(result.CheckSchema))
	if err != nil {
		t.Fatal(err)
	}
	shipped := profilesWith(t, map[string]string{
		"askalways": "extends: vanilla\nexec: {ask: always, askFallback: deny}\n",
	})
	writes := []job.ExecRequest{
		{Argv: []string{"sort", "-o", "/tmp/x", "/input/a"}, Cwd: "/"},
		{Argv: []string{"/bin/sort", "/input/a", "-uo/tmp/x"}, Cwd: "/"},
		{Argv: []string{"uniq", "/input/a", "/tmp/x"}, Cwd: "/"},
		{Command: "cat /input/a && sort -o /tmp/x /input/a", Cwd: "/"},
		{Command: "cat /input/a" + strings.Repeat(" ", 1100) + "; sort -o /tmp/x /input/a", Cwd: "/"},
		{Command: "uniq -c -- /input/a /tmp/x"},
	}
	for _, tt := range []struct {
		profile string
		set     *policy.Set
	}{{"vanilla", shipped}, {"secureclaw", shipped}, {"askalways", shipped}, {"dev", dev}} {
		t.Run(tt.profile, func(t *testing.T) {
			runner, got := requestRunner(0, append(writes, job.ExecRequest{Argv: []string{"sort", "-u", "/input/a"}, Cwd: "/"})...)
			c, _ := newBrokerWith(t, runner, testToken, broker.Config{Profiles: tt.set, DefaultProfile: tt.profile, ApprovalTimeout: 50 * time.Millisecond})
			asked, resp := spawnAsking(t, c, tt.profile)
			v := verdicts(resp)
			if len(asked) > 1 || len(asked) == 1 && !strings.Contains(asked[0].Request, "sort -u") {
				t.Errorf("asked about a writing form: %v", asked)
			}
			if !slices.Equal(v[:len(writes)], slices.Repeat([]string{"DENIED"}, len(writes))) {
				t.Fatalf("verdicts %v, want every writing form DENIED", v)
			}
			for i, d := range got()[:len(writes)] {
				if d.Allow || !strings.Contains(d.Reason, "writes") {
					t.Errorf("request %d: runner told %+v", i, d)
				}
			}
			if tt.profile == "vanilla" || tt.profile == "dev" {
				if last := v[len(v)-1]; last != "ALLOWED" {
					t.Errorf("sort -u, reading only: %s, want ALLOWED", last)
				}
			}
		})
	}
}

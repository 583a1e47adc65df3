package broker_test

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/metrics"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// TestMetrics_EgressLabelsComeFromTheProfile: a job that invents a host on
// every attempt, allowed under a wildcard or denied, adds no series of its
// own; the labels are the profile's entries and "denied".
func TestMetrics_EgressLabelsComeFromTheProfile(t *testing.T) {
	set := profilesWith(t, map[string]string{"net": "extends: secureclaw\nnetwork:\n  mode: allowlist\n  egress: [\"*.cdn.example.net\", api.example.com]\n"})
	runner := &fakeRunner{outcome: func(*job.Job) (*job.Outcome, error) {
		out := &job.Outcome{Result: []byte(`{"title":"T"}`)}
		for i := range 300 {
			out.Egress = append(out.Egress,
				job.EgressAttempt{Host: fmt.Sprintf("x%d.cdn.example.net", i), Port: 443, Allowed: true},
				job.EgressAttempt{Host: fmt.Sprintf("x%d.evil.test\x1b[2J", i), Port: 443},
			)
		}
		out.Egress = append(out.Egress, job.EgressAttempt{Host: "api.example.com", Port: 443, Allowed: true})
		return out, nil
	}}
	m := metrics.New()
	c, _ := newBrokerWith(t, runner, testToken, broker.Config{Metrics: m, Profiles: set})
	req := request()
	req.Profile = "net"
	if _, err := c.Spawn(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var series []string
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(l, "airlock_egress_attempts_total{") {
			series = append(series, l)
		}
	}
	want := []string{
		`airlock_egress_attempts_total{decision="allowed",rule="*.cdn.example.net:443"} 300`,
		`airlock_egress_attempts_total{decision="allowed",rule="api.example.com:443"} 1`,
		`airlock_egress_attempts_total{decision="denied",rule="denied"} 300`,
	}
	if strings.Join(series, "\n") != strings.Join(want, "\n") {
		t.Errorf("egress series:\n%s\nwant:\n%s", strings.Join(series, "\n"), strings.Join(want, "\n"))
	}
}

// TestSpawn_SaysHowManyEgressAttemptsWereDropped: a job past the egress
// log's cap has its count of dropped attempts in the response, and in
// GetJob, so that a caller sees the list is not the whole story.
func TestSpawn_SaysHowManyEgressAttemptsWereDropped(t *testing.T) {
	runner := &fakeRunner{outcome: func(*job.Job) (*job.Outcome, error) {
		return &job.Outcome{Result: []byte(`{"title":"T"}`),
			Egress:        []job.EgressAttempt{{Host: "a.example.com", Port: 443}},
			EgressDropped: 4321}, nil
	}}
	c, _ := newBroker(t, runner, testToken, 1)
	req := request()
	req.JobId = "flooder"
	resp, err := c.Spawn(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetUsage().GetEgressDropped(); got != 4321 || len(resp.Egress) != 1 {
		t.Errorf("egress_dropped %d with %d attempts listed, want 4321 with 1", got, len(resp.Egress))
	}
	j, err := c.GetJob(ctx(t), &airlockv1.GetJobRequest{JobId: "flooder"})
	if err != nil {
		t.Fatal(err)
	}
	if got := j.GetJob().GetUsage().GetEgressDropped(); got != 4321 {
		t.Errorf("GetJob: egress_dropped %d, want 4321", got)
	}
}

// TestSpawn_AFailureAfterARefusalIsPolicyDenied: a job that fails after
// the policy refused its egress is POLICY_DENIED, naming what was refused
// (cleaned, as the job chose it); one that fails with nothing refused is
// still SANDBOX_ERROR; one that succeeds despite a refusal is OK.
func TestSpawn_AFailureAfterARefusalIsPolicyDenied(t *testing.T) {
	denied := job.EgressAttempt{Host: "exfil.example\x1b[31m\u202e", Port: 443}
	tests := []struct {
		name   string
		out    job.Outcome
		want   airlockv1.Verdict
		saying []string
	}{
		{"failed after a denial", job.Outcome{ExitCode: job.ExitFailure, Egress: []job.EgressAttempt{{Host: "ok.example", Port: 443, Allowed: true}, denied}},
			airlockv1.Verdict_VERDICT_POLICY_DENIED, []string{"profile ironclaw refused egress to exfil.example", "egress allowlist"}},
		{"failed with nothing refused", job.Outcome{ExitCode: job.ExitFailure, Egress: []job.EgressAttempt{{Host: "ok.example", Port: 443, Allowed: true}}},
			airlockv1.Verdict_VERDICT_SANDBOX_ERROR, []string{"exited with code 1"}},
		{"succeeded despite a denial", job.Outcome{Result: []byte(`{"title":"T"}`), Egress: []job.EgressAttempt{denied}},
			airlockv1.Verdict_VERDICT_OK, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runner := &fakeRunner{outcome: func(*job.Job) (*job.Outcome, error) { out := tt.out; return &out, nil }}
			c, _ := newBroker(t, runner, testToken, 1)
			req := request()
			req.Profile = "ironclaw"
			resp, err := c.Spawn(ctx(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Verdict != tt.want {
				t.Fatalf("verdict %s (%q), want %s", resp.Verdict, resp.Message, tt.want)
			}
			for _, w := range tt.saying {
				if !strings.Contains(resp.Message, w) {
					t.Errorf("message %q does not say %q", resp.Message, w)
				}
			}
			if strings.ContainsAny(resp.Message, "\x1b\u202e") {
				t.Errorf("message %q carries the job's control characters", resp.Message)
			}
		})
	}
}

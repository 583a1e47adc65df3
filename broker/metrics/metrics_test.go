package metrics_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/airlock/airlock/broker/metrics"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// scrape fetches h's exposition as a scraper would.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: HTTP %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// ruleLabels gathers the airlock_egress_attempts_total series as rule
// label -> count.
func ruleLabels(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "airlock_egress_attempts_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			rule := ""
			for _, l := range s.GetLabel() {
				if l.GetName() == "rule" {
					rule = l.GetValue()
				}
			}
			out[rule] += s.GetCounter().GetValue()
		}
	}
	return out
}

// TestNew_AScrapeShowsEverySeries: each instrument, once used, is in the
// exposition with its labels, beside the Go and process collectors.
func TestNew_AScrapeShowsEverySeries(t *testing.T) {
	m := metrics.New()
	m.Up.Set(1)
	m.JobFinished("secureclaw", airlockv1.Verdict_VERDICT_OK)
	m.Observe(metrics.PhaseSpawn, 150*time.Millisecond)
	m.ObserveJob(2 * time.Second)
	m.SandboxesLive.Inc()
	m.EgressAttempt("example.com:443", true)
	m.EgressAttempt("", false)
	m.AuthFailures.WithLabelValues("invalid").Inc()
	m.Sanitizer.WithLabelValues("redacted").Add(2)
	m.Anomalies.WithLabelValues("auth_failures").Inc()
	m.RejectedSpawns.WithLabelValues("overloaded").Inc()

	body := scrape(t, m.Handler())
	for _, want := range []string{
		"airlock_up 1",
		`airlock_jobs_total{profile="secureclaw",verdict="ok"} 1`,
		`airlock_spawn_seconds_bucket{phase="spawn",le="0.15"} 1`,
		`airlock_spawn_seconds_count{phase="spawn"} 1`,
		`airlock_job_seconds_bucket{le="2"} 1`,
		"airlock_job_seconds_count 1",
		"airlock_sandboxes_live 1",
		`airlock_egress_attempts_total{decision="allowed",rule="example.com:443"} 1`,
		`airlock_egress_attempts_total{decision="denied",rule="denied"} 1`,
		`airlock_auth_failures_total{reason="invalid"} 1`,
		`airlock_sanitizer_actions_total{kind="redacted"} 2`,
		`airlock_anomalies_total{kind="auth_failures"} 1`,
		`airlock_spawn_rejected_total{reason="overloaded"} 1`,
		"go_goroutines ",
		"process_open_fds ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

// TestJobFinished_VerdictLabelsArePrometheusStyle: the verdict label is
// the enum's name in lower snake case, without its VERDICT_ prefix, as
// alerts and dashboards spell it.
func TestJobFinished_VerdictLabelsArePrometheusStyle(t *testing.T) {
	tests := []struct {
		verdict airlockv1.Verdict
		want    string
	}{
		{airlockv1.Verdict_VERDICT_OK, "ok"},
		{airlockv1.Verdict_VERDICT_TIMEOUT, "timeout"},
		{airlockv1.Verdict_VERDICT_OOM, "oom"},
		{airlockv1.Verdict_VERDICT_SCHEMA_INVALID, "schema_invalid"},
		{airlockv1.Verdict_VERDICT_SANDBOX_ERROR, "sandbox_error"},
		{airlockv1.Verdict_VERDICT_POLICY_DENIED, "policy_denied"},
		{airlockv1.Verdict_VERDICT_OUTPUT_TOO_LARGE, "output_too_large"},
		{airlockv1.Verdict_VERDICT_UNSPECIFIED, "unspecified"},
		{airlockv1.Verdict(1000), "unknown"},
	}
	m := metrics.New()
	for _, tt := range tests {
		if got := metrics.VerdictLabel(tt.verdict); got != tt.want {
			t.Errorf("VerdictLabel(%v) = %q, want %q", tt.verdict, got, tt.want)
		}
		m.JobFinished("secureclaw", tt.verdict)
	}
	body := scrape(t, m.Handler())
	for _, tt := range tests {
		if want := `airlock_jobs_total{profile="secureclaw",verdict="` + tt.want + `"} 1`; !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	// Every verdict the enum has, not only those above.
	for n, name := range airlockv1.Verdict_name {
		got := metrics.VerdictLabel(airlockv1.Verdict(n))
		if got == "" || strings.ContainsFunc(got, func(r rune) bool { return (r < 'a' || r > 'z') && r != '_' }) {
			t.Errorf("VerdictLabel(%s) = %q, want lower snake case", name, got)
		}
	}
}

// TestAlerts_NameVerdictsTheBrokerCounts: the shipped alert rules match on
// verdict label values the broker emits; a rule on a value no job carries
// would never fire. Nor do they read a whole-job phase that is not there.
func TestAlerts_NameVerdictsTheBrokerCounts(t *testing.T) {
	rules, err := os.ReadFile("../../deploy/prometheus/airlock-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	valid := map[string]bool{}
	for n := range airlockv1.Verdict_name {
		valid[metrics.VerdictLabel(airlockv1.Verdict(n))] = true
	}
	matchers := regexp.MustCompile(`verdict\s*=\s*"([^"]*)"`).FindAllSubmatch(rules, -1)
	if len(matchers) == 0 {
		t.Fatal("no verdict matcher in the alert rules: is this the right file?")
	}
	for _, m := range matchers {
		if !valid[string(m[1])] {
			t.Errorf("alert rules match verdict %q, which the broker never emits", m[1])
		}
	}
	if bytes.Contains(rules, []byte(`phase="total"`)) {
		t.Error(`alert rules read airlock_spawn_seconds{phase="total"}; the whole job is airlock_job_seconds`)
	}
}

// TestObserveJob_TheWholeIsNotAPhase: a job's whole latency goes to its
// own histogram, so the phase histogram holds only phases, whose sums add
// up to the whole's.
func TestObserveJob_TheWholeIsNotAPhase(t *testing.T) {
	m := metrics.New()
	m.Observe(metrics.PhaseSpawn, 100*time.Millisecond)
	m.Observe(metrics.PhaseRun, 400*time.Millisecond)
	m.ObserveJob(500 * time.Millisecond)
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	phases := map[string]float64{}
	var whole float64
	for _, f := range families {
		switch f.GetName() {
		case "airlock_spawn_seconds":
			for _, s := range f.GetMetric() {
				for _, l := range s.GetLabel() {
					if l.GetName() == "phase" {
						phases[l.GetValue()] = s.GetHistogram().GetSampleSum()
					}
				}
			}
		case "airlock_job_seconds":
			whole = f.GetMetric()[0].GetHistogram().GetSampleSum()
		}
	}
	if len(phases) != 2 || phases[metrics.PhaseSpawn] == 0 || phases[metrics.PhaseRun] == 0 {
		t.Errorf("phases = %v, want only %s and %s", phases, metrics.PhaseSpawn, metrics.PhaseRun)
	}
	if sum := phases[metrics.PhaseSpawn] + phases[metrics.PhaseRun]; sum != whole || whole != 0.5 {
		t.Errorf("phases sum to %v, airlock_job_seconds to %v; want both 0.5", sum, whole)
	}
}

// TestNew_EachHasItsOwnRegistry: sets do not share a registry, so two
// brokers in one process (or one test binary) neither collide on
// registration nor see each other's counts.
func TestNew_EachHasItsOwnRegistry(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.EgressAttempt("example.com:443", true)
	if got := ruleLabels(t, b); len(got) != 0 {
		t.Errorf("b sees a's series: %v", got)
	}
}

// TestEgressAttempt_LabelsComeFromRulesOnly: a denied attempt is one
// series whatever the job named, an allowed one is labelled by the rule
// that allowed it, and a value no profile could hold never becomes a label.
func TestEgressAttempt_LabelsComeFromRulesOnly(t *testing.T) {
	m := metrics.New()
	for i := range 5000 {
		m.EgressAttempt(fmt.Sprintf("h%d.evil.test:443", i), false)
	}
	m.EgressAttempt("api.example.com:443", true)
	m.EgressAttempt("service:model", true)
	m.EgressAttempt("", true)
	m.EgressAttempt("ev\xffil.test", true)
	m.EgressAttempt("a\nb\x1b[31m", true)
	m.EgressAttempt(strings.Repeat("a", 300), true)
	got := ruleLabels(t, m)
	want := map[string]float64{
		metrics.DeniedRule:    5000,
		"api.example.com:443": 1,
		"service:model":       1,
		metrics.UnlistedRule:  1,
		metrics.OtherRule:     3,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rule labels = %v, want %v", got, want)
	}
	for r := range got {
		if !utf8.ValidString(r) {
			t.Errorf("label %q is not valid UTF-8", r)
		}
	}
	scrape(t, m.Handler())
}

// TestEgressAttempt_BoundsRuleLabels: however many rules profiles name
// over the broker's life, at most MaxEgressRules series are made; the rest
// count under OtherRule, and no attempt goes uncounted.
func TestEgressAttempt_BoundsRuleLabels(t *testing.T) {
	m := metrics.New()
	const attempts = metrics.MaxEgressRules + 500
	for i := range attempts {
		m.EgressAttempt(fmt.Sprintf("h%d.example.com:443", i), true)
	}
	m.EgressAttempt("h0.example.com:443", true) // a rule already labelled keeps its label
	got := ruleLabels(t, m)
	if len(got) != metrics.MaxEgressRules+1 {
		t.Errorf("%d rule labels, want %d and %s", len(got), metrics.MaxEgressRules, metrics.OtherRule)
	}
	if got[metrics.OtherRule] != 500 || got["h0.example.com:443"] != 2 {
		t.Errorf("%s = %v, h0.example.com:443 = %v; want 500 and 2", metrics.OtherRule, got[metrics.OtherRule], got["h0.example.com:443"])
	}
	var total float64
	for _, n := range got {
		total += n
	}
	if total != attempts+1 {
		t.Errorf("counted %v attempts, want %d", total, attempts+1)
	}
}

// TestServe_ServesTheScrapeUntilClosed: over a real loopback listener,
// /metrics is the exposition, and closing the listener ends Serve without
// an error.
func TestServe_ServesTheScrapeUntilClosed(t *testing.T) {
	m := metrics.New()
	m.Up.Set(1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- m.Serve(l) }()

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "airlock_up 1") {
		t.Errorf("GET /metrics: %v, HTTP %d, airlock_up in body: %v", err, resp.StatusCode, strings.Contains(string(body), "airlock_up 1"))
	}

	if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve = %v after the listener closed, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the listener closed")
	}
}

func keys(m map[string]float64) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

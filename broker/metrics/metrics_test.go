package metrics_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/airlock/airlock/broker/metrics"
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

// hostLabels gathers the airlock_egress_attempts_total series as host
// label -> count.
func hostLabels(t *testing.T, m *metrics.Metrics) map[string]float64 {
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
			host := ""
			for _, l := range s.GetLabel() {
				if l.GetName() == "host" {
					host = l.GetValue()
				}
			}
			out[host] += s.GetCounter().GetValue()
		}
	}
	return out
}

// TestNew_AScrapeShowsEverySeries: each instrument, once used, is in the
// exposition with its labels, beside the Go and process collectors.
func TestNew_AScrapeShowsEverySeries(t *testing.T) {
	m := metrics.New()
	m.Up.Set(1)
	m.Jobs.WithLabelValues("secureclaw", "VERDICT_OK").Inc()
	m.Observe("spawn", 150*time.Millisecond)
	m.SandboxesLive.Inc()
	m.EgressAttempt("example.com", true)
	m.EgressAttempt("evil.test", false)
	m.AuthFailures.WithLabelValues("invalid").Inc()
	m.Sanitizer.WithLabelValues("redacted").Add(2)
	m.Anomalies.WithLabelValues("auth_failures").Inc()
	m.RejectedSpawns.WithLabelValues("overloaded").Inc()

	body := scrape(t, m.Handler())
	for _, want := range []string{
		"airlock_up 1",
		`airlock_jobs_total{profile="secureclaw",verdict="VERDICT_OK"} 1`,
		`airlock_spawn_seconds_bucket{phase="spawn",le="0.15"} 1`,
		`airlock_spawn_seconds_count{phase="spawn"} 1`,
		"airlock_sandboxes_live 1",
		`airlock_egress_attempts_total{decision="allowed",host="example.com"} 1`,
		`airlock_egress_attempts_total{decision="denied",host="evil.test"} 1`,
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

// TestNew_EachHasItsOwnRegistry: sets do not share a registry, so two
// brokers in one process (or one test binary) neither collide on
// registration nor see each other's counts.
func TestNew_EachHasItsOwnRegistry(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.EgressAttempt("example.com", true)
	if got := hostLabels(t, b); len(got) != 0 {
		t.Errorf("b sees a's series: %v", got)
	}
}

// TestEgressAttempt_SanitizesHostLabels: the host comes from the hostile
// job, so whatever it is, its label is printable UTF-8 of a DNS name's
// length at most, and counting it never panics.
func TestEgressAttempt_SanitizesHostLabels(t *testing.T) {
	tests := []struct{ name, host, want string }{
		{"a name", "api.example.com", "api.example.com"},
		{"empty", "", ""},
		{"invalid UTF-8", "ev\xffil.test", "ev\uFFFDil.test"},
		{"control characters", "a\nb\x1b[31m", "a\uFFFDb\uFFFD[31m"},
		{"overlong", strings.Repeat("a", 300), strings.Repeat("a", 253)},
		{"overlong, cut at a rune", strings.Repeat("a", 252) + "é", strings.Repeat("a", 252)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New()
			m.EgressAttempt(tt.host, false)
			got := hostLabels(t, m)
			if len(got) != 1 || got[tt.want] != 1 {
				t.Errorf("host labels %q, want one for %q", keys(got), tt.want)
			}
			for h := range got {
				if !utf8.ValidString(h) || len(h) > 253 {
					t.Errorf("label %q is not valid UTF-8 of at most 253 bytes", h)
				}
			}
			scrape(t, m.Handler())
		})
	}
}

// TestEgressAttempt_BoundsHostLabels: a job that tries a new host on every
// attempt makes at most MaxEgressHosts series; the rest count under
// OtherHost, and no attempt goes uncounted.
func TestEgressAttempt_BoundsHostLabels(t *testing.T) {
	m := metrics.New()
	const attempts = metrics.MaxEgressHosts + 500
	for i := range attempts {
		m.EgressAttempt(fmt.Sprintf("h%d.evil.test", i), false)
	}
	m.EgressAttempt("h0.evil.test", false) // a host already labelled keeps its label
	got := hostLabels(t, m)
	if len(got) != metrics.MaxEgressHosts+1 {
		t.Errorf("%d host labels, want %d and %s", len(got), metrics.MaxEgressHosts, metrics.OtherHost)
	}
	if got[metrics.OtherHost] != 500 || got["h0.evil.test"] != 2 {
		t.Errorf("%s = %v, h0.evil.test = %v; want 500 and 2", metrics.OtherHost, got[metrics.OtherHost], got["h0.evil.test"])
	}
	var total float64
	for _, n := range got {
		total += n
	}
	if total != attempts+1 {
		t.Errorf("counted %v attempts, want %d", total, attempts+1)
	}
}

// TestListen_RefusesAllButLoopback: metrics name profiles and hosts, so
// they are served on a loopback IP only.
func TestListen_RefusesAllButLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "10.0.0.1:9464", "localhost:0", "[::]:0", "127.0.0.1"} {
		if l, err := metrics.Listen(addr); err == nil {
			l.Close()
			t.Errorf("Listen(%q) succeeded", addr)
		}
	}
}

// TestServe_ServesTheScrapeUntilClosed: over a real loopback listener,
// /metrics is the exposition, and closing the listener ends Serve without
// an error.
func TestServe_ServesTheScrapeUntilClosed(t *testing.T) {
	m := metrics.New()
	m.Up.Set(1)
	l, err := metrics.Listen("127.0.0.1:0")
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

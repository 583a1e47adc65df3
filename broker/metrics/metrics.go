// Package metrics holds the broker's Prometheus metrics and serves them on
// the listener airlockd opens under its bind policy. Labels never carry job content or caller input:
// their values come from the broker's own vocabulary and the operator's
// profiles (profile, verdict, egress rule). Label values are lower snake
// case, as Prometheus's own are.
package metrics

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// Metrics are the broker's instruments, registered on their own registry
// so tests can create as many as they like.
type Metrics struct {
	Registry *prometheus.Registry

	Up             prometheus.Gauge
	Jobs           *prometheus.CounterVec   // profile, verdict (VerdictLabel)
	SpawnLatency   *prometheus.HistogramVec // phase: PhaseSpawn, PhaseRun
	JobLatency     prometheus.Histogram
	SandboxesLive  prometheus.Gauge
	Egress         *prometheus.CounterVec // rule, decision: count with EgressAttempt
	AuthFailures   *prometheus.CounterVec // reason
	Sanitizer      *prometheus.CounterVec // kind
	Anomalies      *prometheus.CounterVec // kind
	RejectedSpawns *prometheus.CounterVec // reason

	// rules are the egress rule label values in use, at most
	// MaxEgressRules: a series, once made, is kept until the broker exits,
	// and profiles reloaded over months could otherwise add up.
	rulesMu sync.Mutex
	rules   map[string]struct{}
}

// Bounds and fixed values of the egress rule label.
const (
	// MaxEgressRules caps the distinct rule label values; attempts under
	// further rules are counted under OtherRule.
	MaxEgressRules = 1024
	// OtherRule is the rule label of attempts past MaxEgressRules.
	OtherRule = "_other"
	// DeniedRule is the rule label of every denied attempt, whatever the
	// job asked for: the host it named is the job's text.
	DeniedRule = "denied"
	// UnlistedRule is the rule label of an allowed attempt that matches no
	// entry of the profile, which should not happen.
	UnlistedRule = "unlisted"
	// maxRuleLabelBytes is a canonical egress entry's longest spelling.
	maxRuleLabelBytes = 270
)

// Phases of airlock_spawn_seconds. They follow one another, so for a job
// that started they add up to its airlock_job_seconds; the whole is not a
// phase, or a sum over phases would count every job twice.
const (
	// PhaseSpawn is from the request's arrival to the sandbox's start,
	// waiting for a slot included.
	PhaseSpawn = "spawn"
	// PhaseRun is from the sandbox's start to the response, teardown and
	// sanitizing included.
	PhaseRun = "run"
)

// latencyBuckets suit both the phases and the whole: tens of milliseconds
// to start a sandbox, up to a minute for a profile's longest timeout.
var latencyBuckets = []float64{.025, .05, .075, .1, .15, .2, .3, .5, .75, 1, 2, 5, 10, 30, 60}

// New creates and registers every metric.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		rules:    map[string]struct{}{},
		Up:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "airlock_up", Help: "1 while the broker serves."}),
		Jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_jobs_total", Help: "Finished jobs by profile and verdict."}, []string{"profile", "verdict"}),
		SpawnLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "airlock_spawn_seconds", Help: "Job latency by phase: spawn (request received to sandbox start), run (sandbox start to response). The phases add up to airlock_job_seconds.",
			Buckets: latencyBuckets}, []string{"phase"}),
		JobLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "airlock_job_seconds", Help: "Job latency from request received to response, for every job admitted, whether or not its sandbox started.",
			Buckets: latencyBuckets}),
		SandboxesLive: prometheus.NewGauge(prometheus.GaugeOpts{Name: "airlock_sandboxes_live", Help: "Sandboxes running now."}),
		Egress: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_egress_attempts_total", Help: "Egress attempts by the profile entry that allowed them (or denied) and decision."}, []string{"rule", "decision"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_auth_failures_total", Help: "Rejected calls by reason."}, []string{"reason"}),
		Sanitizer: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_sanitizer_actions_total", Help: "Sanitizer findings by kind."}, []string{"kind"}),
		Anomalies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_anomalies_total", Help: "Bursts over their configured rate, by kind."}, []string{"kind"}),
		RejectedSpawns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_spawn_rejected_total", Help: "Spawns refused before running, by reason."}, []string{"reason"}),
	}
	r.MustRegister(m.Up, m.Jobs, m.SpawnLatency, m.JobLatency, m.SandboxesLive, m.Egress, m.AuthFailures, m.Sanitizer, m.Anomalies, m.RejectedSpawns,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe records a phase latency; phase is PhaseSpawn or PhaseRun.
func (m *Metrics) Observe(phase string, d time.Duration) {
	m.SpawnLatency.WithLabelValues(phase).Observe(d.Seconds())
}

// ObserveJob records a job's whole latency, request to response.
func (m *Metrics) ObserveJob(d time.Duration) {
	m.JobLatency.Observe(d.Seconds())
}

// JobFinished counts a finished job under its profile and verdict.
func (m *Metrics) JobFinished(profile string, v airlockv1.Verdict) {
	m.Jobs.WithLabelValues(profile, VerdictLabel(v)).Inc()
}

// VerdictLabel is a verdict's label value: its proto name without the
// VERDICT_ prefix, in lower case (VERDICT_SCHEMA_INVALID is
// schema_invalid). A number no generated name covers, from a newer peer,
// is "unknown", so the label's values stay the enum's.
func VerdictLabel(v airlockv1.Verdict) string {
	name, ok := airlockv1.Verdict_name[int32(v)]
	if !ok {
		return "unknown"
	}
	return strings.ToLower(strings.TrimPrefix(name, "VERDICT_"))
}

// EgressAttempt counts one egress attempt under the profile entry that
// allowed it, as policy.Profile.EgressRule names it: "" for an allowed
// attempt is UnlistedRule, and a denied attempt is always DeniedRule. The
// host the job asked for is never a label, since a hostile job could name
// a new one on every attempt.
func (m *Metrics) EgressAttempt(rule string, allowed bool) {
	decision, label := "denied", DeniedRule
	if allowed {
		decision, label = "allowed", m.ruleLabel(rule)
	}
	m.Egress.WithLabelValues(label, decision).Inc()
}

func (m *Metrics) ruleLabel(rule string) string {
	if rule == "" {
		return UnlistedRule
	}
	// Rules are the operator's canonical entries; this only keeps a
	// mistaken caller from making WithLabelValues panic.
	if !utf8.ValidString(rule) || len(rule) > maxRuleLabelBytes || strings.IndexFunc(rule, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return OtherRule
	}
	m.rulesMu.Lock()
	defer m.rulesMu.Unlock()
	if _, ok := m.rules[rule]; ok {
		return rule
	}
	if len(m.rules) >= MaxEgressRules {
		return OtherRule
	}
	m.rules[rule] = struct{}{}
	return rule
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// Serve serves the metrics on l until it is closed. l is opened under the
// bind policy by its caller (airlockd: broker/listen, with TLS when it has
// a certificate).
func (m *Metrics) Serve(l net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	err := srv.Serve(l)
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

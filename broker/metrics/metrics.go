// Package metrics holds the broker's Prometheus metrics and serves them on
// a loopback listener. Labels never carry job content or caller input
// beyond bounded names (profile, verdict, egress host).
package metrics

import (
	"errors"
	"fmt"
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
)

// Metrics are the broker's instruments, registered on their own registry
// so tests can create as many as they like.
type Metrics struct {
	Registry *prometheus.Registry

	Up             prometheus.Gauge
	Jobs           *prometheus.CounterVec   // profile, verdict
	SpawnLatency   *prometheus.HistogramVec // phase: spawn|run|total
	SandboxesLive  prometheus.Gauge
	Egress         *prometheus.CounterVec // host, decision: count with EgressAttempt
	AuthFailures   *prometheus.CounterVec // reason
	Sanitizer      *prometheus.CounterVec // kind
	Anomalies      *prometheus.CounterVec // kind
	RejectedSpawns *prometheus.CounterVec // reason

	// hosts are the egress host label values in use, at most
	// MaxEgressHosts: a series, once made, is kept until the broker exits.
	hostsMu sync.Mutex
	hosts   map[string]struct{}
}

// Bounds on the egress host label, whose values come from the sandbox: a
// hostile job can ask for a new name on every attempt, and each would be a
// series the broker keeps in memory and every scrape carries.
const (
	// MaxEgressHosts caps the distinct host label values; attempts to
	// further hosts are counted under OtherHost.
	MaxEgressHosts = 1024
	// OtherHost is the host label of attempts past MaxEgressHosts.
	OtherHost = "_other"
	// maxHostLabelBytes is a DNS name's longest spelling.
	maxHostLabelBytes = 253
)

// New creates and registers every metric.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		hosts:    map[string]struct{}{},
		Up:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "airlock_up", Help: "1 while the broker serves."}),
		Jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_jobs_total", Help: "Finished jobs by profile and verdict."}, []string{"profile", "verdict"}),
		SpawnLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "airlock_spawn_seconds", Help: "Spawn latency by phase: spawn (request to sandbox start), run, total.",
			Buckets: []float64{.025, .05, .075, .1, .15, .2, .3, .5, .75, 1, 2, 5, 10, 30, 60}}, []string{"phase"}),
		SandboxesLive: prometheus.NewGauge(prometheus.GaugeOpts{Name: "airlock_sandboxes_live", Help: "Sandboxes running now."}),
		Egress: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_egress_attempts_total", Help: "Egress attempts by destination host and decision."}, []string{"host", "decision"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_auth_failures_total", Help: "Rejected calls by reason."}, []string{"reason"}),
		Sanitizer: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_sanitizer_actions_total", Help: "Sanitizer findings by kind."}, []string{"kind"}),
		Anomalies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_anomalies_total", Help: "Bursts over their configured rate, by kind."}, []string{"kind"}),
		RejectedSpawns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_spawn_rejected_total", Help: "Spawns refused before running, by reason."}, []string{"reason"}),
	}
	r.MustRegister(m.Up, m.Jobs, m.SpawnLatency, m.SandboxesLive, m.Egress, m.AuthFailures, m.Sanitizer, m.Anomalies, m.RejectedSpawns,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe records a phase latency.
func (m *Metrics) Observe(phase string, d time.Duration) {
	m.SpawnLatency.WithLabelValues(phase).Observe(d.Seconds())
}

// EgressAttempt counts one egress attempt by host and decision. The host
// becomes a valid, bounded label value: invalid UTF-8 and unprintable
// runes are replaced, a long name is cut, and past MaxEgressHosts distinct
// hosts it is OtherHost.
func (m *Metrics) EgressAttempt(host string, allowed bool) {
	decision := "denied"
	if allowed {
		decision = "allowed"
	}
	m.Egress.WithLabelValues(m.hostLabel(host), decision).Inc()
}

func (m *Metrics) hostLabel(host string) string {
	host = hostLabelValue(host)
	m.hostsMu.Lock()
	defer m.hostsMu.Unlock()
	if _, ok := m.hosts[host]; ok {
		return host
	}
	if len(m.hosts) >= MaxEgressHosts {
		return OtherHost
	}
	m.hosts[host] = struct{}{}
	return host
}

// hostLabelValue is host as printable UTF-8 of at most maxHostLabelBytes.
// WithLabelValues panics on invalid UTF-8, so this is also what keeps a
// hostile name from taking the broker down.
func hostLabelValue(host string) string {
	host = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(host, "\uFFFD"))
	if len(host) <= maxHostLabelBytes {
		return host
	}
	cut := maxHostLabelBytes
	for cut > 0 && !utf8.RuneStart(host[cut]) {
		cut--
	}
	return host[:cut]
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// Listen opens the metrics listener. Only a loopback address is allowed:
// metrics name profiles and egress hosts, which are nobody else's business.
func Listen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, errors.New("--metrics-listen must be a loopback IP address and port, such as 127.0.0.1:9464")
	}
	return net.Listen("tcp", addr)
}

// Serve serves the metrics on l until it is closed.
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

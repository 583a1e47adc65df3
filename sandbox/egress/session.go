package egress

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/job"
)

// AliasDomain is the domain under which a job names its service aliases:
// http://<alias>.airlock.internal/...
const AliasDomain = "airlock.internal"

// ServiceRule is the Rule of an attempt that a service alias allowed,
// named as policy.Profile.EgressRule names it.
func ServiceRule(alias string) string { return "service:" + alias }

// DeniedHeader is set, with the value "denied", on every response the proxy
// writes itself (a refusal or a gateway error) and stripped from upstream
// responses, so a client can tell the proxy's 403 from an upstream's.
const DeniedHeader = "Airlock-Egress"

// JobPolicy is what one job may reach.
type JobPolicy struct {
	// JobID names the job in attempts and logs.
	JobID string
	// Egress are the job's network.egress entries, as policy.ParseEgress
	// returns them. None means nothing is reachable but Services. An entry
	// naming an IP address is the one way to reach a special address, by
	// that literal or by a name that resolves to it on the same port.
	Egress []policy.EgressRule
	// Services maps an alias to its upstream, secret already resolved.
	Services map[string]job.Service
	// OnAttempt, if set, is called with every attempt as it ends, on the
	// connection's goroutine: it must not block for long.
	OnAttempt func(job.EgressAttempt)
	// Model, if set, gates the service alias that leads to the job's
	// model: see ModelPolicy.
	Model *ModelPolicy
}

// service is a job.Service as the proxy forwards it: its upstream parsed
// and checked, its header canonical, its secret the proxy's own copy.
type service struct {
	// Upstream is the http or https base URL that alias requests go to.
	Upstream *url.URL
	// Header is the credential header the proxy sets; empty for none.
	Header string
	// Prefix goes before Secret in Header's value.
	Prefix string
	// Secret is Header's value after Prefix.
	Secret []byte
	// Headers are fixed headers set on every request, names canonical.
	Headers map[string]string
}

// Stats are a session's totals, exact even when its log is full.
type Stats struct {
	// Allowed and Denied count attempts by decision.
	Allowed, Denied int
	// Dropped counts attempts left out of Log because it had
	// MaxLogEntries entries or MaxLogBytes bytes.
	Dropped int
	// RefusedConns counts connections closed unread because the job had
	// MaxConns open, or the proxy MaxTotalConns. They are not attempts:
	// nothing was read from them.
	RefusedConns int
	// BytesUp and BytesDown are what the job has moved, summed.
	BytesUp, BytesDown int64
}

// Session is one job's registration with the proxy, from Register to
// Close. Its policy is fixed at Register: a job's allowlist never changes
// while it runs.
type Session struct {
	p        *Proxy
	src      netip.Addr
	jobID    string
	rules    allowlist
	services map[string]service
	notify   func(job.EgressAttempt)
	// model gates the model's alias; nil when the job has no model.
	model *modelGate
	// transport carries this job's plain-http and service requests. It is
	// the job's own, so that no pooled upstream connection is ever shared
	// between jobs.
	transport *http.Transport

	// live counts attached connections, so that Close can wait for their
	// last attempts to be recorded.
	live sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[*clientConn]struct{}
	log    []job.EgressAttempt
	// logBytes is the size of log, as attemptSize counts it.
	logBytes int
	stats    Stats
	// moved is BytesUp+BytesDown, checked against MaxBytes.
	moved int64
}

// Register starts routing connections from src to job's policy and returns
// the session that records them. src is the job's address as the proxy
// sees it; IPv4-mapped IPv6 is unmapped.
func (p *Proxy) Register(src netip.Addr, jp JobPolicy) (*Session, error) {
	if !src.IsValid() {
		return nil, fmt.Errorf("%w: invalid source address", ErrInvalidJob)
	}
	src = src.Unmap().WithZone("")
	if jp.JobID == "" {
		return nil, fmt.Errorf("%w: JobID is required", ErrInvalidJob)
	}
	rules, err := newAllowlist(jp.Egress)
	if err != nil {
		return nil, fmt.Errorf("%w: job %s: %w", ErrInvalidJob, jp.JobID, err)
	}
	services := make(map[string]service, len(jp.Services))
	for alias, js := range jp.Services {
		svc, err := parseService(alias, js)
		if err != nil {
			return nil, fmt.Errorf("%w: job %s: service %q: %w", ErrInvalidJob, jp.JobID, alias, err)
		}
		services[strings.ToLower(alias)] = svc
	}
	gate, err := newModelGate(jp.Model, services)
	if err != nil {
		return nil, fmt.Errorf("%w: job %s: %w", ErrInvalidJob, jp.JobID, err)
	}
	s := &Session{
		p: p, src: src, jobID: jp.JobID, rules: rules, services: services, notify: jp.OnAttempt,
		model: gate, conns: map[*clientConn]struct{}{},
	}
	s.transport = p.newTransport(s)

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrProxyClosed
	}
	if old, ok := p.sessions[src]; ok {
		return nil, fmt.Errorf("%w: %s is held by job %s", ErrSourceInUse, src, old.jobID)
	}
	p.sessions[src] = s
	return s, nil
}

// parseService parses and checks a job's service. The upstream is never
// quoted in an error: it could carry a credential.
func parseService(alias string, js job.Service) (service, error) {
	u, err := url.Parse(js.Upstream)
	if err != nil || js.Upstream == "" {
		return service{}, fmt.Errorf("upstream is not a URL")
	}
	svc := service{Upstream: u, Header: http.CanonicalHeaderKey(js.Header), Prefix: js.Prefix, Secret: bytes.Clone(js.Secret)}
	for k, v := range js.Headers {
		name := http.CanonicalHeaderKey(k)
		switch {
		case !isToken(k) || !isASCII(v) || !validFieldValue([]byte(v)):
			return service{}, fmt.Errorf("fixed header %q is not a valid header", k)
		case isFraming(name):
			return service{}, fmt.Errorf("fixed header %q would change how the request is framed or routed", k)
		case svc.Header != "" && name == svc.Header:
			return service{}, fmt.Errorf("fixed header %q would replace the secret", k)
		case svc.Headers[name] != "":
			return service{}, fmt.Errorf("fixed header %q is given twice", k)
		}
		if svc.Headers == nil {
			svc.Headers = map[string]string{}
		}
		svc.Headers[name] = v
	}
	if err := checkService(alias, svc); err != nil {
		return service{}, err
	}
	return svc, nil
}

// checkService refuses a service the proxy could not forward safely.
func checkService(alias string, svc service) error {
	if !policy.ValidLabel(strings.ToLower(alias)) {
		return fmt.Errorf("alias is not a DNS label")
	}
	u := svc.Upstream
	if u == nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Opaque != "" {
		return fmt.Errorf("upstream must be an absolute http or https URL without userinfo")
	}
	if svc.Header == "" {
		if len(svc.Secret) > 0 || svc.Prefix != "" {
			return fmt.Errorf("secret or prefix without a header")
		}
		return nil
	}
	if !isToken(svc.Header) || isFraming(svc.Header) {
		return fmt.Errorf("header is not a field name the proxy may set")
	}
	// A service that names a header but has no secret would make an
	// unauthenticated call; the job must fail at spawn time instead.
	if len(svc.Secret) == 0 {
		return fmt.Errorf("%w: header %s has an empty secret", ErrSecretMissing, svc.Header)
	}
	if !validFieldValue(svc.Secret) {
		return fmt.Errorf("secret holds bytes a header value cannot")
	}
	// The prefix is checked with the secret after it, as it is sent; it
	// is never quoted, since it sits next to the secret.
	if !isASCII(svc.Prefix) || !validFieldValue(append([]byte(svc.Prefix), svc.Secret...)) {
		return fmt.Errorf("header prefix holds bytes a header value cannot")
	}
	return nil
}

// isFraming reports whether a header, canonical, is one the proxy owns:
// hop-by-hop and framing fields, which a fixed or credential header must
// not set.
func isFraming(name string) bool {
	return slices.Contains(hopByHop, name) || name == DeniedHeader
}

// isASCII reports whether s is printable ASCII, spaces included.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// validFieldValue reports whether v can be sent as a header value as is.
func validFieldValue(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return len(v) > 0 && v[0] != ' ' && v[0] != '\t' && v[len(v)-1] != ' ' && v[len(v)-1] != '\t'
}

// JobID is the job this session belongs to.
func (s *Session) JobID() string { return s.jobID }

// Log returns a copy of the attempts so far, oldest first, up to the
// proxy's MaxLogEntries and MaxLogBytes; Stats.Dropped counts the rest.
func (s *Session) Log() []job.EgressAttempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// Stats returns the session's totals so far.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Close unregisters the session, ends its connections and tunnels, and
// waits until their attempts are recorded, so Log and Stats are final once
// it returns. A later connection from the same source is answered as
// unregistered. It is idempotent; it must not be called from OnAttempt.
func (s *Session) Close() error {
	s.p.mu.Lock()
	if s.p.sessions[s.src] == s {
		delete(s.p.sessions, s.src)
	}
	s.p.mu.Unlock()

	s.mu.Lock()
	s.closed = true
	conns := make([]*clientConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.abort()
	}
	s.live.Wait()
	s.transport.CloseIdleConnections()
	return nil
}

// hasRoom reports whether the session takes another connection: it is
// open and below MaxConns. The proxy calls it and then attach under its
// own lock, so nothing is attached in between.
func (s *Session) hasRoom() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && len(s.conns) < s.p.cfg.MaxConns
}

// attach counts c against MaxConns, so that Close ends it.
func (s *Session) attach(c *clientConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[c] = struct{}{}
	s.live.Add(1)
}

// countRefused counts a connection closed unread at a cap and returns the
// count so far.
func (s *Session) countRefused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.RefusedConns++
	return s.stats.RefusedConns
}

// openConns is the number of connections attached now.
func (s *Session) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Session) detach(c *clientConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.live.Done()
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// charge adds n bytes moved in one direction, failing once the job is past
// MaxBytes. The bytes that overshoot are counted, since they were moved.
func (s *Session) charge(n int64, up bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.moved += n
	if up {
		s.stats.BytesUp += n
	} else {
		s.stats.BytesDown += n
	}
	if s.moved > s.p.cfg.MaxBytes {
		return ErrByteCap
	}
	return nil
}

// overCap reports whether the job has used up its bytes already.
func (s *Session) overCap() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.moved >= s.p.cfg.MaxBytes
}

// record appends a to the log, if it has room, and passes it on. Every
// string of a is capped first, since most can carry the job's text.
func (s *Session) record(a job.EgressAttempt) {
	a = capAttempt(a)
	if !a.Allowed {
		// Only what the policy allowed has a rule; a denial's label is
		// the broker's "denied", whatever the job asked for.
		a.Rule = ""
	}
	size := attemptSize(a)
	s.mu.Lock()
	if a.Allowed {
		s.stats.Allowed++
	} else {
		s.stats.Denied++
	}
	kept := len(s.log) < s.p.cfg.MaxLogEntries && s.logBytes+size <= s.p.cfg.MaxLogBytes
	if kept {
		s.log = append(s.log, a)
		s.logBytes += size
	} else {
		s.stats.Dropped++
	}
	firstDrop := !kept && s.stats.Dropped == 1
	entries, bytes := len(s.log), s.logBytes
	s.mu.Unlock()
	switch {
	case kept:
		s.p.logAttempt(s.jobID, a)
	case firstDrop:
		// The proxy's own log is bounded the same way: past this line
		// the job's attempts are only counted.
		s.p.log.Warn("egress log of job full: further attempts are counted, not kept", "job", s.jobID, "entries", entries, "bytes", bytes)
	}
	if s.notify != nil {
		s.notify(a)
	}
}

// Caps on the strings of one attempt.
const (
	maxAttemptMethod = 32
	maxAttemptHost   = 256
	maxAttemptReason = 512
	// attemptOverhead is what an entry costs besides its strings: its
	// time, numbers and string headers, rounded up.
	attemptOverhead = 128
)

// capAttempt cuts every string of a to its cap.
func capAttempt(a job.EgressAttempt) job.EgressAttempt {
	a.Method = capText(a.Method, maxAttemptMethod)
	a.Host = capText(a.Host, maxAttemptHost)
	a.Path = capText(a.Path, maxShownPath)
	a.Reason = capText(a.Reason, maxAttemptReason)
	return a
}

// attemptSize is what a costs in a session's log.
func attemptSize(a job.EgressAttempt) int {
	return attemptOverhead + len(a.Method) + len(a.Host) + len(a.Path) + len(a.Reason) + len(a.Rule)
}

// capText returns s as valid UTF-8 of at most n bytes, cut at a rune
// boundary and ending in "..." when it was cut.
func capText(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// destKey carries the addresses a request was checked against to the
// transport's dialer, which dials those and nothing else.
type destKey struct{}

// decide checks t against the allowlist and, for a name, resolves it and
// checks every address. It returns the addresses to dial and the profile
// entry that allows them, or an HTTP status and a reason to refuse with.
func (s *Session) decide(ctx context.Context, t target) (addrs []netip.AddrPort, rule string, status int, reason string) {
	r, ok := s.rules.match(t)
	if !ok {
		return nil, "", http.StatusForbidden, fmt.Sprintf("host %q port %d is not on this job's allowlist", t.host(), t.port)
	}
	if t.name == "" {
		// The entry names this very address, which is what lets a
		// special address through.
		return []netip.AddrPort{netip.AddrPortFrom(t.addr, t.port)}, r.entry, 0, "allowed by egress entry " + r.entry
	}
	ips, err := s.p.resolve(ctx, t.name)
	if err != nil {
		return nil, "", http.StatusBadGateway, fmt.Sprintf("cannot resolve host %q", t.name)
	}
	for _, ip := range ips {
		if s.rules.namesAddr(ip, t.port) {
			addrs = append(addrs, netip.AddrPortFrom(ip, t.port))
			continue
		}
		// One bad answer refuses the lot: a name that mixes public and
		// special addresses is a rebinding attempt, not a CDN.
		if kind := specialKind(ip); kind != "" {
			return nil, "", http.StatusForbidden, fmt.Sprintf("host %q resolves to %s, a %s address, which only an egress entry naming that address may reach", t.name, ip, kind)
		}
		// A public address of the broker's host reaches the broker's own
		// services, not the site the entry meant.
		switch own, err := s.p.host.contains(ip); {
		case err != nil:
			return nil, "", http.StatusBadGateway, err.Error()
		case own:
			return nil, "", http.StatusForbidden, fmt.Sprintf("host %q resolves to %s, an address of the broker's host, which only an egress entry naming that address may reach", t.name, ip)
		}
		addrs = append(addrs, netip.AddrPortFrom(ip, t.port))
	}
	return addrs, r.entry, 0, "allowed by egress entry " + r.entry
}

// newTransport is s's upstream HTTP client side. It never consults proxy
// environment variables and dials only the addresses in the request's
// context.
func (p *Proxy) newTransport(s *Session) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			addrs, _ := ctx.Value(destKey{}).([]netip.AddrPort)
			conn, err := p.dial(ctx, addrs)
			if err != nil {
				return nil, err // not conn: a nil *idleConn is a non-nil net.Conn
			}
			return conn, nil
		},
		TLSClientConfig:        p.cfg.ServiceTLS.Clone(),
		TLSHandshakeTimeout:    p.cfg.DialTimeout,
		DisableCompression:     true, // pass the job's Accept-Encoding and the body through untouched
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        p.cfg.IdleTimeout,
		ResponseHeaderTimeout:  p.cfg.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: maxHeadBytes,
	}
}

package egress

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock/airlock/policies/policy"
)

// Every test connection stays on 127.0.0.0/8. Names resolve through
// fakeResolver; a name that stands for a public host resolves to an
// address in publicNet, which testNet maps onto a local server and never
// dials.
var publicNet = netip.MustParsePrefix("11.22.33.0/24")

// jobSrc is the address jobs connect from; otherSrc is never registered.
const (
	jobSrc   = "127.0.0.2"
	otherSrc = "127.0.0.3"
)

// fakeResolver answers from a fixed table and knows nothing else, so no
// test ever asks a real DNS server.
type fakeResolver map[string][]netip.Addr

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ips, ok := r[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host (fake resolver)", Name: host, IsNotFound: true}
}

// testNet is the proxy's dialer in tests: it maps the fake public
// addresses onto local servers, dials loopback as is, and fails the test
// on anything else instead of dialing it.
type testNet struct {
	t    testing.TB
	mu   sync.Mutex
	fake map[netip.AddrPort]string
}

func newTestNet(t testing.TB) *testNet {
	return &testNet{t: t, fake: map[netip.AddrPort]string{}}
}

// publish makes the fake public address ip:port reach the local server.
func (n *testNet) publish(ip string, port uint16, server string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fake[netip.AddrPortFrom(netip.MustParseAddr(ip), port)] = server
}

func (n *testNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		n.t.Errorf("proxy dialed %q, not an IP:port", addr)
		return nil, err
	}
	n.mu.Lock()
	real, ok := n.fake[ap]
	n.mu.Unlock()
	switch {
	case ok:
		addr = real
	case !ap.Addr().IsLoopback():
		n.t.Errorf("proxy dialed %s, outside 127.0.0.0/8", addr)
		return nil, errors.New("test network: refusing a non-loopback dial")
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// origin is a local HTTP server that counts its hits and keeps the last
// request's head.
type origin struct {
	*httptest.Server
	hits   atomic.Int64
	mu     sync.Mutex
	last   *http.Request
	body   string
	bodies []string
}

func newOrigin(t testing.TB, h http.HandlerFunc) *origin {
	o := &origin{}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from "+r.Host) }
	}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		o.mu.Lock()
		o.last, o.body = r, string(b)
		o.bodies = append(o.bodies, string(b))
		o.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) port() uint16 {
	return netip.MustParseAddrPort(o.Listener.Addr().String()).Port()
}

func (o *origin) allBodies() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.bodies)
}

func (o *origin) lastRequest() (*http.Request, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last, o.body
}

// harness is a running proxy with the test network around it.
type harness struct {
	t     testing.TB
	p     *Proxy
	addr  string
	net   *testNet
	names fakeResolver
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, net: newTestNet(t), names: fakeResolver{}}
	cfg.Resolver = h.names
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dialer == nil {
		cfg.Dialer = h.net.dial
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-done; !errors.Is(err, ErrProxyClosed) {
			t.Errorf("Serve returned %v, want ErrProxyClosed", err)
		}
	})
	h.p, h.addr = p, l.Addr().String()
	return h
}

// host makes name resolve to a fake public address that reaches o.
func (h *harness) host(name, ip string, o *origin) {
	a := netip.MustParseAddr(ip)
	if !publicNet.Contains(a) {
		h.t.Fatalf("fake public address %s is outside %s", a, publicNet)
	}
	h.names[name] = append(h.names[name], a)
	h.net.publish(ip, 80, o.Listener.Addr().String())
}

// register registers jobSrc with the given egress entries.
func (h *harness) register(entries ...string) *Session {
	h.t.Helper()
	return h.registerJob(JobPolicy{JobID: "job-" + strings.ReplaceAll(h.t.Name(), "/", "-"), Egress: rules(h.t, entries...)})
}

func (h *harness) registerJob(job JobPolicy) *Session {
	h.t.Helper()
	s, err := h.p.Register(netip.MustParseAddr(jobSrc), job)
	if err != nil {
		h.t.Fatalf("Register: %v", err)
	}
	h.t.Cleanup(func() { s.Close() })
	return s
}

func rules(t testing.TB, entries ...string) []policy.EgressRule {
	t.Helper()
	var rs []policy.EgressRule
	for _, e := range entries {
		r, err := policy.ParseEgress(e)
		if err != nil {
			t.Fatalf("ParseEgress(%q): %v", e, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// client is an HTTP client that goes through the proxy from src.
func (h *harness) client(src string) *http.Client {
	tr := &http.Transport{
		Proxy:       http.ProxyURL(&url.URL{Scheme: "http", Host: h.addr}),
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext,
	}
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// dial opens a raw connection to the proxy from src.
func (h *harness) dial(src string) net.Conn {
	h.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// raw sends one raw request from jobSrc and returns the response's status
// and body.
func (h *harness) raw(req string) (int, string) {
	h.t.Helper()
	c := h.dial(jobSrc)
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		h.t.Fatal(err)
	}
	return readResponse(h.t, bufio.NewReader(c), "GET")
}

func readResponse(t testing.TB, br *bufio.Reader, method string) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading body: %v", err)
	}
	return resp.StatusCode, string(b)
}

// get fetches url through the proxy from src and returns status and body.
func (h *harness) get(src, u string) (int, string, http.Header) {
	h.t.Helper()
	resp, err := h.client(src).Get(u)
	if err != nil {
		h.t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// writeFile writes data to name in dir and returns its path.
func writeFile(t testing.TB, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFor polls cond for up to five seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

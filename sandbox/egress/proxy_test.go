package egress

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/airlock/airlock/sandbox/job"
)

func TestEgress_AllowsFetchOfAllowlistedHost(t *testing.T) {
	h := newHarness(t, Config{})
	o := newOrigin(t, nil)
	h.host("allowed.test", "11.22.33.1", o)
	s := h.register("allowed.test:80")

	code, body, _ := h.get(jobSrc, "http://allowed.test/page?q=1")
	if code != http.StatusOK || body != "hello from allowed.test" {
		t.Fatalf("got %d %q, want 200 from the origin", code, body)
	}
	r, _ := o.lastRequest()
	if r.URL.RequestURI() != "/page?q=1" || r.Host != "allowed.test" {
		t.Errorf("origin saw %s for host %q", r.URL.RequestURI(), r.Host)
	}
	waitFor(t, "the attempt to be logged", func() bool { return len(s.Log()) == 1 })
	log := s.Log()
	if len(log) != 1 || !log[0].Allowed || log[0].Host != "allowed.test" || log[0].Port != 80 || log[0].Method != "GET" || log[0].BytesDown != int64(len(body)) {
		t.Errorf("log = %+v, want one allowed GET allowed.test:80 with %d bytes down", log, len(body))
	}
}

func TestEgress_DeniesHostNotOnAllowlist(t *testing.T) {
	h := newHarness(t, Config{})
	allowed, forbidden := newOrigin(t, nil), newOrigin(t, nil)
	h.host("allowed.test", "11.22.33.1", allowed)
	h.host("forbidden.test", "11.22.33.2", forbidden)
	h.host("allowed.test.forbidden.test", "11.22.33.2", forbidden)
	h.host("sub.allowed.test", "11.22.33.2", forbidden)
	s := h.register("allowed.test:80")

	for _, u := range []string{
		"http://forbidden.test/",
		"http://allowed.test.forbidden.test/",
		"http://sub.allowed.test/",
		"http://allowed.test:8080/",
		fmt.Sprintf("http://127.0.0.1:%d/", forbidden.port()),
	} {
		t.Run(u, func(t *testing.T) {
			code, body, hdr := h.get(jobSrc, u)
			if code != http.StatusForbidden || !strings.HasPrefix(body, "airlock egress: ") || hdr.Get(DeniedHeader) != "denied" {
				t.Errorf("got %d %q, want a 403 from the proxy", code, body)
			}
			if !strings.Contains(body, "is not on this job's allowlist") {
				t.Errorf("body %q does not name the policy", body)
			}
		})
	}
	if n := forbidden.hits.Load(); n != 0 {
		t.Errorf("forbidden server got %d hits, want 0", n)
	}
	if st := s.Stats(); st.Denied != 5 || st.Allowed != 0 {
		t.Errorf("stats = %+v, want 5 denied", st)
	}
	if log := s.Log(); len(log) != 5 || log[0].Allowed || log[0].Host != "forbidden.test" {
		t.Errorf("log = %+v, want 5 denials, forbidden.test first", log)
	}
}

func TestEgress_DeniedMessageNamesHostAndPort(t *testing.T) {
	h := newHarness(t, Config{})
	h.register()
	_, body, _ := h.get(jobSrc, "http://x.test/")
	if want := "airlock egress: host \"x.test\" port 80 is not on this job's allowlist\n"; body != want {
		t.Errorf("body = %q, want %q", body, want)
	}
}

func TestEgress_ConnectTunnelsToAllowlistedTLSServer(t *testing.T) {
	h := newHarness(t, Config{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "over tls")
	}))
	defer srv.Close()
	port := netip.MustParseAddrPort(srv.Listener.Addr().String()).Port()
	s := h.register(fmt.Sprintf("127.0.0.1:%d", port))

	c := h.client(jobSrc)
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: certPool(srv)}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET through CONNECT: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "over tls" {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
	c.CloseIdleConnections()
	waitFor(t, "the tunnel to be logged", func() bool { return len(s.Log()) == 1 })
	a := s.Log()[0]
	if !a.Allowed || a.Method != "CONNECT" || a.Host != "127.0.0.1" || a.Port != port || a.BytesUp == 0 || a.BytesDown == 0 || a.Path != "" || a.Status != 0 {
		t.Errorf("attempt = %+v, want an allowed CONNECT with bytes both ways, no path and no status", a)
	}
}

func certPool(srv *httptest.Server) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return pool
}

func TestEgress_RefusesTargetThatDisagreesWithHost(t *testing.T) {
	h := newHarness(t, Config{})
	allowed, forbidden := newOrigin(t, nil), newOrigin(t, nil)
	h.register(fmt.Sprintf("127.0.0.1:%d", allowed.port()))
	a, f := fmt.Sprintf("127.0.0.1:%d", allowed.port()), fmt.Sprintf("127.0.0.1:%d", forbidden.port())

	tests := []struct {
		name, req string
		want      int
	}{
		{"CONNECT forbidden with allowed Host", "CONNECT " + f + " HTTP/1.1\r\nHost: " + a + "\r\n\r\n", 400},
		{"CONNECT forbidden with matching Host", "CONNECT " + f + " HTTP/1.1\r\nHost: " + f + "\r\n\r\n", 403},
		{"GET forbidden with allowed Host", "GET http://" + f + "/ HTTP/1.1\r\nHost: " + a + "\r\n\r\n", 400},
		{"GET allowed with forbidden Host", "GET http://" + a + "/ HTTP/1.1\r\nHost: " + f + "\r\n\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := h.raw(tt.req); code != tt.want {
				t.Errorf("got %d %q, want %d", code, body, tt.want)
			}
		})
	}
	if n := forbidden.hits.Load() + allowed.hits.Load(); n != 0 {
		t.Errorf("servers got %d hits, want 0", n)
	}
}

func TestEgress_DeniesNameThatResolvesToSpecialAddress(t *testing.T) {
	o := newOrigin(t, nil)
	port := o.port()
	tests := []struct {
		name string
		ips  []string
	}{
		{"loopback (rebinding)", []string{"127.0.0.1"}},
		{"public then loopback", []string{"11.22.33.1", "127.0.0.1"}},
		{"private 10/8", []string{"10.1.2.3"}},
		{"private 192.168/16", []string{"192.168.1.1"}},
		{"link-local metadata", []string{"169.254.169.254"}},
		{"CGNAT", []string{"100.64.0.1"}},
		{"unspecified", []string{"0.0.0.0"}},
		{"this network", []string{"0.1.2.3"}},
		{"broadcast", []string{"255.255.255.255"}},
		{"multicast", []string{"224.0.0.1"}},
		{"documentation", []string{"192.0.2.1"}},
		{"benchmarking", []string{"198.18.0.1"}},
		{"IPv6 loopback", []string{"::1"}},
		{"IPv4-mapped loopback", []string{"::ffff:127.0.0.1"}},
		{"IPv4-compatible loopback", []string{"::127.0.0.1"}},
		{"ULA", []string{"fd00::1"}},
		{"IPv6 link-local", []string{"fe80::1"}},
		{"NAT64 of loopback", []string{"64:ff9b::7f00:1"}},
		{"6to4 of loopback", []string{"2002:7f00:1::1"}},
		{"IPv6 documentation", []string{"2001:db8::1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.net.publish("11.22.33.1", port, o.Listener.Addr().String())
			for _, ip := range tt.ips {
				h.names["rebind.test"] = append(h.names["rebind.test"], netip.MustParseAddr(ip))
			}
			s := h.register(fmt.Sprintf("rebind.test:%d", port))
			before := o.hits.Load()
			for _, req := range []string{
				fmt.Sprintf("GET http://rebind.test:%d/ HTTP/1.1\r\nHost: rebind.test:%d\r\n\r\n", port, port),
				fmt.Sprintf("CONNECT rebind.test:%d HTTP/1.1\r\nHost: rebind.test:%d\r\n\r\n", port, port),
			} {
				code, body := h.raw(req)
				if code != http.StatusForbidden || !strings.Contains(body, "resolves to") {
					t.Errorf("got %d %q, want 403 naming the resolved address", code, body)
				}
			}
			if n := o.hits.Load() - before; n != 0 {
				t.Errorf("server got %d hits, want 0", n)
			}
			if st := s.Stats(); st.Denied != 2 {
				t.Errorf("stats = %+v, want 2 denials", st)
			}
		})
	}
}

func TestEgress_NameMayReachSpecialAddressThatAnEntryNames(t *testing.T) {
	h := newHarness(t, Config{})
	o := newOrigin(t, nil)
	h.names["db.test"] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	h.register(fmt.Sprintf("db.test:%d", o.port()), fmt.Sprintf("127.0.0.1:%d", o.port()))
	if code, body, _ := h.get(jobSrc, fmt.Sprintf("http://db.test:%d/", o.port())); code != 200 {
		t.Errorf("got %d %q, want 200: the address is named by an entry", code, body)
	}
}

// loopbackSpellings are ways to write 127.0.0.1 (or another loopback
// address) in a URL host; each must be read as that address.
var loopbackSpellings = []string{
	"127.0.0.1", "2130706433", "0x7f000001", "0X7F000001", "0x7F.0.0.1", "0177.0.0.1", "0177.0000.0000.0001",
	"127.000.000.001", "017700000001", "127.1", "127.0.1", "0x7f.1", "127.0.0.1.",
	"[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]", "１２７.０.０.１", "127。0。0。1",
}

func TestEgress_DeniesEveryLoopbackSpelling(t *testing.T) {
	h := newHarness(t, Config{})
	o := newOrigin(t, nil)
	port := o.port()
	h.host("allowed.test", "11.22.33.1", o)
	h.register(fmt.Sprintf("allowed.test:%d", port))
	for _, host := range append(loopbackSpellings, "[::1]", "localhost") {
		t.Run(host, func(t *testing.T) {
			for _, req := range []string{
				fmt.Sprintf("GET http://%s:%d/ HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, port, host, port),
				fmt.Sprintf("CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, port, host, port),
			} {
				if code, body := h.raw(req); code != http.StatusForbidden {
					t.Errorf("%q: got %d %q, want 403", req, code, body)
				}
			}
		})
	}
	if n := o.hits.Load(); n != 0 {
		t.Errorf("server got %d hits, want 0", n)
	}
}

func TestEgress_ReadsEveryIPv4SpellingAsTheAddress(t *testing.T) {
	h := newHarness(t, Config{})
	o := newOrigin(t, nil)
	port := o.port()
	s := h.register(fmt.Sprintf("127.0.0.1:%d", port))
	for _, host := range loopbackSpellings {
		req := fmt.Sprintf("GET http://%s:%d/ HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, port, host, port)
		if code, body := h.raw(req); code != 200 {
			t.Errorf("%s: got %d %q, want 200 under the explicit 127.0.0.1 entry", host, code, body)
		}
	}
	for _, a := range s.Log() {
		if a.Host != "127.0.0.1" {
			t.Errorf("attempt host %q, want the canonical 127.0.0.1", a.Host)
		}
	}
}

func TestEgress_DeniesUnregisteredSource(t *testing.T) {
	h := newHarness(t, Config{})
	o := newOrigin(t, nil)
	h.host("allowed.test", "11.22.33.1", o)
	s := h.register("allowed.test:80")

	code, body, _ := h.get(otherSrc, "http://allowed.test/")
	if code != http.StatusForbidden || !strings.Contains(body, "not a registered job") {
		t.Errorf("other source: got %d %q, want 403", code, body)
	}
	s.Close()
	code, body, _ = h.get(jobSrc, "http://allowed.test/")
	if code != http.StatusForbidden || !strings.Contains(body, "not a registered job") {
		t.Errorf("after Close: got %d %q, want 403", code, body)
	}
	if n := o.hits.Load(); n != 0 {
		t.Errorf("server got %d hits, want 0", n)
	}
	if len(s.Log()) != 0 {
		t.Errorf("closed session logged %+v", s.Log())
	}
}

func TestEgress_RefusesTrace(t *testing.T) {
	h := newHarness(t, Config{})
	o := newOrigin(t, nil)
	h.host("allowed.test", "11.22.33.1", o)
	h.register("allowed.test:80")
	if code, _ := h.raw("TRACE http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n"); code != 403 {
		t.Errorf("TRACE got %d, want 403", code)
	}
	if o.hits.Load() != 0 {
		t.Error("TRACE reached the server")
	}
}

func TestEgress_StripsProxyAndHopByHopHeaders(t *testing.T) {
	h := newHarness(t, Config{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(DeniedHeader, "denied")
		w.Header().Set("X-Kept", "yes")
	})
	h.host("allowed.test", "11.22.33.1", o)
	h.register("allowed.test:80")

	c := h.dial(jobSrc)
	io.WriteString(c, "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n"+
		"Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\nConnection: X-Drop\r\nX-Drop: 1\r\nX-Keep: 1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r, _ := o.lastRequest()
	for _, name := range []string{"Proxy-Authorization", "Proxy-Connection", "X-Drop"} {
		if v := r.Header.Get(name); v != "" {
			t.Errorf("origin received %s: %q", name, v)
		}
	}
	if r.Header.Get("X-Keep") != "1" {
		t.Error("an end-to-end header was dropped")
	}
	if r.Header.Get("User-Agent") != "" {
		t.Errorf("proxy added User-Agent %q", r.Header.Get("User-Agent"))
	}
	if resp.Header.Get(DeniedHeader) != "" || resp.Header.Get("X-Kept") != "yes" {
		t.Errorf("response headers = %v: the upstream may not forge the proxy's marker", resp.Header)
	}
}

func TestEgress_OnAttemptStreamsEveryAttempt(t *testing.T) {
	h := newHarness(t, Config{})
	o := newOrigin(t, nil)
	h.host("allowed.test", "11.22.33.1", o)
	got := make(chan job.EgressAttempt, 10)
	h.registerJob(JobPolicy{JobID: "j", Egress: rules(t, "allowed.test:80"), OnAttempt: func(a job.EgressAttempt) { got <- a }})
	h.get(jobSrc, "http://allowed.test/")
	h.get(jobSrc, "http://denied.test/")
	// An attempt is reported when it ends, so the order may vary.
	seen := map[string]bool{}
	for range 2 {
		a := <-got
		seen[fmt.Sprintf("%s %v", a.Host, a.Allowed)] = true
	}
	if !seen["allowed.test true"] || !seen["denied.test false"] {
		t.Errorf("events %v, want allowed.test allowed and denied.test denied", seen)
	}
}

func TestEgress_LogIsCappedButStatsKeepCounting(t *testing.T) {
	h := newHarness(t, Config{MaxLogEntries: 2})
	s := h.register()
	for range 3 {
		h.get(jobSrc, "http://denied.test/")
	}
	if st := s.Stats(); len(s.Log()) != 2 || st.Denied != 3 || st.Dropped != 1 {
		t.Errorf("log %d entries, stats %+v; want 2 entries, 3 denied, 1 dropped", len(s.Log()), st)
	}
}

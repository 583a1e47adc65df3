package egress

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// benchClients returns a direct client and one through the proxy, for a
// server at 127.0.0.1:port that the job's allowlist names.
func benchClients(b *testing.B, srv *httptest.Server) (direct, proxied *http.Client) {
	port := netip.MustParseAddrPort(srv.Listener.Addr().String()).Port()
	// The default 1 GiB job cap would end a long run part way.
	h := newHarness(b, Config{MaxBytes: 1 << 50})
	h.register(fmt.Sprintf("127.0.0.1:%d", port))
	tlsConf := &tls.Config{}
	if srv.TLS != nil {
		tlsConf.RootCAs = certPool(srv)
	}
	dt := &http.Transport{TLSClientConfig: tlsConf}
	pt := h.client(jobSrc).Transport.(*http.Transport)
	pt.TLSClientConfig = tlsConf
	b.Cleanup(dt.CloseIdleConnections)
	return &http.Client{Transport: dt}, &http.Client{Transport: pt}
}

func fetchAll(b *testing.B, c *http.Client, u string) {
	resp, err := c.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || (resp.ContentLength >= 0 && n != resp.ContentLength) {
		b.Fatalf("GET %s: %d, %d bytes, %v", u, resp.StatusCode, n, err)
	}
}

// BenchmarkProxy_Throughput moves a 4 MiB body per request, over plain
// HTTP (forwarded) and over TLS (CONNECT tunnel), directly and through the
// proxy; MB/s of the two rows of a pair give the ratio.
func BenchmarkProxy_Throughput(b *testing.B) {
	const size = 4 << 20
	payload := strings.Repeat("x", size)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, payload) })
	for _, tc := range []struct {
		name string
		srv  func(http.Handler) *httptest.Server
	}{{"http", httptest.NewServer}, {"connect", httptest.NewTLSServer}} {
		srv := tc.srv(handler)
		b.Run(tc.name, func(b *testing.B) {
			direct, proxied := benchClients(b, srv)
			for _, c := range []struct {
				name string
				c    *http.Client
			}{{"direct", direct}, {"proxy", proxied}} {
				b.Run(c.name, func(b *testing.B) {
					b.SetBytes(size)
					for b.Loop() {
						fetchAll(b, c.c, srv.URL)
					}
				})
			}
		})
		srv.Close()
	}
}

// BenchmarkProxy_AddedLatency times a small request on a kept-alive
// connection, directly and through the proxy; the difference in ns/op is
// what the proxy adds per request.
func BenchmarkProxy_AddedLatency(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	for _, tc := range []struct {
		name string
		srv  func(http.Handler) *httptest.Server
	}{{"http", httptest.NewServer}, {"connect", httptest.NewTLSServer}} {
		srv := tc.srv(handler)
		b.Run(tc.name, func(b *testing.B) {
			direct, proxied := benchClients(b, srv)
			u, _ := url.Parse(srv.URL)
			for _, c := range []struct {
				name string
				c    *http.Client
			}{{"direct", direct}, {"proxy", proxied}} {
				b.Run(c.name, func(b *testing.B) {
					fetchAll(b, c.c, u.String()) // warm the connection
					for b.Loop() {
						fetchAll(b, c.c, u.String())
					}
				})
			}
		})
		srv.Close()
	}
}

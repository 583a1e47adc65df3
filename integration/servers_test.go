//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// world is the network the suite builds: servers on 127.0.0.0/8 (or, for
// the forbidden one, on every host address so that a sandbox that slipped
// its rules could reach it at its gateway), a resolver, and the profile
// that allowlists some of them.
var world struct {
	allowed, forbidden, upstream *hitServer
	serviceKey                   string
}

// hitServer counts every request and every TCP connection it receives.
type hitServer struct {
	*httptest.Server
	conns atomic.Int64
	hits  atomic.Int64

	mu      sync.Mutex
	headers []http.Header
}

func newHitServer(addr string, h http.HandlerFunc) (*hitServer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &hitServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		s.headers = append(s.headers, r.Header.Clone())
		s.mu.Unlock()
		h(w, r)
	}))
	s.Listener = &countingListener{Listener: l, n: &s.conns}
	s.Start()
	return s, nil
}

func (s *hitServer) port() int { return s.Listener.Addr().(*net.TCPAddr).Port }

func (s *hitServer) seenHeaders() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.headers...)
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// rebindName is allowlisted by name but resolves to loopback.
const rebindName = "rebind.airlock-test"

// testResolver answers only the suite's own names; everything else does
// not exist, so no test can reach a real host by name.
type testResolver struct{}

func (testResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if host == rebindName {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// startServers starts the suite's servers and writes the egress test
// profile into dir, returning its path.
func startServers(dir string) (string, error) {
	var err error
	page := `<html><head><title>Allowed Page</title></head><body><p>Fetched through the proxy. It works.</p></body></html>`
	if world.allowed, err = newHitServer("127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect-forbidden":
			// A hop to a host no entry allows.
			http.Redirect(w, r, fmt.Sprintf("http://127.0.0.1:%d/", world.forbidden.port()), http.StatusFound)
		case "/big":
			// 100 MiB, streamed: the agent must stop at its cap.
			w.Header().Set("Content-Type", "text/plain")
			chunk := bytes.Repeat([]byte("all work and no play "), 3200)
			for sent := 0; sent < 100<<20; sent += len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		case "/slow":
			// Slow loris: the headers, then a byte a second, forever.
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusOK)
			for {
				if _, err := w.Write([]byte("x")); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(time.Second):
				}
			}
		case "/image":
			w.Header().Set("Content-Type", "image/png")
			fmt.Fprint(w, "\x89PNG\r\n")
		default:
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, page)
		}
	}); err != nil {
		return "", err
	}
	if world.forbidden, err = newHitServer("0.0.0.0:0", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "forbidden server reached")
	}); err != nil {
		return "", err
	}
	if world.upstream, err = newHitServer("127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "model says hello")
	}); err != nil {
		return "", err
	}
	world.serviceKey = "svc-" + randHex(24)
	os.Setenv("AIRLOCK_TEST_SERVICE_KEY", world.serviceKey)
	profile := fmt.Sprintf(`# The integration suite's allowlist profile.
extends: secureclaw
tools:
  policy: allowlist
  allowed: [group:agent, exec, fetch]
  denied: [group:fs]
network:
  mode: allowlist
  egress:
    - "127.0.0.1:%d"
    - "%s:%d"
    - "localhost:%d"
  services:
    llm:
      upstream: "http://127.0.0.1:%d"
      inject:
        header: X-Api-Key
        secretRef: env:AIRLOCK_TEST_SERVICE_KEY
`, world.allowed.port(), rebindName, world.forbidden.port(), world.forbidden.port(), world.upstream.port())
	path := filepath.Join(dir, "egresstest.yaml")
	return path, os.WriteFile(path, []byte(profile), 0o600)
}

func stopServers() {
	for _, s := range []*hitServer{world.allowed, world.forbidden, world.upstream} {
		if s != nil {
			s.Close()
		}
	}
}

func requireNoForbiddenHits(t *testing.T) {
	t.Helper()
	if n, c := world.forbidden.hits.Load(), world.forbidden.conns.Load(); n != 0 || c != 0 {
		t.Fatalf("the forbidden server got %d requests over %d connections", n, c)
	}
}

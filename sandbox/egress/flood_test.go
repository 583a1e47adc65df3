package egress

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// benignSrc is a second job's address, beside jobSrc.
const benignSrc = "127.0.0.4"

// registerAt registers a job at src.
func (h *harness) registerAt(src, jobID string, entries ...string) *Session {
	h.t.Helper()
	s, err := h.p.Register(netip.MustParseAddr(src), JobPolicy{JobID: jobID, Egress: rules(h.t, entries...)})
	if err != nil {
		h.t.Fatalf("Register: %v", err)
	}
	h.t.Cleanup(func() { s.Close() })
	return s
}

// dialIdle opens n connections from src and sends nothing on them. The
// caller closes them. A connection the proxy resets so fast that the dial
// itself sees the reset is nil.
func (h *harness) dialIdle(src string, n int) []net.Conn {
	h.t.Helper()
	conns := make([]net.Conn, 0, n)
	for range n {
		conns = append(conns, h.dialOrReset(src))
	}
	return conns
}

// dialOrReset opens a connection from src, or returns nil if the proxy
// reset it before the dial returned.
func (h *harness) dialOrReset(src string) net.Conn {
	h.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", h.addr)
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return nil
	case err != nil:
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// heapInuse is the heap in use after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// closedByProxy reports whether the proxy has ended c: a read returns EOF
// or a reset, not a timeout, within the deadline. A nil c was reset while
// it was dialled.
func closedByProxy(c net.Conn, deadline time.Time) bool {
	if c == nil {
		return true
	}
	c.SetReadDeadline(deadline)
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// The hostile job of the review: 5,000 idle connections to its own
// session. The proxy refuses all but MaxConns of them unread, holds no
// buffer for the idle ones, serves a job beside it as usual, and ends the
// rest when the session closes.
func TestFlood_IdleConnectionsCostLittleAndEndWithTheSession(t *testing.T) {
	const n = 5000
	h := newHarness(t, Config{})
	o := newOrigin(t, nil)
	h.host("allowed.test", "11.22.33.1", o)
	hostile := h.registerAt(jobSrc, "hostile", "allowed.test:80")
	benign := h.registerAt(benignSrc, "benign", "allowed.test:80")
	// One request a connection, so that no client connection idles.
	get := func() (int, string) {
		c := h.dial(benignSrc)
		defer c.Close()
		io.WriteString(c, "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
		return readResponse(t, bufio.NewReader(c), "GET")
	}
	// A warm-up request, so that the baseline includes the benign job's
	// upstream connection.
	if code, _ := get(); code != 200 {
		t.Fatalf("benign warm-up: %d", code)
	}
	baseGoroutines := runtime.NumGoroutine()
	baseHeap := heapInuse()

	conns := h.dialIdle(jobSrc, n)
	defer closeAll(conns)
	waitFor(t, "every connection to be accepted or refused", func() bool {
		return hostile.openConns()+hostile.Stats().RefusedConns == n
	})
	if open := hostile.openConns(); open != DefaultMaxConns {
		t.Errorf("hostile job holds %d connections, want its cap of %d", open, DefaultMaxConns)
	}
	heap := heapInuse()
	grew := int64(heap) - int64(baseHeap)
	goroutines := runtime.NumGoroutine() - baseGoroutines
	t.Logf("%d idle connections: heap %+d KiB, %+d goroutines, %d refused", n, grew>>10, goroutines, hostile.Stats().RefusedConns)
	if grew > 16<<20 {
		t.Errorf("heap grew by %d MiB for %d idle connections, want under 16 MiB", grew>>20, n)
	}
	if goroutines > DefaultMaxConns+8 {
		t.Errorf("%d more goroutines, want at most the cap of %d and a few", goroutines, DefaultMaxConns)
	}

	if code, body := get(); code != 200 || body != "hello from allowed.test" {
		t.Errorf("benign job during the flood: %d %q", code, body)
	}
	if st := benign.Stats(); st.RefusedConns != 0 || st.Denied != 0 {
		t.Errorf("benign job stats %+v", st)
	}

	hostile.Close()
	deadline := time.Now().Add(5 * time.Second)
	for i, c := range conns {
		if !closedByProxy(c, deadline) {
			t.Fatalf("connection %d still open after the session closed", i)
		}
	}
	if open := hostile.openConns(); open != 0 {
		t.Errorf("%d connections still counted after Close", open)
	}
	waitFor(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseGoroutines })
}

// Each connection past the cap is closed before anything is read or
// allocated for it: no response, no goroutine, and the refusal counted.
func TestLimits_RefusesConnectionsPastTheJobCapUnread(t *testing.T) {
	h := newHarness(t, Config{MaxConns: 2})
	s := h.register()
	held := h.dialIdle(jobSrc, 2)
	defer closeAll(held)
	waitFor(t, "two connections held", func() bool { return s.openConns() == 2 })
	c := h.dialOrReset(jobSrc)
	if !closedByProxy(c, time.Now().Add(3*time.Second)) {
		t.Fatal("third connection not closed")
	}
	if st := s.Stats(); st.RefusedConns != 1 || st.Allowed+st.Denied != 0 {
		t.Errorf("stats %+v, want one refused connection and no attempt", st)
	}
	closeAll(held)
	waitFor(t, "the held connections to end", func() bool { return s.openConns() == 0 })
	if code, _ := h.raw("GET http://other.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n"); code != 403 {
		t.Errorf("under the cap again: %d, want the usual 403", code)
	}
}

// The proxy-wide cap holds whichever jobs the connections come from, and
// a job refused by it is refused the same way.
func TestLimits_GlobalCapRefusesAcrossJobs(t *testing.T) {
	h := newHarness(t, Config{MaxConns: 3, MaxTotalConns: 4})
	a := h.registerAt(jobSrc, "a")
	b := h.registerAt(benignSrc, "b")
	held := append(h.dialIdle(jobSrc, 3), h.dialIdle(benignSrc, 1)...)
	defer closeAll(held)
	waitFor(t, "four connections held", func() bool { return a.openConns()+b.openConns() == 4 })
	c := h.dialOrReset(benignSrc)
	if !closedByProxy(c, time.Now().Add(3*time.Second)) {
		t.Fatal("fifth connection not closed at the global cap")
	}
	if st := b.Stats(); st.RefusedConns != 1 {
		t.Errorf("job b stats %+v, want one refused connection", st)
	}
	if got := h.p.RefusedConns(); got != 1 {
		t.Errorf("proxy refused %d, want 1", got)
	}
}

// Sources no job holds share one small cap, so that no local process can
// take the global cap from the jobs.
func TestLimits_UnregisteredSourcesShareOneCap(t *testing.T) {
	h := newHarness(t, Config{MaxConns: 2})
	s := h.register()
	held := h.dialIdle(otherSrc, 2)
	defer closeAll(held)
	waitFor(t, "two strangers held", func() bool { return h.p.strangerConns() == 2 })
	if c := h.dialOrReset(otherSrc); !closedByProxy(c, time.Now().Add(3*time.Second)) {
		t.Fatal("third stranger not closed")
	}
	// The job is not affected.
	c := h.dial(jobSrc)
	io.WriteString(c, "GET http://other.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n")
	if code, _ := readResponse(t, bufio.NewReader(c), "GET"); code != 403 {
		t.Errorf("job beside the strangers: %d, want the usual 403", code)
	}
	if st := s.Stats(); st.RefusedConns != 0 {
		t.Errorf("job stats %+v", st)
	}
}

// A connection must send its first request head soon after it opens,
// however long the idle timeout between requests is.
func TestLimits_FirstRequestHeadHasAShortDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		send string
	}{
		{"nothing sent", ""},
		{"head begun", "GET http://allowed.test/ HTTP/1.1\r\nHo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{FirstRequestTimeout: 100 * time.Millisecond, IdleTimeout: time.Minute, ReadHeaderTimeout: time.Minute})
			s := h.register()
			c := h.dial(jobSrc)
			io.WriteString(c, tc.send)
			start := time.Now()
			if !closedByProxy(c, time.Now().Add(5*time.Second)) {
				t.Fatal("connection not closed")
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("closed after %v, want about 100ms", d)
			}
			waitFor(t, "the connection to be released", func() bool { return s.openConns() == 0 })
		})
	}
}

// An idle connection holds no read or write buffer: only once a request
// arrives are they taken, and they go back between requests.
func TestLimits_IdleConnectionsHoldNoBuffers(t *testing.T) {
	const n = 1000
	h := newHarness(t, Config{MaxConns: n})
	o := newOrigin(t, nil)
	h.host("allowed.test", "11.22.33.1", o)
	s := h.register("allowed.test:80")
	base := heapInuse()
	conns := h.dialIdle(jobSrc, n)
	defer closeAll(conns)
	// Half of them serve a request first and then idle, kept alive.
	for _, c := range conns[:n/2] {
		io.WriteString(c, "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
		if code, _ := readResponse(t, bufio.NewReader(c), "GET"); code != 200 {
			t.Fatalf("request: %d", code)
		}
	}
	waitFor(t, "all connections held", func() bool { return s.openConns() == n })
	grew := int64(heapInuse()) - int64(base)
	t.Logf("%d idle connections: heap %+d KiB, %d B each", n, grew>>10, grew/n)
	if per := grew / n; per > 8<<10 {
		t.Errorf("each idle connection costs %d bytes of heap, want under 8 KiB (its buffers alone are 48 KiB)", per)
	}
}

package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// tcpServer runs handle for every connection to a local listener and
// returns its port.
func tcpServer(t *testing.T, handle func(net.Conn)) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return netip.MustParseAddrPort(l.Addr().String()).Port()
}

// connect opens a CONNECT tunnel from jobSrc and returns it after the 200.
func (h *harness) connect(t *testing.T, port uint16) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := h.dial(jobSrc)
	fmt.Fprintf(c, "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port, port)
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200 ") {
		t.Fatalf("CONNECT: %q, %v", line, err)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("CONNECT response has headers: %q", blank)
	}
	return c, br
}

func TestLimits_CapsBytesPerJob(t *testing.T) {
	h := newHarness(t, Config{MaxBytes: 1000})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 4000))
	})
	h.host("allowed.test", "11.22.33.1", o)
	s := h.register("allowed.test:80")

	resp, err := h.client(jobSrc).Get("http://allowed.test/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || len(b) > 1000 {
		t.Errorf("read %d bytes, err %v; want the body cut off at the cap", len(b), err)
	}
	code, body, _ := h.get(jobSrc, "http://allowed.test/")
	if code != http.StatusForbidden || !strings.Contains(body, "cap of 1000 bytes") {
		t.Errorf("after the cap: got %d %q, want 403", code, body)
	}
	if o.hits.Load() != 1 {
		t.Errorf("upstream hits %d, want 1", o.hits.Load())
	}
	waitFor(t, "two attempts", func() bool { return len(s.Log()) == 2 })
	if log := s.Log(); !strings.Contains(log[0].Reason+log[1].Reason, "cut off") {
		t.Errorf("log = %+v", log)
	}
}

func TestLimits_CapsTunnelBytes(t *testing.T) {
	h := newHarness(t, Config{MaxBytes: 1000})
	port := tcpServer(t, func(c net.Conn) { io.Copy(c, c) })
	s := h.register(fmt.Sprintf("127.0.0.1:%d", port))
	c, br := h.connect(t, port)
	go io.WriteString(c, strings.Repeat("y", 3000))
	n, _ := io.Copy(io.Discard, br)
	if n > 1000 {
		t.Errorf("echoed %d bytes through a 1000-byte cap", n)
	}
	waitFor(t, "the tunnel to be logged", func() bool { return len(s.Log()) == 1 })
	if a := s.Log()[0]; !strings.Contains(a.Reason, ErrByteCap.Error()) {
		t.Errorf("attempt %+v does not say the cap ended it", a)
	}
}

func TestLimits_ClosesConnectionWhoseHeadIsTooSlow(t *testing.T) {
	h := newHarness(t, Config{ReadHeaderTimeout: 100 * time.Millisecond})
	h.register()
	c := h.dial(jobSrc)
	io.WriteString(c, "GET http://allowed.test/ HTTP/1.1\r\nHost: all")
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read %v, want EOF", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %v", d)
	}
}

func TestLimits_IdleTunnelIsClosedButBusyOneIsNot(t *testing.T) {
	const idle = 200 * time.Millisecond
	h := newHarness(t, Config{IdleTimeout: idle})
	silent := tcpServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	// talker sends a byte every 50ms for 5 idle periods while the client
	// stays silent: the tunnel is busy one way, which must be enough.
	talker := tcpServer(t, func(c net.Conn) {
		for range 20 {
			if _, err := c.Write([]byte("t")); err != nil {
				return
			}
			time.Sleep(idle / 4)
		}
	})
	h.register(fmt.Sprintf("127.0.0.1:%d", silent), fmt.Sprintf("127.0.0.1:%d", talker))

	c, br := h.connect(t, silent)
	start := time.Now()
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("idle tunnel: read %v, want EOF", err)
	}
	if d := time.Since(start); d < idle/2 || d > 5*time.Second {
		t.Errorf("idle tunnel closed after %v, want about %v", d, idle)
	}
	c.Close()

	_, br = h.connect(t, talker)
	n, _ := io.Copy(io.Discard, br)
	if n != 20 {
		t.Errorf("busy tunnel carried %d of 20 bytes", n)
	}
}

func TestLimits_DialTimeoutAnswersBadGateway(t *testing.T) {
	h := newHarness(t, Config{DialTimeout: 100 * time.Millisecond, Dialer: func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	h.register("127.0.0.1:9")
	start := time.Now()
	code, _ := h.raw("CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
	if code != http.StatusBadGateway || time.Since(start) > 2*time.Second {
		t.Errorf("got %d after %v, want 502 soon after the dial timeout", code, time.Since(start))
	}
}

func TestLimits_ResponseHeaderTimeoutAnswersBadGateway(t *testing.T) {
	h := newHarness(t, Config{ResponseHeaderTimeout: 100 * time.Millisecond})
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { <-release })
	defer close(release)
	h.host("slow.test", "11.22.33.1", o)
	s := h.register("slow.test:80")
	if code, body, _ := h.get(jobSrc, "http://slow.test/"); code != http.StatusBadGateway {
		t.Errorf("got %d %q, want 502", code, body)
	}
	if log := s.Log(); len(log) != 1 || !log[0].Allowed || !strings.Contains(log[0].Reason, "upstream request failed") {
		t.Errorf("log %+v", log)
	}
}

func TestSession_CloseEndsOpenTunnels(t *testing.T) {
	h := newHarness(t, Config{})
	port := tcpServer(t, func(c net.Conn) { io.Copy(c, c) })
	s := h.register(fmt.Sprintf("127.0.0.1:%d", port))
	c, br := h.connect(t, port)
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	s.Close()
	if _, err := br.ReadByte(); err == nil {
		t.Error("tunnel still open after Session.Close")
	}
	waitFor(t, "the tunnel to be logged", func() bool { return len(s.Log()) == 1 })
}

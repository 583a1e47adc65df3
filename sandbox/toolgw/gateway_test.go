package toolgw

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testCap = "0123456789abcdef0123456789abcdef"

// echo allows everything and answers with what it was asked, and the
// capability it was given, which must be none.
func echo(_ context.Context, req Request) Response {
	if req.Cap != "" {
		return Response{ExitCode: -1, Reason: "the handler was given the capability"}
	}
	return Response{Allowed: true, Stdout: req.Tool + ":" + req.Target + ":" + strings.Join(req.Argv, " ") + "@" + req.Cwd, Reason: "test"}
}

func listen(t *testing.T, cfg Config) (*Gateway, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "tools.sock")
	cfg.Socket, cfg.UID, cfg.GID = sock, os.Getuid(), os.Getgid()
	if cfg.Capability == "" {
		cfg.Capability = testCap
	}
	if cfg.Handler == nil {
		cfg.Handler = echo
	}
	g, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g, sock
}

func TestGateway_RunsARequestWithTheJobsCapability(t *testing.T) {
	_, sock := listen(t, Config{})
	resp, err := Call(sock, Request{Cap: testCap, Argv: []string{"wc", "-c"}, Cwd: "/input"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Allowed || resp.Stdout != "::wc -c@/input" {
		t.Fatalf("response = %+v", resp)
	}
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want 0600", st.Mode().Perm())
	}
}

func TestGateway_PassesACommandLineAsIs(t *testing.T) {
	line := "cat /input/job.json && wc -c '/input/a b'"
	var got Request
	_, sock := listen(t, Config{Handler: func(_ context.Context, req Request) Response {
		got = req
		return Response{Allowed: true, Reason: "test"}
	}})
	resp, err := Call(sock, Request{Cap: testCap, Command: line, Cwd: "/"}, 5*time.Second)
	if err != nil || !resp.Allowed {
		t.Fatalf("response = %+v, %v", resp, err)
	}
	if got.Command != line || len(got.Argv) != 0 || got.Cap != "" || !got.IsExec() {
		t.Fatalf("handler got %+v", got)
	}
}

func TestGateway_PassesAToolCallWithoutItsCapability(t *testing.T) {
	_, sock := listen(t, Config{})
	resp, err := Call(sock, Request{Cap: testCap, Tool: "write", Target: "/tmp/a"}, 5*time.Second)
	if err != nil || !resp.Allowed || resp.Stdout != "write:/tmp/a:@" {
		t.Fatalf("response = %+v, %v", resp, err)
	}
	resp, err = Call(sock, Request{Cap: testCap, Tool: ToolExec, Argv: []string{"wc"}}, 5*time.Second)
	if err != nil || !resp.Allowed || resp.Stdout != "exec::wc@" {
		t.Fatalf("exec named as a tool: %+v, %v", resp, err)
	}
}

func TestGateway_RefusesAForgedCapabilityAndLocksAfterRepeatedGuesses(t *testing.T) {
	var handled atomic.Int32
	g, sock := listen(t, Config{Handler: func(ctx context.Context, req Request) Response {
		handled.Add(1)
		return echo(ctx, req)
	}})
	for i := range MaxBadCapabilities {
		resp, err := Call(sock, Request{Cap: "another-jobs-capability-0000000000", Argv: []string{"cat"}}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Allowed || resp.Reason != ReasonBadCapability {
			t.Fatalf("guess %d: %+v", i, resp)
		}
	}
	// Locked: even the right capability is refused now.
	resp, err := Call(sock, Request{Cap: testCap, Argv: []string{"cat"}}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Allowed || resp.Reason != ReasonLocked {
		t.Fatalf("after lockout: %+v", resp)
	}
	if handled.Load() != 0 {
		t.Fatalf("handler ran %d times", handled.Load())
	}
	if st := g.Stats(); st.Refused[ReasonBadCapability] != MaxBadCapabilities || st.Refused[ReasonLocked] != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestGateway_RefusesAFloodAndKeepsServing(t *testing.T) {
	g, sock := listen(t, Config{Rate: 5, Burst: 5})
	var wg sync.WaitGroup
	var allowed, refused atomic.Int32
	start := time.Now()
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := Call(sock, Request{Cap: testCap, Argv: []string{"cat"}}, 5*time.Second)
			switch {
			case err == nil && resp.Allowed:
				allowed.Add(1)
			default:
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	// The burst, plus what the bucket refilled while the flood lasted.
	most := 5 + int32(5*time.Since(start).Seconds()) + 1
	if allowed.Load() > most || allowed.Load()+refused.Load() != 50 {
		t.Fatalf("allowed %d, refused %d; want at most %d allowed", allowed.Load(), refused.Load(), most)
	}
	st := g.Stats()
	if st.Refused[ReasonRateLimited]+st.Refused[ReasonBusy] == 0 {
		t.Errorf("stats = %+v", st)
	}
	// The bucket refills with time: the gateway still serves a
	// well-behaved job once a second has passed on its clock.
	elapse(g, time.Second)
	if resp, err := Call(sock, Request{Cap: testCap, Argv: []string{"cat"}}, 5*time.Second); err != nil || !resp.Allowed {
		t.Fatalf("after the flood: %+v, %v", resp, err)
	}
}

func TestGateway_RefusesRequestsOverTheInFlightCap(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	_, sock := listen(t, Config{MaxInFlight: 1, Handler: func(ctx context.Context, req Request) Response {
		close(started)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return echo(ctx, req)
	}})
	done := make(chan Response, 1)
	go func() {
		resp, _ := Call(sock, Request{Cap: testCap, Argv: []string{"slow"}}, 5*time.Second)
		done <- resp
	}()
	<-started
	resp, err := Call(sock, Request{Cap: testCap, Argv: []string{"second"}}, 5*time.Second)
	if err != nil || resp.Allowed || resp.Reason != ReasonBusy {
		t.Fatalf("second request: %+v, %v; want busy", resp, err)
	}
	close(release)
	if r := <-done; !r.Allowed {
		t.Fatalf("first request: %+v", r)
	}
}

func TestGateway_RefusesMalformedAndOversizedFrames(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
	}{
		{"not JSON", frame([]byte("cat /etc/passwd"))},
		{"unknown field", frame([]byte(`{"cap":"` + testCap + `","argv":["cat"],"uid":0}`))},
		{"empty argv", frame([]byte(`{"cap":"` + testCap + `","argv":[]}`))},
		{"exec with a target", frame([]byte(`{"cap":"` + testCap + `","tool":"exec","argv":["cat"],"target":"/tmp/a"}`))},
		{"tool without a target", frame([]byte(`{"cap":"` + testCap + `","tool":"read"}`))},
		{"tool with an argv", frame([]byte(`{"cap":"` + testCap + `","tool":"read","target":"/tmp/a","argv":["cat"]}`))},
		{"tool with a cwd", frame([]byte(`{"cap":"` + testCap + `","tool":"read","target":"a","cwd":"/tmp"}`))},
		{"argv and a command line", frame([]byte(`{"cap":"` + testCap + `","argv":["cat"],"command":"cat"}`))},
		{"neither argv nor a command line", frame([]byte(`{"cap":"` + testCap + `","tool":"exec","cwd":"/"}`))},
		{"command line over its cap", frame([]byte(`{"cap":"` + testCap + `","command":"cat ` + strings.Repeat("a", MaxCommandBytes) + `"}`))},
		{"tool with a command line", frame([]byte(`{"cap":"` + testCap + `","tool":"read","target":"/tmp/a","command":"cat"}`))},
		{"tool with content", frame([]byte(`{"cap":"` + testCap + `","tool":"write","target":"/tmp/a","content":"x"}`))},
		{"oversized length", func() []byte {
			b := make([]byte, 4)
			binary.BigEndian.PutUint32(b, MaxRequestBytes+1)
			return b
		}()},
		{"truncated", frame([]byte(`{"cap":"` + testCap + `","argv":["cat"]}`))[:10]},
	}
	_, sock := listen(t, Config{ReadTimeout: 200 * time.Millisecond})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(tt.frame); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			var resp Response
			if err := ReadFrame(conn, &resp, MaxResponseBytes); err != nil {
				t.Fatal(err)
			}
			if resp.Allowed || resp.Reason != ReasonMalformed {
				t.Fatalf("response = %+v", resp)
			}
		})
	}
}

func TestGateway_CloseEndsRequestsInFlight(t *testing.T) {
	started := make(chan struct{})
	g, sock := listen(t, Config{Handler: func(ctx context.Context, req Request) Response {
		close(started)
		<-ctx.Done()
		return Response{ExitCode: -1, Reason: ReasonClosing}
	}})
	done := make(chan Response, 1)
	go func() {
		resp, _ := Call(sock, Request{Cap: testCap, Argv: []string{"wait"}}, 5*time.Second)
		done <- resp
	}()
	<-started
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.Allowed || r.Reason != ReasonClosing {
		t.Fatalf("response = %+v", r)
	}
}

// A request whose handling panics, a bug that the job's words provoked,
// ends that request's connection unanswered, counted and logged with the
// panic's value quoted and capped; the gateway serves the next request,
// and nothing of the request's goroutine is left (goleak, TestMain).
func TestGateway_APanickingRequestEndsOnlyItsConnection(t *testing.T) {
	// A file, as airlockd's log is, which the gateway's goroutines write
	// to while the test reads it.
	logs, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	g, sock := listen(t, Config{
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Handler: func(ctx context.Context, req Request) Response {
			if req.Argv[0] == "boom" {
				panicOn(req.Argv[1])
			}
			return echo(ctx, req)
		},
	})
	hostile := "\x1b[31mforged\nlevel=INFO msg=ok " + strings.Repeat("A", 4096)
	if resp, err := Call(sock, Request{Cap: testCap, Argv: []string{"boom", hostile}}, 5*time.Second); err == nil {
		t.Fatalf("the panicking request was answered: %+v", resp)
	}
	if st := g.Stats(); st.Refused[ReasonFailed] != 1 || st.Handled != 1 {
		t.Errorf("stats = %+v, want the request handled and counted as %s", st, ReasonFailed)
	}
	resp, err := Call(sock, Request{Cap: testCap, Argv: []string{"wc"}}, 5*time.Second)
	if err != nil || !resp.Allowed {
		t.Fatalf("the next request: %+v, %v", resp, err)
	}
	b, err := os.ReadFile(logs.Name())
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	if !strings.Contains(got, "tool gateway request panicked") || !strings.Contains(got, "toolgw.panicOn") {
		t.Errorf("the log does not hold the panic and its stack:\n%s", got)
	}
	if strings.Contains(got, "\x1b") || strings.Contains(got, "\nlevel=INFO") || strings.Contains(got, strings.Repeat("A", 1100)) {
		t.Errorf("the panic's value is logged raw or uncapped:\n%.2000s", got)
	}
}

// panicOn panics with the job's words, as a bug might.
func panicOn(words string) { panic("cannot handle " + words) }

func TestListen_TakesASocketPathLongerThanBindDoes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "tools.sock")
	g, err := Listen(Config{Socket: sock, Capability: testCap, Handler: echo, UID: os.Getuid(), GID: os.Getgid()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	// A client with a short path to the same socket reaches it.
	link := filepath.Join(t.TempDir(), "l")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	resp, err := Call(filepath.Join(link, "tools.sock"), Request{Cap: testCap, Argv: []string{"wc"}}, 5*time.Second)
	if err != nil || !resp.Allowed {
		t.Fatalf("call: %+v, %v", resp, err)
	}
}

func TestListen_RefusesAnOpenGateway(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	if _, err := Listen(Config{Socket: sock, Handler: echo}); err == nil {
		t.Fatal("listened without a capability")
	}
	if _, err := Listen(Config{Socket: sock, Capability: testCap}); err == nil {
		t.Fatal("listened without a handler")
	}
}

func frame(b []byte) []byte {
	out := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(out, uint32(len(b)))
	return append(out, b...)
}

// elapse moves the gateway's rate clock d into the past, as if d had
// passed since its last request, instead of waiting for it.
func elapse(g *Gateway, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.last = g.last.Add(-d)
}

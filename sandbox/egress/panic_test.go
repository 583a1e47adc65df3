package egress

import (
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock/airlock/sandbox/job"
)

// A connection whose serving panics, a bug that the job's request
// provoked (here in the hook the broker is told of attempts by), is closed
// unanswered and logged with the panic's value quoted and capped; the
// proxy goes on serving the other jobs, and the connection's goroutine is
// gone (Close waits for it; goleak, TestMain).
func TestEgress_APanickingConnectionEndsOnlyItself(t *testing.T) {
	logs := logFile(t)
	h := newHarness(t, Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	o := newOrigin(t, nil)
	h.host("allowed.test", "11.22.33.1", o)
	h.registerJob(JobPolicy{JobID: "job-panics", OnAttempt: func(a job.EgressAttempt) { panicOn(strings.Repeat(a.Host, 8)) }})
	const otherJob = "127.0.0.4"
	other, err := h.p.Register(netip.MustParseAddr(otherJob), JobPolicy{JobID: "job-other", Egress: rules(t, "allowed.test:80")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })

	hostile := "x" + strings.Repeat("A", 4096) + ".test"
	c := h.dial(jobSrc)
	if _, err := io.WriteString(c, "GET http://"+hostile+"/ HTTP/1.1\r\nHost: "+hostile+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Fatalf("the panicking connection was answered: %q", b)
	}
	if code, body, _ := h.get(otherJob, "http://allowed.test/"); code != http.StatusOK {
		t.Fatalf("the other job's request: %d %q", code, body)
	}
	got := readLog(t, logs)
	if !strings.Contains(got, "egress proxy connection panicked") || !strings.Contains(got, "job=job-panics") || !strings.Contains(got, "egress.panicOn") {
		t.Errorf("the log does not hold the panic, its job and its stack:\n%s", got)
	}
	if strings.Contains(got, strings.Repeat("A", 1100)) {
		t.Errorf("the panic's value is logged uncapped:\n%.2000s", got)
	}
}

// panicOn panics with the job's words, as a bug might.
func panicOn(words string) { panic("cannot handle " + words) }

// logFile is a log the proxy's goroutines write to while the test reads
// it, as airlockd's is.
func logFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readLog(t *testing.T, f *os.File) string {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

package egress

import (
	"bufio"
	"io"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/airlock/airlock/sandbox/job"
)

// hostileRequests are requests whose attempts would carry long job text
// in every string an attempt has.
var hostileRequests = []struct {
	name, req string
}{
	{"escapes in a long host", "GET http://" + strings.Repeat("a%", 3000) + "/ HTTP/1.1\r\nHost: x\r\n\r\n"},
	{"long invalid host", "GET http://" + strings.Repeat("é.", 500) + "-/ HTTP/1.1\r\nHost: x\r\n\r\n"},
	{"long Host header", "GET http://denied.test/ HTTP/1.1\r\nHost: " + strings.Repeat("h", 8000) + "\r\n\r\n"},
	{"long path", "GET http://denied.test/" + strings.Repeat("p", 12000) + " HTTP/1.1\r\nHost: denied.test\r\n\r\n"},
	{"long method", strings.Repeat("M", 12000) + " http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n"},
	{"long name not on the allowlist", "CONNECT " + strings.Repeat("n", 60) + "." + strings.Repeat("m", 60) + "." + strings.Repeat("o", 60) + ".test:443 HTTP/1.1\r\nHost: " + strings.Repeat("n", 60) + "." + strings.Repeat("m", 60) + "." + strings.Repeat("o", 60) + ".test:443\r\n\r\n"},
	{"bad bytes in the target", "GET http://denied.test/\xff\xfe\x01 HTTP/1.1\r\nHost: denied.test\r\n\r\n"},
}

// checkCapped fails for any string of a over its cap or not UTF-8.
func checkCapped(t *testing.T, a job.EgressAttempt) {
	t.Helper()
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"method", a.Method, maxAttemptMethod},
		{"host", a.Host, maxAttemptHost},
		{"path", a.Path, maxShownPath},
		{"reason", a.Reason, maxAttemptReason},
	} {
		if len(f.v) > f.max || !utf8.ValidString(f.v) {
			t.Errorf("%s is %d bytes (cap %d), valid UTF-8 %v: %.80q...", f.name, len(f.v), f.max, utf8.ValidString(f.v), f.v)
		}
	}
}

func TestLog_CapsEveryStringOfAnAttempt(t *testing.T) {
	for _, tc := range hostileRequests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			var mu sync.Mutex
			var notified []job.EgressAttempt
			s := h.registerJob(JobPolicy{JobID: "j", OnAttempt: func(a job.EgressAttempt) {
				mu.Lock()
				notified = append(notified, a)
				mu.Unlock()
			}})
			c := h.dial(jobSrc)
			io.WriteString(c, tc.req)
			readResponse(t, bufio.NewReader(c), "GET")
			waitFor(t, "the attempt", func() bool { return len(s.Log()) == 1 })
			a := s.Log()[0]
			if a.Allowed {
				t.Fatalf("attempt allowed: %+v", a)
			}
			checkCapped(t, a)
			mu.Lock()
			defer mu.Unlock()
			if len(notified) != 1 {
				t.Fatalf("OnAttempt got %d attempts", len(notified))
			}
			checkCapped(t, notified[0])
		})
	}
}

// One job's log stays within its caps however many attempts it makes, and
// what it leaves out is counted.
func TestLog_CapsEntriesAndBytesPerJobAndCountsTheRest(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		n    int
	}{
		{"defaults", Config{}, DefaultMaxLogEntries + 200},
		{"entries", Config{MaxLogEntries: 3}, 5},
		{"bytes", Config{MaxLogBytes: 2000}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			s := h.register()
			for i := range tc.n {
				req := hostileRequests[i%len(hostileRequests)].req
				c := h.dial(jobSrc)
				io.WriteString(c, req)
				readResponse(t, bufio.NewReader(c), "GET")
				c.Close()
			}
			waitFor(t, "every attempt", func() bool { return s.Stats().Denied == tc.n })
			log, st := s.Log(), s.Stats()
			maxEntries, maxBytes := cmpOr(tc.cfg.MaxLogEntries, DefaultMaxLogEntries), cmpOr(tc.cfg.MaxLogBytes, DefaultMaxLogBytes)
			size := 0
			for _, a := range log {
				size += attemptSize(a)
				checkCapped(t, a)
			}
			t.Logf("%d attempts: %d kept in %d bytes, %d dropped", tc.n, len(log), size, st.Dropped)
			if len(log) > maxEntries || size > maxBytes {
				t.Errorf("log holds %d entries in %d bytes, caps %d and %d", len(log), size, maxEntries, maxBytes)
			}
			if st.Dropped == 0 || st.Dropped != tc.n-len(log) {
				t.Errorf("dropped %d, want %d", st.Dropped, tc.n-len(log))
			}
		})
	}
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func TestCapText_CutsAtARuneAndMarksTheCut(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"a bit too long", 10, "a bit t..."},
		{"ééééé", 8, "éé..."},
		{"bad \xff byte", 40, "bad \uFFFD byte"},
	} {
		if got := capText(tc.in, tc.n); got != tc.want || len(got) > tc.n {
			t.Errorf("capText(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

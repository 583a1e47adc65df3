package egress

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/airlock/airlock/sandbox/job"
)

// An attempt's Rule names the profile entry or service alias that allowed
// it, and nothing else: however many hosts a job invents, the labels it
// can produce are the policy's entries and "".
func TestAttempt_RuleComesFromThePolicyNeverFromTheJob(t *testing.T) {
	m := newModelAPI(t)
	h := serviceHarness(t, m)
	o := newOrigin(t, nil)
	echo := tcpServer(t, func(c net.Conn) { io.Copy(c, c) })
	h.host("allowed.test", "11.22.33.1", o)
	var wild []string
	for i := range 20 {
		name := fmt.Sprintf("x%d-invented.wild.test", i)
		h.host(name, "11.22.33.2", o)
		wild = append(wild, name)
	}
	h.names["unreachable.test"] = nil // resolves to nothing: allowed, then fails
	entries := []string{"allowed.test:80", "*.wild.test:80", "unreachable.test:80", fmt.Sprintf("127.0.0.1:%d", echo), "127.0.0.1:9"}
	var mu sync.Mutex
	notified := map[string]string{}
	s := h.registerJob(JobPolicy{
		JobID:    "rules",
		Egress:   rules(t, entries...),
		Services: map[string]job.Service{"model": {Upstream: m.URL + "/v1", Header: "authorization", Secret: []byte(testSecret)}},
		OnAttempt: func(a job.EgressAttempt) {
			mu.Lock()
			notified[attemptKey(a.Method, a.Host, a.Port, a.Path)] = a.Rule
			mu.Unlock()
		},
	})

	// Each case is one attempt, told apart in the log by method, host
	// and path, since attempts on separate connections may be recorded
	// in any order.
	type want struct {
		method, target, path, rule string
	}
	cases := []want{
		{"GET", "allowed.test", "/", "allowed.test:80"},
		{"GET", "ALLOWED.Test.", "/a", "allowed.test:80"},
		{"GET", "unreachable.test", "/", ""}, // resolves to nothing: refused
		{"CONNECT", fmt.Sprintf("127.0.0.1:%d", echo), "", fmt.Sprintf("127.0.0.1:%d", echo)},
		{"CONNECT", "127.0.0.1:9", "", "127.0.0.1:9"}, // allowed, then the dial fails
		{"GET", "model.airlock.internal", "/models", "service:model"},
		{"GET", "other.airlock.internal", "/", ""},
		{"TRACE", "model.airlock.internal", "/", ""},
		{"GET", "model.airlock.internal", "/a/../b", ""},
		{"GET", "invented-host-1.test", "/", ""},
		{"GET", "127.0.0.1:10", "/", ""},
	}
	for _, name := range wild {
		cases = append(cases, want{"GET", name, "/", "*.wild.test:80"})
	}
	byKey := map[string]string{}
	for _, tc := range cases {
		c := h.dial(jobSrc)
		if tc.method == "CONNECT" {
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", tc.target, tc.target)
			bufio.NewReader(c).ReadString('\n')
		} else {
			fmt.Fprintf(c, "%s http://%s%s HTTP/1.1\r\nHost: %s\r\n\r\n", tc.method, tc.target, tc.path, tc.target)
			readResponse(t, bufio.NewReader(c), tc.method)
		}
		c.Close()
	}
	waitFor(t, "every attempt", func() bool { return len(s.Log()) == len(cases) })
	for _, a := range s.Log() {
		byKey[attemptKey(a.Method, a.Host, a.Port, a.Path)] = a.Rule
	}

	labels := map[string]bool{}
	for i, a := range s.Log() {
		labels[a.Rule] = true
		if (a.Rule != "") != a.Allowed {
			t.Errorf("attempt %d: allowed %v with rule %q (%s)", i, a.Allowed, a.Rule, a.Reason)
		}
	}
	for _, tc := range cases {
		host, port, err := net.SplitHostPort(tc.target)
		if err != nil {
			host, port = strings.TrimSuffix(strings.ToLower(tc.target), "."), "80"
		}
		p, _ := strconv.Atoi(port)
		key := attemptKey(tc.method, host, uint16(p), tc.path)
		if got, ok := byKey[key]; !ok || got != tc.rule {
			t.Errorf("%s: rule %q (logged %v), want %q", key, got, ok, tc.rule)
		}
	}
	allowed := map[string]bool{"": true, "service:model": true}
	for _, e := range entries {
		allowed[e] = true
	}
	for l := range labels {
		if !allowed[l] {
			t.Errorf("rule %q is not an entry of the policy", l)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range s.Log() {
		if got := notified[attemptKey(a.Method, a.Host, a.Port, a.Path)]; got != a.Rule {
			t.Errorf("OnAttempt saw rule %q for %s %s, the log %q", got, a.Method, a.Host, a.Rule)
		}
	}
	t.Logf("%d attempts, labels %q", len(cases), slices.Sorted(maps.Keys(labels)))
}

func attemptKey(method, host string, port uint16, path string) string {
	return fmt.Sprintf("%s %s:%d%s", method, host, port, path)
}

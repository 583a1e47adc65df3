//go:build integration

package integration

import (
	"fmt"
	"testing"
	"time"
)

// pollInterval is how often eventually looks again. The conditions are
// not free (containerd RPCs, a /proc scan, a metrics scrape, a spawn), and
// the daemon they ask is often the one being waited on, on a shared
// machine: looking more often would slow what it waits for.
const pollInterval = 100 * time.Millisecond

// eventually waits until cond holds, looking every pollInterval, and fails
// the test with what it waited for once timeout has passed. It is how the
// suite waits on something observable (a file, a metric, a process, a
// count) instead of sleeping and hoping.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	if !waitFor(timeout, cond) {
		t.Fatalf("after %v: %s", timeout, fmt.Sprintf(format, args...))
	}
}

// waitFor reports whether cond held within timeout, for callers that
// decide themselves what a timeout means.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
}

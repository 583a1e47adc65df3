package anomaly

import (
	"testing"
	"time"
)

func TestDetector_ReportsOnceWhenOverTheLimitInAWindow(t *testing.T) {
	now := time.Unix(0, 0)
	var bursts []string
	d := New(map[string]Rule{"auth": {Limit: 3, Window: time.Minute}}, func(kind, key string, n int) {
		bursts = append(bursts, kind+"/"+key)
	})
	d.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		d.Observe("auth", "peer")
	}
	if len(bursts) != 0 {
		t.Fatalf("burst at the limit: %v", bursts)
	}
	d.Observe("auth", "peer")
	d.Observe("auth", "peer")
	if len(bursts) != 1 {
		t.Fatalf("bursts = %v, want exactly one", bursts)
	}
	d.Observe("auth", "other")
	now = now.Add(time.Minute)
	for i := 0; i < 4; i++ {
		d.Observe("auth", "peer")
	}
	if len(bursts) != 2 {
		t.Fatalf("a new window's burst: %v", bursts)
	}
	d.Observe("unknown", "x")
	if len(bursts) != 2 {
		t.Fatalf("a kind without a rule burst: %v", bursts)
	}
}

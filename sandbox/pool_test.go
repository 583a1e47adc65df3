package sandbox

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWarmPool_ShouldDrain(t *testing.T) {
	defer func(f func() (int64, error)) { memAvailable = f }(memAvailable)
	for _, tc := range []struct {
		name      string
		avail     int64
		availErr  error
		idleFor   time.Duration
		maxIdle   time.Duration
		want      string
		wantsMore bool
	}{
		{name: "plenty", avail: 8 << 30, idleFor: time.Minute, maxIdle: time.Hour, wantsMore: true},
		{name: "pressure", avail: 100 << 20, want: "memory pressure", wantsMore: true},
		{name: "idle", avail: 8 << 30, idleFor: 2 * time.Hour, maxIdle: time.Hour, want: "no claim"},
		{name: "never idle", avail: 8 << 30, idleFor: 100 * time.Hour, wantsMore: true},
		// An unreadable meminfo is no reason to drain, nor to fill blind:
		// the pool stays bounded by its size either way.
		{name: "meminfo unreadable", availErr: errors.New("no /proc"), wantsMore: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			memAvailable = func() (int64, error) { return tc.avail, tc.availErr }
			wp := &warmPool{cfg: PoolConfig{Size: 1, MaxIdle: tc.maxIdle, MinAvailable: 512 << 20}, lastClaim: time.Now().Add(-tc.idleFor)}
			got := wp.shouldDrain()
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("shouldDrain() = %q, want %q", got, tc.want)
			}
			if wp.wants() != tc.wantsMore {
				t.Errorf("wants() = %v, want %v", wp.wants(), tc.wantsMore)
			}
		})
	}
}

func TestReadMemAvailable(t *testing.T) {
	n, err := readMemAvailable()
	if err != nil {
		t.Fatal(err)
	}
	if n <= 0 {
		t.Errorf("MemAvailable = %d", n)
	}
}

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func msList(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile_NearestRank(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value is every percentile", msList(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100 is 50", msList(hundred...), 50, 50 * time.Millisecond},
		{"p95 of 1..100 is 95", msList(hundred...), 95, 95 * time.Millisecond},
		{"p99 of 1..100 is 99", msList(hundred...), 99, 99 * time.Millisecond},
		{"p50 of an even count is the lower middle", msList(10, 20, 30, 40), 50, 20 * time.Millisecond},
		{"p99 of few values is the largest", msList(10, 20, 30, 40), 99, 40 * time.Millisecond},
		{"p0 is the smallest", msList(10, 20, 30), 0, 10 * time.Millisecond},
		{"p100 is the largest", msList(10, 20, 30), 100, 30 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestCompute_SortsAndSummarises(t *testing.T) {
	s := Compute(msList(40, 10, 30, 20), 1, 2*time.Second)
	if s.N != 5 || s.Failures != 1 {
		t.Errorf("N, Failures = %d, %d, want 5, 1", s.N, s.Failures)
	}
	checks := map[string][2]time.Duration{
		"P50": {s.P50, 20 * time.Millisecond}, "P95": {s.P95, 40 * time.Millisecond},
		"P99": {s.P99, 40 * time.Millisecond}, "Mean": {s.Mean, 25 * time.Millisecond},
		"Min": {s.Min, 10 * time.Millisecond}, "Max": {s.Max, 40 * time.Millisecond},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %v, want %v", name, c[0], c[1])
		}
	}
	// Throughput counts successful jobs only.
	if s.JobsPerSec != 2 {
		t.Errorf("JobsPerSec = %v, want 2 (4 successes in 2s)", s.JobsPerSec)
	}
}

func TestCompute_AllFailedHasNoLatencies(t *testing.T) {
	s := Compute(nil, 3, time.Second)
	if s.N != 3 || s.Failures != 3 || s.P50 != 0 || s.JobsPerSec != 0 {
		t.Errorf("Compute(nil, 3) = %+v", s)
	}
}

func TestCompute_DoesNotReorderCallersSlice(t *testing.T) {
	in := msList(3, 1, 2)
	Compute(in, 0, time.Second)
	if in[0] != 3*time.Millisecond {
		t.Errorf("Compute sorted the caller's slice: %v", in)
	}
}

func TestMerge_PoolsRoundsAndSumsWall(t *testing.T) {
	a := Compute(msList(10, 30), 1, time.Second)
	a.Errors = []string{"boom"}
	b := Compute(msList(20, 40), 0, time.Second)
	b.Errors = []string{"boom", "bang"}
	m := Merge(a, b)
	if m.N != 5 || m.Failures != 1 || m.Wall != 2*time.Second || m.JobsPerSec != 2 {
		t.Errorf("Merge = N %d failures %d wall %v jobs/s %v", m.N, m.Failures, m.Wall, m.JobsPerSec)
	}
	if m.P50 != 20*time.Millisecond || m.Max != 40*time.Millisecond {
		t.Errorf("Merge P50, Max = %v, %v; want 20ms, 40ms", m.P50, m.Max)
	}
	if strings.Join(m.Errors, ",") != "boom,bang" {
		t.Errorf("Merge errors = %q, want each message once", m.Errors)
	}
}

func TestStats_JSONInMilliseconds(t *testing.T) {
	b, err := json.Marshal(Compute(msList(1, 2, 3), 0, 1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["p50_ms"] != 2.0 || got["wall_ms"] != 1500.0 || got["jobs_per_sec"] != 2.0 {
		t.Errorf("JSON = %s", b)
	}
	if _, ok := got["Latencies"]; ok {
		t.Errorf("JSON carries raw latencies: %s", b)
	}
}

func TestDrive_RunsEveryJobWithinConcurrency(t *testing.T) {
	var running, peak, calls atomic.Int32
	s, err := drive(context.Background(), 12, 3, 0, func(context.Context) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if calls.Add(1)%4 == 0 {
			return errors.New("every fourth fails")
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 12 || s.N != 12 || s.Failures != 3 {
		t.Errorf("calls %d, N %d, failures %d; want 12, 12, 3", calls.Load(), s.N, s.Failures)
	}
	if peak.Load() > 3 {
		t.Errorf("%d jobs ran at once, want at most 3", peak.Load())
	}
	if len(s.Errors) != 1 || s.Errors[0] != "every fourth fails" {
		t.Errorf("Errors = %q", s.Errors)
	}
}

func TestDrive_StopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	_, err := drive(ctx, 100, 1, 0, func(context.Context) error {
		if calls.Add(1) == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if calls.Load() > 3 {
		t.Errorf("%d jobs ran after cancel", calls.Load())
	}
}

func TestDrive_RefusesNoJobsOrWorkers(t *testing.T) {
	for _, nc := range [][2]int{{0, 1}, {1, 0}} {
		if _, err := drive(context.Background(), nc[0], nc[1], 0, func(context.Context) error { return nil }); err == nil {
			t.Errorf("drive(n=%d, c=%d) did not fail", nc[0], nc[1])
		}
	}
}

func TestMerge_WeighsPhasesByRuns(t *testing.T) {
	var one, three phaseTimer
	one.add(map[string]time.Duration{PhaseTask: 40 * time.Millisecond})
	for range 3 {
		three.add(map[string]time.Duration{PhaseTask: 20 * time.Millisecond, PhaseRun: 10 * time.Millisecond})
	}
	a, b := Compute(msList(50), 0, time.Second), Compute(msList(30, 30, 30), 0, time.Second)
	one.into(&a)
	three.into(&b)
	if a.Phases[PhaseTask] != 40*time.Millisecond || b.Phases[PhaseTask] != 20*time.Millisecond {
		t.Fatalf("phases = %v, %v", a.Phases, b.Phases)
	}
	m := Merge(a, b)
	if m.Phases[PhaseTask] != 25*time.Millisecond {
		t.Errorf("merged task phase = %v, want 25ms ((40 + 3*20) / 4)", m.Phases[PhaseTask])
	}
	if m.Phases[PhaseRun] != 7500*time.Microsecond {
		t.Errorf("merged run phase = %v, want 7.5ms (30ms over 4 runs)", m.Phases[PhaseRun])
	}
}

func TestStats_NoPhasesWithoutTimedRuns(t *testing.T) {
	var pt phaseTimer
	s := Compute(msList(1), 0, time.Second)
	pt.into(&s)
	if s.Phases != nil || Merge(s).Phases != nil {
		t.Errorf("phases = %v, want none", s.Phases)
	}
}

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// maxErrors bounds the distinct failure messages a Stats keeps: a broken
// setup fails every job the same way, and one message says it.
const maxErrors = 5

// Stats summarises one system's run: latency percentiles over the jobs that
// succeeded, and throughput over the run's wall time.
type Stats struct {
	// N is the number of jobs attempted.
	N int
	// Failures counts jobs that did not end with a valid result: an RPC
	// error or a non-OK verdict for the broker, a non-zero exit or a missing
	// result.json for the baselines.
	Failures int
	// P50, P95 and P99 are nearest-rank percentiles of the successful jobs'
	// latencies; Mean, Min and Max are over the same jobs.
	P50, P95, P99, Mean, Min, Max time.Duration
	// JobsPerSec is successful jobs divided by Wall.
	JobsPerSec float64
	// Wall is the time from the first job's start to the last job's end,
	// summed over the runs merged into this Stats.
	Wall time.Duration
	// Errors are the first few distinct failure messages.
	Errors []string
	// Latencies are the successful jobs' latencies, kept so that runs can
	// be merged.
	Latencies []time.Duration
	// Phases are the mean time of each step of a successful run, for a
	// system that times its steps; nil otherwise.
	Phases map[string]time.Duration

	// phaseSums and phaseRuns let Merge weight each run's phases.
	phaseSums map[string]time.Duration
	phaseRuns int
}

// phaseTimer sums the step times of successful runs across workers.
type phaseTimer struct {
	mu   sync.Mutex
	sums map[string]time.Duration
	runs int
}

// add records one successful run's steps.
func (t *phaseTimer) add(steps map[string]time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sums == nil {
		t.sums = map[string]time.Duration{}
	}
	for k, v := range steps {
		t.sums[k] += v
	}
	t.runs++
}

// into sets s's phases from what was recorded.
func (t *phaseTimer) into(s *Stats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.setPhases(t.sums, t.runs)
}

func (s *Stats) setPhases(sums map[string]time.Duration, runs int) {
	if runs == 0 {
		return
	}
	s.phaseSums, s.phaseRuns = sums, runs
	s.Phases = make(map[string]time.Duration, len(sums))
	for k, v := range sums {
		s.Phases[k] = v / time.Duration(runs)
	}
}

// Compute summarises successful latencies, a failure count and the wall
// time they took.
func Compute(latencies []time.Duration, failures int, wall time.Duration) Stats {
	s := Stats{N: len(latencies) + failures, Failures: failures, Wall: wall}
	s.Latencies = slices.Clone(latencies)
	slices.Sort(s.Latencies)
	if len(s.Latencies) == 0 {
		return s
	}
	var sum time.Duration
	for _, l := range s.Latencies {
		sum += l
	}
	s.Mean = sum / time.Duration(len(s.Latencies))
	s.Min, s.Max = s.Latencies[0], s.Latencies[len(s.Latencies)-1]
	s.P50 = Percentile(s.Latencies, 50)
	s.P95 = Percentile(s.Latencies, 95)
	s.P99 = Percentile(s.Latencies, 99)
	if wall > 0 {
		s.JobsPerSec = float64(len(s.Latencies)) / wall.Seconds()
	}
	return s
}

// Percentile is the nearest-rank p-th percentile of sorted: the smallest
// value that at least p percent of the values do not exceed. It is always
// one of the measured values, never an interpolation.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// Merge combines runs of the same system, such as the rounds of an
// interleaved benchmark, into one Stats.
func Merge(runs ...Stats) Stats {
	var (
		lat       []time.Duration
		failures  int
		wall      time.Duration
		errs      []string
		phaseSums = map[string]time.Duration{}
		phaseRuns int
	)
	for _, r := range runs {
		for k, v := range r.phaseSums {
			phaseSums[k] += v
		}
		phaseRuns += r.phaseRuns
		lat = append(lat, r.Latencies...)
		failures += r.Failures
		wall += r.Wall
		for _, e := range r.Errors {
			if len(errs) < maxErrors && !slices.Contains(errs, e) {
				errs = append(errs, e)
			}
		}
	}
	s := Compute(lat, failures, wall)
	s.Errors = errs
	s.setPhases(phaseSums, phaseRuns)
	return s
}

// MarshalJSON writes durations as milliseconds, which is what a reader of
// benchmark output compares, and leaves out the raw latencies.
func (s Stats) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		N          int                `json:"n"`
		Failures   int                `json:"failures"`
		P50        float64            `json:"p50_ms"`
		P95        float64            `json:"p95_ms"`
		P99        float64            `json:"p99_ms"`
		Mean       float64            `json:"mean_ms"`
		Min        float64            `json:"min_ms"`
		Max        float64            `json:"max_ms"`
		JobsPerSec float64            `json:"jobs_per_sec"`
		Wall       float64            `json:"wall_ms"`
		Errors     []string           `json:"errors,omitempty"`
		Phases     map[string]float64 `json:"phases_mean_ms,omitempty"`
	}{s.N, s.Failures, ms(s.P50), ms(s.P95), ms(s.P99), ms(s.Mean), ms(s.Min), ms(s.Max),
		round(s.JobsPerSec, 2), ms(s.Wall), s.Errors, msMap(s.Phases)})
}

func msMap(m map[string]time.Duration) map[string]float64 {
	if m == nil {
		return nil
	}
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = ms(v)
	}
	return out
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 2) }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// drive runs n jobs on c workers and times each call of job, which returns
// an error for a job that failed. With an interval, it hands out a job at
// most once per interval. It stops handing out jobs once ctx ends, and then
// returns ctx's error.
func drive(ctx context.Context, n, c int, interval time.Duration, job func(ctx context.Context) error) (Stats, error) {
	if n < 1 || c < 1 {
		return Stats{}, fmt.Errorf("bench: need at least one job and one worker, have %d and %d", n, c)
	}
	c = min(c, n)
	var (
		mu       sync.Mutex
		lat      = make([]time.Duration, 0, n)
		failures int
		errs     []string
		wg       sync.WaitGroup
	)
	next := make(chan struct{})
	start := time.Now()
	for range c {
		wg.Go(func() {
			for range next {
				t := time.Now()
				err := job(ctx)
				d := time.Since(t)
				mu.Lock()
				if err != nil {
					failures++
					if msg := err.Error(); len(errs) < maxErrors && !slices.Contains(errs, msg) {
						errs = append(errs, msg)
					}
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		})
	}
	handed := 0
feed:
	for ; handed < n; handed++ {
		if interval > 0 && handed > 0 {
			select {
			case <-time.After(interval):
			case <-ctx.Done():
				break feed
			}
		}
		select {
		case next <- struct{}{}:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	wall := time.Since(start)
	if err := ctx.Err(); err != nil && handed < n {
		return Stats{}, err
	}
	s := Compute(lat, failures, wall)
	s.Errors = errs
	return s, nil
}

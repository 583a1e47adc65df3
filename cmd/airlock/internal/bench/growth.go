package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// The gauges a growth check reads from airlockd's metrics: broker/metrics
// registers the Go and process collectors, which export them.
const (
	GaugeGoroutines = "go_goroutines"
	GaugeOpenFDs    = "process_open_fds"
	GaugeRSS        = "process_resident_memory_bytes"
	GaugeHeapInuse  = "go_memstats_heap_inuse_bytes"
)

// growthGauges are scraped at every sample, in the order reports print them.
var growthGauges = []string{GaugeGoroutines, GaugeOpenFDs, GaugeHeapInuse, GaugeRSS}

const (
	// DefaultSettle bounds how long a growth check waits, before each of
	// its two samples, for airlockd's goroutines and descriptors to stop
	// dropping: the last job's teardown may still be finishing.
	DefaultSettle = 30 * time.Second
	// settleInterval is the time between polls while settling, and
	// settleSteady how many polls in a row without a drop count as
	// settled.
	settleInterval = 500 * time.Millisecond
	settleSteady   = 3
	// growthProgressEvery is how many jobs go by between progress lines.
	growthProgressEvery = 100
)

// GrowthConfig configures RunGrowth.
type GrowthConfig struct {
	// Broker is a connected client of the airlockd under test.
	Broker airlockv1.BrokerClient
	// Options are the jobs; Concurrency is ignored: they run one at a time.
	Options Options
	// Warmup jobs run before the first sample, so that what a broker
	// builds once (connections, caches, pools) is not counted as growth.
	Warmup int
	// MetricsURL is airlockd's Prometheus endpoint (required).
	MetricsURL string
	// PprofURL is the base of airlockd's --pprof server, such as
	// http://127.0.0.1:6060. With it, each heap sample follows a forced
	// garbage collection; without it the heap holds an unknown amount of
	// garbage and is reported, not judged.
	PprofURL string
	// StateDir is airlockd's --state-dir, where its leftovers are counted.
	StateDir string
	// Settle bounds the wait before each sample; zero is DefaultSettle.
	Settle time.Duration
	// Progress, when set, gets a line as each part of the run starts.
	Progress io.Writer
}

// GrowthSample is one reading of airlockd's gauges and the host.
type GrowthSample struct {
	// Gauges holds the value of each of growthGauges.
	Gauges    map[string]float64
	Leftovers Leftovers
	// At is when the sample was taken.
	At time.Time
}

// RunGrowth runs cfg.Options.N jobs one at a time after cfg.Warmup, and
// compares airlockd's goroutines, descriptors, heap and resident memory
// and the host's leftovers before and after them.
func RunGrowth(ctx context.Context, cfg GrowthConfig) (*GrowthReport, error) {
	o := cfg.Options
	switch {
	case cfg.Broker == nil:
		return nil, errors.New("bench: no broker connection")
	case o.Profile == "":
		return nil, errors.New("bench: a profile is required")
	case o.N < 1:
		return nil, fmt.Errorf("bench: -n %d: need at least one job", o.N)
	case cfg.MetricsURL == "":
		return nil, errors.New("bench: a growth check reads airlockd's goroutines, descriptors and memory from its metrics: set --metrics-url (airlockd --metrics-listen)")
	case cfg.StateDir == "":
		return nil, errors.New("bench: a growth check counts leftovers under airlockd's state dir: set --state-dir")
	}
	settle := cfg.Settle
	if settle <= 0 {
		settle = DefaultSettle
	}
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	// A fresh connection per request: an idle keep-alive connection is a
	// goroutine and a descriptor in airlockd that one sample would see
	// and the other might not.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	s := growthSampler{client: hc, metricsURL: cfg.MetricsURL, pprofURL: strings.TrimSuffix(cfg.PprofURL, "/"), stateDir: cfg.StateDir}

	// Fail fast on a wrong URL or state dir, before any job runs.
	if _, err := s.gauges(ctx); err != nil {
		return nil, err
	}
	if _, err := CountLeftovers(cfg.StateDir); err != nil {
		return nil, err
	}
	if s.pprofURL != "" {
		if err := s.forceGC(ctx); err != nil {
			return nil, err
		}
	}
	p, err := ProfileOf(ctx, cfg.Broker, o.Profile)
	if err != nil {
		return nil, err
	}
	o.Concurrency = 1
	rep := &GrowthReport{
		Profile: p.Name, PolicySummary: p.Summary(), N: o.N, Warmup: cfg.Warmup,
		CPUs: runtime.NumCPU(), LoadBefore: loadAvg(), StateDir: cfg.StateDir, ForcedGC: s.pprofURL != "",
	}
	if cfg.Warmup > 0 {
		progress("warm-up: %d job(s)", cfg.Warmup)
		wo := o
		wo.N = cfg.Warmup
		st, err := RunBroker(ctx, cfg.Broker, wo)
		if err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		if st.Failures > 0 {
			return nil, fmt.Errorf("warm-up: %d of %d jobs failed: %s", st.Failures, st.N, strings.Join(st.Errors, "; "))
		}
	}
	progress("settling, then sampling (at most %v)", settle)
	before, err := s.settled(ctx, settle)
	if err != nil {
		return nil, err
	}
	var runs []Stats
	for done := 0; done < o.N; {
		chunk := o
		chunk.N = min(growthProgressEvery, o.N-done)
		st, err := RunBroker(ctx, cfg.Broker, chunk)
		if err != nil {
			return nil, err
		}
		runs = append(runs, st)
		done += chunk.N
		progress("%d/%d jobs, %d failed so far", done, o.N, Merge(runs...).Failures)
	}
	rep.Jobs = Merge(runs...)
	progress("settling, then sampling (at most %v)", settle)
	after, err := s.settled(ctx, settle)
	if err != nil {
		return nil, err
	}
	rep.LoadAfter = loadAvg()
	rep.Before, rep.After = before, after
	rep.Metrics = JudgeGrowth(before, after, rep.ForcedGC)
	return rep, nil
}

// growthSampler reads airlockd's gauges and the host's leftovers.
type growthSampler struct {
	client     *http.Client
	metricsURL string
	pprofURL   string
	stateDir   string
}

// settled waits, up to bound, for the goroutines and descriptors to stop
// dropping, then forces a collection if it can and takes the sample. It
// is not a timed assertion: it only lets teardown still in flight finish.
func (s growthSampler) settled(ctx context.Context, bound time.Duration) (GrowthSample, error) {
	goroutines, fds, err := settle(ctx, s.gauges, settleInterval, bound)
	if err != nil {
		return GrowthSample{}, err
	}
	if s.pprofURL != "" {
		if err := s.forceGC(ctx); err != nil {
			return GrowthSample{}, err
		}
	}
	g, err := s.gauges(ctx)
	if err != nil {
		return GrowthSample{}, err
	}
	// The counts come from the settled polls: this scrape may still see
	// the connection of the one before it closing.
	g[GaugeGoroutines], g[GaugeOpenFDs] = goroutines, fds
	l, err := CountLeftovers(s.stateDir)
	if err != nil {
		return GrowthSample{}, err
	}
	return GrowthSample{Gauges: g, Leftovers: l, At: time.Now()}, nil
}

// settle polls every interval until goroutines and descriptors have not
// dropped for settleSteady polls in a row, or bound has passed. It returns
// the least of each over those last polls: a leak is in every one of them,
// work in flight, such as a previous request's connection closing, in
// some only.
func settle(ctx context.Context, read func(context.Context) (map[string]float64, error), interval, bound time.Duration) (goroutines, fds float64, err error) {
	prev, err := read(ctx)
	if err != nil {
		return 0, 0, err
	}
	goroutines, fds = prev[GaugeGoroutines], prev[GaugeOpenFDs]
	deadline := time.Now().Add(bound)
	for steady := 0; steady < settleSteady && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(interval):
		}
		cur, err := read(ctx)
		if err != nil {
			return 0, 0, err
		}
		g, f := cur[GaugeGoroutines], cur[GaugeOpenFDs]
		if g < prev[GaugeGoroutines] || f < prev[GaugeOpenFDs] {
			steady, goroutines, fds = 0, g, f
		} else {
			steady++
			goroutines, fds = min(goroutines, g), min(fds, f)
		}
		prev = cur
	}
	return goroutines, fds, nil
}

// forceGC asks airlockd's pprof server for a heap profile after a
// collection (gc=1), so the next heap sample holds live objects only.
func (s growthSampler) forceGC(ctx context.Context) error {
	url := s.pprofURL + "/debug/pprof/heap?gc=1"
	body, err := get(ctx, s.client, url)
	if err != nil {
		return fmt.Errorf("%w (airlockd --pprof)", err)
	}
	defer body.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(body, maxMetricsBytes))
	return err
}

// gauges scrapes the growth gauges from airlockd's metrics.
func (s growthSampler) gauges(ctx context.Context) (map[string]float64, error) {
	body, err := get(ctx, s.client, s.metricsURL)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return parseGauges(io.LimitReader(body, maxMetricsBytes), growthGauges...)
}

// get returns the body of a GET answered with 200.
func get(ctx context.Context, c *http.Client, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp.Body, nil
}

// parseGauges picks the unlabelled samples of the named metrics out of the
// Prometheus text format. A name that is missing is an error: a growth
// check without it would judge nothing.
func parseGauges(r io.Reader, names ...string) (map[string]float64, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		// "name value" or "name value timestamp"; a labelled sample
		// ("name{...} value") is not a whole-process gauge.
		fields := strings.Fields(line)
		if len(fields) < 2 || !want[fields[0]] {
			continue
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: %q: %w", line, err)
		}
		out[fields[0]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var missing []string
	for _, n := range names {
		if _, ok := out[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("metrics: no %s (is this airlockd's metrics endpoint?)", strings.Join(missing, ", "))
	}
	return out, nil
}

// Package bench measures Airlock's spawn latency and throughput against a
// running airlockd, and, on the same machine and in the same run, the two
// floors it is built on: containerd driven directly through its Go client,
// and a raw `runc run` of an equivalent bundle. The baselines run the same
// agent binary on the same job under the same OCI spec as Airlock, so the
// ratios isolate what the broker adds.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies/policy"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// System names, as reports print them.
const (
	SystemAirlock    = "airlock"
	SystemContainerd = "containerd client"
	SystemRunc       = "runc run"
	// SystemCrun is raw crun, which runs beside raw runc when the
	// profile's runtime is crun.
	SystemCrun = "crun run"
	// SystemRunsc is raw runsc, with the flags Airlock gives it, which
	// runs beside raw runc when the profile's runtime is runsc.
	SystemRunsc = "runsc run"
)

// Config configures Run.
type Config struct {
	// Broker is a connected client of the airlockd under test.
	Broker airlockv1.BrokerClient
	// Options are the jobs: N and Concurrency apply to every system, the
	// rest to what each job runs. Profile is required.
	Options Options
	// Warmup jobs run one at a time on each system before anything is
	// measured, so that the first measured run does not pay for cold page
	// caches and a failing setup stops the benchmark at once.
	Warmup int
	// Rounds splits the N jobs of each system into rounds that take turns,
	// starting with a different system each round, so that load from
	// elsewhere on the host falls on all systems alike. Zero means one.
	Rounds int
	// Baselines runs the containerd-client and raw runc baselines.
	Baselines bool
	// ContainerdAddress is the containerd the baselines use: the one that
	// airlockd uses, which holds its images.
	ContainerdAddress string
	// WorkDir holds the baselines' bundles and job directories; empty is
	// the system temp dir.
	WorkDir string
	// BrokerPID is airlockd's process, whose CPU time and memory are
	// measured over the broker's runs; zero skips the measurement.
	BrokerPID int
	// MetricsURL is airlockd's Prometheus endpoint; when set, the report
	// has the mean time of each spawn phase.
	MetricsURL string
	// Progress, when set, gets a line as each part of the run starts.
	Progress io.Writer
}

// Result is one system's figures.
type Result struct {
	System string
	Stats  Stats
	// ContainerdCPUPerJob is containerd's own CPU time (the daemon, not
	// the shims) per job while this system ran; zero when not measured.
	ContainerdCPUPerJob time.Duration
}

// Ratio compares Airlock to one baseline: latency ratios above 1 mean
// Airlock is slower, a throughput ratio below 1 that it does fewer jobs
// per second.
type Ratio struct {
	Baseline           string
	P50, P95, P99      float64
	ThroughputFraction float64
}

// BrokerUsage is airlockd's cost over the broker's runs.
type BrokerUsage struct {
	PID int
	// CPUPerJob is airlockd's user plus system time per job.
	CPUPerJob time.Duration
	// RSSBefore and RSSAfter are VmRSS around the runs, RSSPeak the most
	// seen during them.
	RSSBefore, RSSPeak, RSSAfter int64
	// RSSPerSandbox is the peak's growth over RSSBefore divided by the
	// concurrency: memory per sandbox in flight.
	RSSPerSandbox int64
}

// Report is the outcome of Run.
type Report struct {
	Profile, PolicySummary, Image  string
	N, Concurrency, Warmup, Rounds int
	// Interval is the pace of job starts; zero is back to back.
	Interval time.Duration
	// CPUs and the load averages around the run say how busy the host was.
	CPUs                  int
	LoadBefore, LoadAfter string
	Results               []Result
	Ratios                []Ratio
	Broker                *BrokerUsage
	// Phases are airlockd's mean spawn latency per phase over the
	// measured broker runs; nil without Config.MetricsURL.
	Phases map[string]time.Duration
}

// Run benchmarks Airlock and, with cfg.Baselines, the containerd-client
// and raw runc baselines, under the same profile on the same job.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	o := cfg.Options
	if cfg.Broker == nil {
		return nil, errors.New("bench: no broker connection")
	}
	if o.Profile == "" {
		return nil, errors.New("bench: a profile is required: the baselines take their spec from it")
	}
	rounds := max(cfg.Rounds, 1)
	if o.N < rounds || o.Concurrency < 1 {
		return nil, fmt.Errorf("bench: -n %d -c %d --rounds %d: need at least one job per round and one worker", o.N, o.Concurrency, rounds)
	}
	if o.N/rounds < o.Concurrency {
		return nil, fmt.Errorf("bench: %d jobs in each of %d rounds cannot keep %d running at once; raise -n or lower --rounds", o.N/rounds, rounds, o.Concurrency)
	}
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	p, err := ProfileOf(ctx, cfg.Broker, o.Profile)
	if err != nil {
		return nil, err
	}
	rep := &Report{
		Profile: p.Name, PolicySummary: p.Summary(), Image: images.ImageRef(p.Image()),
		N: o.N, Concurrency: o.Concurrency, Warmup: cfg.Warmup, Rounds: rounds, Interval: o.Interval,
		CPUs: runtime.NumCPU(), LoadBefore: loadAvg(),
	}
	base := Baseline{Profile: p, Task: o.Task, Params: o.Params, Content: o.Content, Interval: o.Interval}

	type system struct {
		name string
		run  func(ctx context.Context, n, c int) (Stats, error)
	}
	systems := []system{{SystemAirlock, func(ctx context.Context, n, c int) (Stats, error) {
		bo := o
		bo.N, bo.Concurrency = n, c
		return RunBroker(ctx, cfg.Broker, bo)
	}}}
	ctdPID := 0
	if cfg.Baselines {
		if os.Geteuid() != 0 {
			return nil, errors.New("bench: the baselines drive containerd and runc and need root; run as root or pass --no-baselines")
		}
		if cfg.ContainerdAddress == "" {
			return nil, errors.New("bench: the baselines need airlockd's containerd address")
		}
		bundleRoot, err := mkWorkDir(cfg.WorkDir, "airlock-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(bundleRoot)
		progress("extracting %s for the runc bundle", rep.Image)
		if err := ExtractRootfs(ctx, cfg.ContainerdAddress, rep.Image, bundleRoot); err != nil {
			return nil, err
		}
		// Without containerd's pid the baselines still run; only its CPU
		// column is left empty.
		ctdPID, _ = ListenerPID(cfg.ContainerdAddress)
		systems = append(systems,
			system{SystemContainerd, func(ctx context.Context, n, c int) (Stats, error) {
				b := base
				b.N, b.Concurrency = n, c
				return RunContainerd(ctx, cfg.ContainerdAddress, rep.Image, b)
			}},
			system{SystemRunc, func(ctx context.Context, n, c int) (Stats, error) {
				b := base
				b.N, b.Concurrency = n, c
				return RunRunc(ctx, bundleRoot, b)
			}})
		if raw, ok := map[string]string{policy.RuntimeCrun: SystemCrun, policy.RuntimeRunsc: SystemRunsc}[p.Isolation.Runtime]; ok {
			systems = append(systems, system{raw, func(ctx context.Context, n, c int) (Stats, error) {
				b := base
				b.N, b.Concurrency = n, c
				return RunRaw(ctx, bundleRoot, b, p.Isolation.Runtime)
			}})
		}
	}

	if cfg.Warmup > 0 {
		for _, s := range systems {
			progress("warm-up: %d %s job(s)", cfg.Warmup, s.name)
			st, err := s.run(ctx, cfg.Warmup, 1)
			if err != nil {
				return nil, fmt.Errorf("%s warm-up: %w", s.name, err)
			}
			if st.Failures > 0 {
				return nil, fmt.Errorf("%s warm-up: %d of %d jobs failed: %s", s.name, st.Failures, st.N, strings.Join(st.Errors, "; "))
			}
		}
	}

	runs := make([][]Stats, len(systems))
	ctdCPU := make([]time.Duration, len(systems))
	var (
		brokerCPU  time.Duration
		usage      *BrokerUsage
		phaseStart PhaseTotals
	)
	if cfg.BrokerPID > 0 {
		before, err := ReadProc(cfg.BrokerPID)
		if err != nil {
			return nil, fmt.Errorf("airlockd pid %d: %w", cfg.BrokerPID, err)
		}
		usage = &BrokerUsage{PID: cfg.BrokerPID, RSSBefore: before.RSS}
	}
	if cfg.MetricsURL != "" {
		if phaseStart, err = ScrapePhases(ctx, cfg.MetricsURL); err != nil {
			return nil, err
		}
	}
	for r := range rounds {
		n := o.N / rounds
		if r < o.N%rounds {
			n++
		}
		for k := range systems {
			i := (r + k) % len(systems)
			s := systems[i]
			progress("round %d/%d: %d %s job(s) at concurrency %d", r+1, rounds, n, s.name, o.Concurrency)
			var ctd0 ProcSample
			if ctdPID > 0 {
				ctd0, _ = ReadProc(ctdPID)
			}
			var (
				b0   ProcSample
				samp *sampler
			)
			if usage != nil && s.name == SystemAirlock {
				if b0, err = ReadProc(usage.PID); err != nil {
					return nil, fmt.Errorf("airlockd pid %d: %w", usage.PID, err)
				}
				samp = startSampler(usage.PID)
			}
			st, err := s.run(ctx, n, o.Concurrency)
			if samp != nil {
				usage.RSSPeak = max(usage.RSSPeak, samp.Stop())
				b1, perr := ReadProc(usage.PID)
				if perr != nil {
					return nil, fmt.Errorf("airlockd pid %d: %w", usage.PID, perr)
				}
				brokerCPU += b1.CPU - b0.CPU
				usage.RSSAfter = b1.RSS
			}
			if ctdPID > 0 {
				if ctd1, perr := ReadProc(ctdPID); perr == nil {
					ctdCPU[i] += ctd1.CPU - ctd0.CPU
				}
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			runs[i] = append(runs[i], st)
		}
	}
	if cfg.MetricsURL != "" {
		end, err := ScrapePhases(ctx, cfg.MetricsURL)
		if err != nil {
			return nil, err
		}
		rep.Phases = MeanPhases(phaseStart, end)
	}
	rep.LoadAfter = loadAvg()

	for i, s := range systems {
		res := Result{System: s.name, Stats: Merge(runs[i]...)}
		if ctdPID > 0 && s.name != SystemRunc && s.name != SystemCrun && s.name != SystemRunsc {
			res.ContainerdCPUPerJob = ctdCPU[i] / time.Duration(o.N)
		}
		rep.Results = append(rep.Results, res)
	}
	if usage != nil {
		usage.CPUPerJob = brokerCPU / time.Duration(o.N)
		usage.RSSPerSandbox = max(usage.RSSPeak-usage.RSSBefore, 0) / int64(o.Concurrency)
		rep.Broker = usage
	}
	a := rep.Results[0].Stats
	for _, res := range rep.Results[1:] {
		b := res.Stats
		rep.Ratios = append(rep.Ratios, Ratio{
			Baseline: res.System,
			P50:      ratio(a.P50.Seconds(), b.P50.Seconds()),
			P95:      ratio(a.P95.Seconds(), b.P95.Seconds()),
			P99:      ratio(a.P99.Seconds(), b.P99.Seconds()),
			// Throughput is compared the other way round, so both kinds
			// of ratio read "Airlock relative to the baseline".
			ThroughputFraction: ratio(a.JobsPerSec, b.JobsPerSec),
		})
	}
	return rep, nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// loadAvg is the host's 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// MarshalJSON writes durations as milliseconds and sizes as bytes.
func (r *Report) MarshalJSON() ([]byte, error) {
	type result struct {
		System              string  `json:"system"`
		Stats               Stats   `json:"stats"`
		ContainerdCPUPerJob float64 `json:"containerd_cpu_ms_per_job,omitempty"`
	}
	type ratioJSON struct {
		Baseline           string  `json:"baseline"`
		P50                float64 `json:"p50"`
		P95                float64 `json:"p95"`
		P99                float64 `json:"p99"`
		ThroughputFraction float64 `json:"throughput"`
	}
	type brokerJSON struct {
		PID           int     `json:"pid"`
		CPUPerJob     float64 `json:"cpu_ms_per_job"`
		RSSBefore     int64   `json:"rss_before_bytes"`
		RSSPeak       int64   `json:"rss_peak_bytes"`
		RSSAfter      int64   `json:"rss_after_bytes"`
		RSSPerSandbox int64   `json:"rss_per_sandbox_bytes"`
	}
	out := struct {
		Profile       string             `json:"profile"`
		PolicySummary string             `json:"policy_summary"`
		Image         string             `json:"image"`
		N             int                `json:"n"`
		Concurrency   int                `json:"concurrency"`
		Warmup        int                `json:"warmup"`
		Rounds        int                `json:"rounds"`
		IntervalMS    float64            `json:"interval_ms,omitempty"`
		CPUs          int                `json:"cpus"`
		LoadBefore    string             `json:"load_before"`
		LoadAfter     string             `json:"load_after"`
		Results       []result           `json:"results"`
		Ratios        []ratioJSON        `json:"ratios,omitempty"`
		Broker        *brokerJSON        `json:"broker,omitempty"`
		Phases        map[string]float64 `json:"phases_mean_ms,omitempty"`
	}{Profile: r.Profile, PolicySummary: r.PolicySummary, Image: r.Image, N: r.N, Concurrency: r.Concurrency,
		Warmup: r.Warmup, Rounds: r.Rounds, IntervalMS: ms(r.Interval), CPUs: r.CPUs, LoadBefore: r.LoadBefore, LoadAfter: r.LoadAfter}
	for _, res := range r.Results {
		out.Results = append(out.Results, result{res.System, res.Stats, ms(res.ContainerdCPUPerJob)})
	}
	for _, q := range r.Ratios {
		out.Ratios = append(out.Ratios, ratioJSON{q.Baseline, round(q.P50, 3), round(q.P95, 3), round(q.P99, 3), round(q.ThroughputFraction, 3)})
	}
	if b := r.Broker; b != nil {
		out.Broker = &brokerJSON{b.PID, ms(b.CPUPerJob), b.RSSBefore, b.RSSPeak, b.RSSAfter, b.RSSPerSandbox}
	}
	if r.Phases != nil {
		out.Phases = map[string]float64{}
		for k, v := range r.Phases {
			out.Phases[k] = ms(v)
		}
	}
	return json.Marshal(out)
}

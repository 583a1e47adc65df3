package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Verdicts of one growth figure.
const (
	VerdictPass = "PASS"
	VerdictFail = "FAIL"
	// VerdictInfo is a figure that is reported but not judged.
	VerdictInfo = "INFO"
)

// The tolerances of a growth check. Goroutines, descriptors and host
// leftovers must not grow at all: each job's share of them ends with the
// job. The heap, sampled after a forced collection, may grow by a little
// more than nothing: runtime and gRPC bookkeeping moves by some kilobytes
// between two samples whatever the jobs did. Resident memory also holds
// heap the runtime has freed but not yet returned to the kernel, so it
// moves by megabytes and is judged leniently: a leak shows in the heap
// first.
const (
	HeapSlack    = 1 << 20
	HeapFraction = 0.05
	RSSSlack     = 16 << 20
	mib          = 1 << 20
	noGrowth     = "no growth"
	hostWideNote = "; host-wide: another broker's jobs count too"
	heapUnjudged = "not judged: without --pprof-url no collection is forced before the sample, so the heap holds garbage"
)

// growthRule is how much one figure may grow over a run.
type growthRule struct {
	name  string
	bytes bool
	// value reads the figure from a sample.
	value func(GrowthSample) float64
	// slack plus fraction of the value before is the growth allowed.
	slack, fraction float64
	// noneLeft requires zero after, whatever the value before was.
	noneLeft bool
	// needsGC leaves the figure unjudged unless a collection came first.
	needsGC bool
	note    string
}

func gauge(name string) func(GrowthSample) float64 {
	return func(s GrowthSample) float64 { return s.Gauges[name] }
}

// growthRules are the figures a growth check judges, in the order it
// prints them.
var growthRules = []growthRule{
	{name: "goroutines", value: gauge(GaugeGoroutines)},
	{name: "open fds", value: gauge(GaugeOpenFDs)},
	{name: "heap in use", bytes: true, value: gauge(GaugeHeapInuse), slack: HeapSlack, fraction: HeapFraction, needsGC: true},
	{name: "RSS", bytes: true, value: gauge(GaugeRSS), slack: RSSSlack,
		note: "; includes freed memory the Go runtime has not returned"},
	{name: "mounts under state dir", value: func(s GrowthSample) float64 { return float64(s.Leftovers.Mounts) }},
	{name: "job dirs", value: func(s GrowthSample) float64 { return float64(s.Leftovers.JobDirs) }, noneLeft: true},
	{name: "netns airlock-*", value: func(s GrowthSample) float64 { return float64(s.Leftovers.Netns) }, note: hostWideNote},
	{name: "veths al-*", value: func(s GrowthSample) float64 { return float64(s.Leftovers.Veths) }, note: hostWideNote},
}

// GrowthMetric is one figure before and after the jobs, and its verdict.
type GrowthMetric struct {
	Name          string
	Bytes         bool
	Before, After float64
	// Tolerance says what the verdict allowed, for a person.
	Tolerance string
	Verdict   string
}

// Delta is the growth over the run; negative is shrinkage.
func (m GrowthMetric) Delta() float64 { return m.After - m.Before }

// JudgeGrowth compares two samples under growthRules. Without forcedGC the
// heap is reported, not judged.
func JudgeGrowth(before, after GrowthSample, forcedGC bool) []GrowthMetric {
	out := make([]GrowthMetric, 0, len(growthRules))
	for _, r := range growthRules {
		m := GrowthMetric{Name: r.name, Bytes: r.bytes, Before: r.value(before), After: r.value(after)}
		allowed := r.slack + r.fraction*m.Before
		switch {
		case r.noneLeft:
			m.Tolerance = "none left"
			m.Verdict = verdict(m.After == 0)
		case allowed == 0:
			m.Tolerance = noGrowth + r.note
			m.Verdict = verdict(m.Delta() <= 0)
		default:
			m.Tolerance = "growth under " + fmtMiB(r.slack)
			if r.fraction > 0 {
				m.Tolerance += fmt.Sprintf(" + %g%% of before = %s", 100*r.fraction, fmtMiB(allowed))
			}
			m.Tolerance += r.note
			m.Verdict = verdict(m.Delta() < allowed)
		}
		if r.needsGC && !forcedGC {
			m.Tolerance, m.Verdict = heapUnjudged, VerdictInfo
		}
		out = append(out, m)
	}
	return out
}

func verdict(pass bool) string {
	if pass {
		return VerdictPass
	}
	return VerdictFail
}

// GrowthReport is the outcome of RunGrowth.
type GrowthReport struct {
	Profile, PolicySummary string
	N, Warmup              int
	CPUs                   int
	LoadBefore, LoadAfter  string
	StateDir               string
	// ForcedGC says whether each heap sample followed a collection forced
	// through airlockd's pprof server.
	ForcedGC      bool
	Jobs          Stats
	Before, After GrowthSample
	Metrics       []GrowthMetric
}

// Pass reports whether every job succeeded and no judged figure failed.
func (r *GrowthReport) Pass() bool {
	if r.Jobs.Failures > 0 {
		return false
	}
	for _, m := range r.Metrics {
		if m.Verdict == VerdictFail {
			return false
		}
	}
	return true
}

// perJob is a figure's growth per measured job.
func (r *GrowthReport) perJob(m GrowthMetric) float64 {
	if r.N == 0 {
		return 0
	}
	return m.Delta() / float64(r.N)
}

// WriteTable prints the report for a person: the figures before and after,
// then a verdict per figure and overall.
func (r *GrowthReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "growth: profile %s (%s), %d jobs one at a time after %d warm-up; %d CPUs, load %s -> %s\n",
		r.Profile, r.PolicySummary, r.N, r.Warmup, r.CPUs, r.LoadBefore, r.LoadAfter)
	s := r.Jobs
	fmt.Fprintf(&b, "jobs: %d/%d ok, p50 %s, p99 %s, %.1f jobs/s, %.0fs; samples %.0fs apart\n",
		s.N-s.Failures, s.N, fmtDur(s.P50), fmtDur(s.P99), s.JobsPerSec, s.Wall.Seconds(), r.After.At.Sub(r.Before.At).Seconds())
	gc := "after a collection forced through airlockd's pprof"
	if !r.ForcedGC {
		gc = "without a forced collection (no --pprof-url)"
	}
	fmt.Fprintf(&b, "state dir %s; heap sampled %s\n\n", r.StateDir, gc)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "metric\tbefore\tafter\tdelta\tper job\t")
	for _, m := range r.Metrics {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", m.Name, fmtFigure(m.Before, m.Bytes),
			fmtFigure(m.After, m.Bytes), fmtSigned(m.Delta(), m.Bytes), fmtPerJob(r.perJob(m), m.Bytes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\n")
	for _, m := range r.Metrics {
		fmt.Fprintf(&b, "%s  %s: %s (%s)\n", m.Verdict, m.Name, fmtSigned(m.Delta(), m.Bytes), m.Tolerance)
	}
	jobs := VerdictPass
	if s.Failures > 0 {
		jobs = VerdictFail
	}
	fmt.Fprintf(&b, "%s  jobs: %d of %d failed (none may fail)\n", jobs, s.Failures, s.N)
	for _, e := range s.Errors {
		fmt.Fprintf(&b, "  failure: %s\n", e)
	}
	overall := VerdictPass
	if !r.Pass() {
		overall = VerdictFail
	}
	fmt.Fprintf(&b, "%s\n", overall)
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtFigure prints a count as an integer and a size in MiB.
func fmtFigure(v float64, bytes bool) string {
	if bytes {
		return fmtMiB(v)
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtSigned(v float64, bytes bool) string {
	if bytes {
		return fmt.Sprintf("%+.2f MiB", v/mib)
	}
	return fmt.Sprintf("%+.0f", v)
}

// fmtPerJob prints a size per job in bytes, which is the scale of a leak
// that matters over thousands of jobs.
func fmtPerJob(v float64, bytes bool) string {
	if bytes {
		return fmt.Sprintf("%+.0f B", v)
	}
	return fmt.Sprintf("%+.3f", v)
}

func fmtMiB(v float64) string { return fmt.Sprintf("%.2f MiB", v/mib) }

// MarshalJSON writes sizes in bytes and durations in milliseconds.
func (r *GrowthReport) MarshalJSON() ([]byte, error) {
	type metricJSON struct {
		Name      string  `json:"name"`
		Unit      string  `json:"unit"`
		Before    float64 `json:"before"`
		After     float64 `json:"after"`
		Delta     float64 `json:"delta"`
		PerJob    float64 `json:"per_job"`
		Tolerance string  `json:"tolerance"`
		Verdict   string  `json:"verdict"`
	}
	out := struct {
		Profile       string       `json:"profile"`
		PolicySummary string       `json:"policy_summary"`
		N             int          `json:"n"`
		Warmup        int          `json:"warmup"`
		CPUs          int          `json:"cpus"`
		LoadBefore    string       `json:"load_before"`
		LoadAfter     string       `json:"load_after"`
		StateDir      string       `json:"state_dir"`
		ForcedGC      bool         `json:"forced_gc"`
		Jobs          Stats        `json:"jobs"`
		SampleGap     float64      `json:"sample_gap_ms"`
		Metrics       []metricJSON `json:"metrics"`
		Pass          bool         `json:"pass"`
	}{Profile: r.Profile, PolicySummary: r.PolicySummary, N: r.N, Warmup: r.Warmup, CPUs: r.CPUs,
		LoadBefore: r.LoadBefore, LoadAfter: r.LoadAfter, StateDir: r.StateDir, ForcedGC: r.ForcedGC,
		Jobs: r.Jobs, SampleGap: ms(r.After.At.Sub(r.Before.At)), Pass: r.Pass()}
	for _, m := range r.Metrics {
		unit := "count"
		if m.Bytes {
			unit = "bytes"
		}
		out.Metrics = append(out.Metrics, metricJSON{m.Name, unit, m.Before, m.After, m.Delta(),
			round(r.perJob(m), 3), m.Tolerance, m.Verdict})
	}
	return json.Marshal(out)
}

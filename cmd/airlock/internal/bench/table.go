package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints the report for a person: one row per system, then the
// ratios, airlockd's own cost and its phases.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "profile %s (%s), image %s\n", r.Profile, r.PolicySummary, r.Image)
	pace := ""
	if r.Interval > 0 {
		pace = fmt.Sprintf(", a job started every %s at most", r.Interval)
	}
	fmt.Fprintf(&b, "%d jobs per system at concurrency %d%s, %d warm-up, %d round(s); %d CPUs, load %s -> %s\n\n",
		r.N, r.Concurrency, pace, r.Warmup, r.Rounds, r.CPUs, r.LoadBefore, r.LoadAfter)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "system\tok/n\tp50\tp95\tp99\tmean\tjobs/s\twall\tcontainerd CPU/job\t")
	for _, res := range r.Results {
		s := res.Stats
		cpu := "-"
		if res.ContainerdCPUPerJob > 0 {
			cpu = fmtDur(res.ContainerdCPUPerJob)
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\t%.1f\t%.2fs\t%s\t\n", res.System, s.N-s.Failures, s.N,
			fmtDur(s.P50), fmtDur(s.P95), fmtDur(s.P99), fmtDur(s.Mean), s.JobsPerSec, s.Wall.Seconds(), cpu)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, res := range r.Results {
		for _, e := range res.Stats.Errors {
			fmt.Fprintf(&b, "  %s failure: %s\n", res.System, e)
		}
	}
	if len(r.Ratios) > 0 {
		b.WriteString("\nairlock relative to each baseline (latency: x slower; throughput: fraction of the baseline's jobs/s)\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "baseline\tp50\tp95\tp99\tthroughput\t")
		for _, q := range r.Ratios {
			fmt.Fprintf(tw, "%s\t%.2fx\t%.2fx\t%.2fx\t%.0f%%\t\n", q.Baseline, q.P50, q.P95, q.P99, 100*q.ThroughputFraction)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if u := r.Broker; u != nil {
		fmt.Fprintf(&b, "\nairlockd (pid %d): CPU %s per job; RSS %s before, %s peak, %s after: %s per concurrent sandbox\n",
			u.PID, fmtDur(u.CPUPerJob), fmtBytes(u.RSSBefore), fmtBytes(u.RSSPeak), fmtBytes(u.RSSAfter), fmtBytes(u.RSSPerSandbox))
	}
	if len(r.Phases) > 0 {
		writePhases(&b, "airlockd spawn phases (mean, from its metrics)", r.Phases)
	}
	for _, res := range r.Results {
		if len(res.Stats.Phases) > 0 {
			writePhases(&b, res.System+" phases (mean)", res.Stats.Phases)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

func fmtBytes(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// phaseOrder is the order in which a spawn goes through the phases that
// airlockd and the containerd baseline report.
var phaseOrder = []string{"admit", "spawn", PhaseCreate, PhaseTask, PhaseStart, PhaseRun, PhaseTeardown, TotalPhase}

func writePhases(b *strings.Builder, title string, phases map[string]time.Duration) {
	names := make([]string, 0, len(phases))
	for k := range phases {
		names = append(names, k)
	}
	rank := func(k string) int {
		if i := slices.Index(phaseOrder, k); i >= 0 {
			return i
		}
		return len(phaseOrder)
	}
	slices.SortFunc(names, func(a, c string) int {
		if ra, rc := rank(a), rank(c); ra != rc {
			return ra - rc
		}
		return strings.Compare(a, c)
	})
	b.WriteString(title + ":")
	for _, k := range names {
		fmt.Fprintf(b, " %s %s", k, fmtDur(phases[k]))
	}
	b.WriteString("\n")
}

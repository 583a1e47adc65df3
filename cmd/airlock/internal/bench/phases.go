package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// spawnMetric is airlockd's spawn latency histogram, labelled by phase:
// request received to task started (named admit in older brokers, spawn in
// newer ones) and run (task started to response ready, which includes
// teardown and sanitizing). Every phase found is reported. Older brokers
// had a total phase too; newer ones keep it in jobMetric.
const spawnMetric = "airlock_spawn_seconds"

// jobMetric is airlockd's whole-job latency histogram, request received to
// response; the report shows it as the phase TotalPhase.
const jobMetric = "airlock_job_seconds"

// TotalPhase is the name the report gives airlockd's whole-job latency,
// beside its phases.
const TotalPhase = "total"

// maxMetricsBytes bounds a scrape; airlockd's whole page is a few tens of
// kilobytes.
const maxMetricsBytes = 4 << 20

// PhaseTotals are a histogram's running sum, in seconds, and count per
// phase, as scraped at one moment.
type PhaseTotals map[string]struct {
	Sum   float64
	Count float64
}

// ScrapePhases reads airlockd's spawn phase totals from its Prometheus
// endpoint (airlockd --metrics-listen), for example
// http://127.0.0.1:9464/metrics.
func ScrapePhases(ctx context.Context, url string) (PhaseTotals, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	return parsePhases(io.LimitReader(resp.Body, maxMetricsBytes))
}

// parsePhases picks the spawn histogram's _sum and _count lines, and the
// job histogram's as TotalPhase, out of the Prometheus text format.
func parsePhases(r io.Reader) (PhaseTotals, error) {
	out := PhaseTotals{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var kind, phase, value string
		if rest, ok := strings.CutPrefix(line, jobMetric+"_"); ok {
			// Unlabelled: "airlock_job_seconds_sum 1.5".
			kind, value, ok = strings.Cut(rest, " ")
			if !ok || (kind != "sum" && kind != "count") {
				continue
			}
			phase = TotalPhase
		} else {
			rest, ok := strings.CutPrefix(line, spawnMetric+"_")
			if !ok {
				continue
			}
			kind, rest, ok = strings.Cut(rest, "{")
			if !ok || (kind != "sum" && kind != "count") {
				continue
			}
			var labels string
			labels, value, ok = strings.Cut(rest, "} ")
			if !ok {
				continue
			}
			if phase, ok = label(labels, "phase"); !ok {
				continue
			}
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: %q: %w", line, err)
		}
		t := out[phase]
		if kind == "sum" {
			t.Sum = v
		} else {
			t.Count = v
		}
		out[phase] = t
	}
	return out, sc.Err()
}

// label returns one label's value from a Prometheus label list.
func label(labels, name string) (string, bool) {
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.TrimSpace(k) == name {
			return strings.Trim(strings.TrimSpace(v), `"`), true
		}
	}
	return "", false
}

// MeanPhases is each phase's mean latency between two scrapes.
func MeanPhases(before, after PhaseTotals) map[string]time.Duration {
	out := map[string]time.Duration{}
	for phase, a := range after {
		b := before[phase]
		if n := a.Count - b.Count; n > 0 {
			out[phase] = time.Duration((a.Sum - b.Sum) / n * float64(time.Second))
		}
	}
	return out
}

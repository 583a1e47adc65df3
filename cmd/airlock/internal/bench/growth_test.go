package bench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goAndProcessMetrics is an excerpt of airlockd's page: the Go and process
// collectors' output as client_golang writes it.
const goAndProcessMetrics = `# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.4e-05
go_gc_duration_seconds_sum 0.0123
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 57
# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 1.4680064e+07
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 31
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 5.1150848e+07 1700000000000
airlock_jobs_total{profile="ironclaw",verdict="ok"} 12
`

func TestParseGauges_ReadsTheUnlabelledGauges(t *testing.T) {
	got, err := parseGauges(strings.NewReader(goAndProcessMetrics), growthGauges...)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{GaugeGoroutines: 57, GaugeOpenFDs: 31, GaugeHeapInuse: 14680064, GaugeRSS: 51150848}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("parseGauges = %v, want only %v", got, want)
	}
}

func TestParseGauges_Refuses(t *testing.T) {
	tests := []struct {
		name, page, wantErr string
	}{
		{"a page without the process collector", "go_goroutines 5\ngo_memstats_heap_inuse_bytes 1\n", "no process_open_fds, process_resident_memory_bytes"},
		{"a labelled sample only", `go_goroutines{pod="x"} 5` + "\nprocess_open_fds 1\ngo_memstats_heap_inuse_bytes 1\nprocess_resident_memory_bytes 1\n", "no go_goroutines"},
		{"a value that is no number", "go_goroutines many\n", `"go_goroutines many"`},
		{"an empty page", "", "is this airlockd's metrics endpoint?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseGauges(strings.NewReader(tt.page), growthGauges...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// steady is a broker at rest: 14 MiB of heap, 50 MiB resident, and no
// leftovers but one netns of another broker on the host.
func steady() GrowthSample {
	return GrowthSample{
		Gauges:    map[string]float64{GaugeGoroutines: 57, GaugeOpenFDs: 31, GaugeHeapInuse: 14 * mib, GaugeRSS: 50 * mib},
		Leftovers: Leftovers{Mounts: 2, Netns: 1},
	}
}

func TestJudgeGrowth(t *testing.T) {
	tests := []struct {
		name     string
		after    func(*GrowthSample)
		forcedGC bool
		// want maps a figure to its verdict; the others must pass.
		want map[string]string
	}{
		{"no change", func(*GrowthSample) {}, true, nil},
		{"fewer of everything", func(s *GrowthSample) {
			s.Gauges[GaugeGoroutines], s.Gauges[GaugeOpenFDs], s.Leftovers.Netns = 50, 30, 0
		}, true, nil},
		{"one goroutine more", func(s *GrowthSample) { s.Gauges[GaugeGoroutines]++ }, true, map[string]string{"goroutines": VerdictFail}},
		{"one descriptor more", func(s *GrowthSample) { s.Gauges[GaugeOpenFDs]++ }, true, map[string]string{"open fds": VerdictFail}},
		{"heap within 1 MiB", func(s *GrowthSample) { s.Gauges[GaugeHeapInuse] += 0.9 * mib }, true, nil},
		{"heap within 1 MiB + 5% of 14 MiB", func(s *GrowthSample) { s.Gauges[GaugeHeapInuse] += 1.6 * mib }, true, nil},
		{"heap over 1 MiB + 5% of 14 MiB", func(s *GrowthSample) { s.Gauges[GaugeHeapInuse] += 1.8 * mib }, true, map[string]string{"heap in use": VerdictFail}},
		{"heap growth without a forced collection", func(s *GrowthSample) { s.Gauges[GaugeHeapInuse] += 100 * mib }, false, map[string]string{"heap in use": VerdictInfo}},
		{"RSS within 16 MiB", func(s *GrowthSample) { s.Gauges[GaugeRSS] += 15 * mib }, true, nil},
		{"RSS over 16 MiB", func(s *GrowthSample) { s.Gauges[GaugeRSS] += 17 * mib }, true, map[string]string{"RSS": VerdictFail}},
		{"a mount more under the state dir", func(s *GrowthSample) { s.Leftovers.Mounts++ }, true, map[string]string{"mounts under state dir": VerdictFail}},
		{"a job dir left", func(s *GrowthSample) { s.Leftovers.JobDirs = 1 }, true, map[string]string{"job dirs": VerdictFail}},
		{"a netns and a veth more", func(s *GrowthSample) { s.Leftovers.Netns++; s.Leftovers.Veths++ }, true,
			map[string]string{"netns airlock-*": VerdictFail, "veths al-*": VerdictFail}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := steady()
			tt.after(&after)
			got := JudgeGrowth(steady(), after, tt.forcedGC)
			if len(got) != len(growthRules) {
				t.Fatalf("%d figures, want %d", len(got), len(growthRules))
			}
			for _, m := range got {
				want := tt.want[m.Name]
				if want == "" {
					want = VerdictPass
				}
				if m.Verdict != want {
					t.Errorf("%s %v -> %v: %s (%s), want %s", m.Name, m.Before, m.After, m.Verdict, m.Tolerance, want)
				}
			}
		})
	}
}

func TestJudgeGrowth_AJobDirLeftBeforeStillFails(t *testing.T) {
	before, after := steady(), steady()
	before.Leftovers.JobDirs, after.Leftovers.JobDirs = 1, 1
	for _, m := range JudgeGrowth(before, after, true) {
		if m.Name == "job dirs" && m.Verdict != VerdictFail {
			t.Errorf("job dirs 1 -> 1: %s, want FAIL: an idle broker has no job", m.Verdict)
		}
	}
}

func TestGrowthReport_FailsOnAFailedJobOrFigure(t *testing.T) {
	leak := steady()
	leak.Gauges[GaugeGoroutines] += 1000
	tests := []struct {
		name     string
		after    GrowthSample
		failures int
		want     bool
	}{
		{"clean", steady(), 0, true},
		{"a goroutine per job", leak, 0, false},
		{"a failed job", steady(), 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &GrowthReport{Profile: "ironclaw", N: 1000, ForcedGC: true, Jobs: Stats{N: 1000, Failures: tt.failures},
				Before: steady(), After: tt.after, Metrics: JudgeGrowth(steady(), tt.after, true)}
			if r.Pass() != tt.want {
				t.Fatalf("Pass() = %v, want %v", r.Pass(), tt.want)
			}
			var b strings.Builder
			if err := r.WriteTable(&b); err != nil {
				t.Fatal(err)
			}
			last := strings.TrimSpace(b.String()[strings.LastIndex(strings.TrimSpace(b.String()), "\n"):])
			if (last == VerdictPass) != tt.want {
				t.Errorf("table ends with %q:\n%s", last, b.String())
			}
			js, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var out struct {
				Pass    bool `json:"pass"`
				Metrics []struct {
					Name   string  `json:"name"`
					PerJob float64 `json:"per_job"`
				} `json:"metrics"`
			}
			if err := json.Unmarshal(js, &out); err != nil {
				t.Fatal(err)
			}
			if out.Pass != tt.want || len(out.Metrics) != len(growthRules) {
				t.Errorf("JSON pass %v with %d metrics: %s", out.Pass, len(out.Metrics), js)
			}
		})
	}
}

func TestGrowthReport_TablePrintsPerJobGrowth(t *testing.T) {
	after := steady()
	after.Gauges[GaugeGoroutines] += 1000
	r := &GrowthReport{N: 1000, ForcedGC: true, Before: steady(), After: after, Metrics: JudgeGrowth(steady(), after, true)}
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"+1000", "+1.000", "FAIL  goroutines: +1000 (no growth)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestCountMountsUnder(t *testing.T) {
	const mountinfo = `22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
90 22 0:50 / /var/lib/airlock/containerd/tmpmounts rw shared:40 - tmpfs tmpfs rw
91 22 0:51 / /var/lib/airlock/jobs/run-1/output rw shared:41 - tmpfs tmpfs rw,size=1024k
92 22 0:52 / /var/lib/airlock/jobs/a\040b/output rw shared:42 - tmpfs tmpfs rw
93 22 0:53 / /var/lib/airlock2/jobs/x rw shared:43 - tmpfs tmpfs rw
94 22 0:54 / /var/lib/airlock rw shared:44 - tmpfs tmpfs rw
`
	n, err := countMountsUnder(strings.NewReader(mountinfo), "/var/lib/airlock/")
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("countMountsUnder = %d, want 4: the dir itself and three below it, not a sibling that shares its prefix", n)
	}
}

func TestSettle(t *testing.T) {
	tests := []struct {
		name           string
		goroutines     []float64
		bound          time.Duration
		wantReads      int
		wantGoroutines float64
	}{
		{"stops once the drops stop", []float64{60, 58, 57, 57, 57, 57, 57, 57}, time.Minute, 6, 57},
		{"a rise is not a drop", []float64{57, 58, 59, 60}, time.Minute, 4, 57},
		{"work in flight at the end is not counted", []float64{60, 57, 57, 58, 58}, time.Minute, 5, 57},
		{"gives up at the bound", nil, 20 * time.Millisecond, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads := 0
			read := func(context.Context) (map[string]float64, error) {
				g := 1e9 - float64(reads) // always dropping, unless given
				if reads < len(tt.goroutines) {
					g = tt.goroutines[reads]
				}
				reads++
				return map[string]float64{GaugeGoroutines: g, GaugeOpenFDs: 31}, nil
			}
			g, fds, err := settle(context.Background(), read, time.Millisecond, tt.bound)
			if err != nil {
				t.Fatal(err)
			}
			if fds != 31 {
				t.Errorf("fds = %v, want 31", fds)
			}
			if tt.wantReads == 0 {
				if reads < 2 {
					t.Errorf("%d reads before giving up", reads)
				}
				return
			}
			if reads != tt.wantReads || g != tt.wantGoroutines {
				t.Errorf("%d reads, goroutines %v; want %d reads, %v", reads, g, tt.wantReads, tt.wantGoroutines)
			}
		})
	}
}

func TestCountLeftovers_CountsJobDirs(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"jobs/run-1", "jobs/run-2", "containerd"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	l, err := CountLeftovers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l.JobDirs != 2 || l.Mounts != 0 {
		t.Errorf("CountLeftovers = %+v, want 2 job dirs and no mounts", l)
	}
}

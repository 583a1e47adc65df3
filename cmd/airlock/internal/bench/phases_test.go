package bench

import (
	"strings"
	"testing"
	"time"
)

const metricsPage = `# HELP airlock_spawn_seconds Spawn latency by phase.
# TYPE airlock_spawn_seconds histogram
airlock_spawn_seconds_bucket{phase="admit",le="0.025"} 0
airlock_spawn_seconds_sum{phase="admit"} 0.5
airlock_spawn_seconds_count{phase="admit"} 10
airlock_spawn_seconds_sum{phase="run"} 0.75
airlock_spawn_seconds_count{phase="run"} 10
# HELP airlock_job_seconds Job latency from request received to response.
# TYPE airlock_job_seconds histogram
airlock_job_seconds_bucket{le="0.025"} 0
airlock_job_seconds_sum 1.5
airlock_job_seconds_count 10
airlock_spawn_rejected_total{reason="invalid"} 3
`

func TestParsePhases_ReadsSumAndCount(t *testing.T) {
	got, err := parsePhases(strings.NewReader(metricsPage))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["admit"].Sum != 0.5 || got["admit"].Count != 10 || got["run"].Sum != 0.75 ||
		got[TotalPhase].Sum != 1.5 || got[TotalPhase].Count != 10 {
		t.Errorf("parsePhases = %+v", got)
	}
}

// TestParsePhases_ReadsAnOlderBrokersTotalPhase: a broker from before
// airlock_job_seconds kept the whole as a phase; it reads the same.
func TestParsePhases_ReadsAnOlderBrokersTotalPhase(t *testing.T) {
	const older = `airlock_spawn_seconds_sum{phase="spawn"} 0.5
airlock_spawn_seconds_count{phase="spawn"} 10
airlock_spawn_seconds_sum{phase="total"} 1.5
airlock_spawn_seconds_count{phase="total"} 10
`
	got, err := parsePhases(strings.NewReader(older))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[TotalPhase].Sum != 1.5 || got[TotalPhase].Count != 10 {
		t.Errorf("parsePhases = %+v", got)
	}
}

func TestMeanPhases_IsTheDifferenceBetweenScrapes(t *testing.T) {
	before := PhaseTotals{"admit": {Sum: 0.5, Count: 10}, "run": {Sum: 1, Count: 10}}
	after := PhaseTotals{"admit": {Sum: 1.5, Count: 30}, "run": {Sum: 1, Count: 10}}
	got := MeanPhases(before, after)
	if got["admit"] != 50*time.Millisecond {
		t.Errorf("admit = %v, want 50ms (1s over 20 jobs)", got["admit"])
	}
	if _, ok := got["run"]; ok {
		t.Errorf("a phase with no new jobs has a mean: %v", got["run"])
	}
}

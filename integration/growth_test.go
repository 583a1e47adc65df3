//go:build integration

package integration

import (
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

const (
	// growthJobs run one at a time after growthWarmup, which pays for
	// what the broker and the runner build once: connections to
	// containerd, compiled schemas, pools.
	growthJobs   = 150
	growthWarmup = 10
	// growthSettle bounds the wait for the last job's teardown
	// goroutines to end. It is not a timed assertion.
	growthSettle = 10 * time.Second
	// growthHeapSlack is the heap growth allowed over the jobs, after a
	// collection: the broker keeps each finished job's response for
	// GetJob, a few kilobytes each.
	growthHeapSlack = 4 << 20
)

// growthSample is this process's share of what a job could leak: the
// suite's broker and runner run in it.
type growthSample struct {
	goroutines, fds int
	heapInuse       uint64
}

func sampleGrowth(t *testing.T) growthSample {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return growthSample{goroutines: runtime.NumGoroutine(), fds: len(fds)}
}

// heapAfterGC is the heap in use once garbage is collected.
func heapAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// settledSample waits, up to growthSettle, until goroutines and
// descriptors stop dropping or are down to at most limit, then samples.
func settledSample(t *testing.T, limit *growthSample) growthSample {
	t.Helper()
	s := sampleGrowth(t)
	for deadline, steady := time.Now().Add(growthSettle), 0; time.Now().Before(deadline) && steady < 3; {
		if limit != nil && s.goroutines <= limit.goroutines && s.fds <= limit.fds {
			break
		}
		time.Sleep(200 * time.Millisecond)
		cur := sampleGrowth(t)
		if cur.goroutines < s.goroutines || cur.fds < s.fds || limit != nil {
			steady = 0
		} else {
			steady++
		}
		s = cur
	}
	s.heapInuse = heapAfterGC()
	return s
}

func growthJob() *airlockv1.SpawnRequest {
	return &airlockv1.SpawnRequest{
		Profile: "ironclaw",
		Task:    &airlockv1.Task{Name: "extract_text"},
		Content: []*airlockv1.Content{{Data: []byte("<html><head><title>Growth</title></head><body><p>One more job.</p></body></html>"),
			MediaType: "text/html"}},
		ResultSchema: anyObject,
	}
}

func runGrowthJobs(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		resp := spawn(t, growthJob())
		if resp.Verdict != airlockv1.Verdict_VERDICT_OK {
			t.Fatalf("job %d: verdict %s: %s", i, resp.Verdict, resp.Message)
		}
		if str(resp, "title") != "Growth" {
			t.Fatalf("job %d: title %q", i, str(resp, "title"))
		}
	}
}

// TestGrowth_SequentialJobsLeaveNoGoroutinesDescriptorsOrHeap checks the
// issue's "1000 sequential jobs leave no growth" on 150 jobs, so the suite
// stays short: a leak of one goroutine or descriptor per job still shows
// as 150 of them. airlock bench --growth runs the 1000 against airlockd.
func TestGrowth_SequentialJobsLeaveNoGoroutinesDescriptorsOrHeap(t *testing.T) {
	runGrowthJobs(t, growthWarmup)
	before := settledSample(t, nil)

	start := time.Now()
	runGrowthJobs(t, growthJobs)
	t.Logf("%d jobs in %v", growthJobs, time.Since(start).Round(time.Millisecond))
	after := settledSample(t, &before)

	t.Logf("goroutines %d -> %d, fds %d -> %d, heap in use %.2f -> %.2f MiB",
		before.goroutines, after.goroutines, before.fds, after.fds,
		float64(before.heapInuse)/(1<<20), float64(after.heapInuse)/(1<<20))
	if after.goroutines > before.goroutines {
		var dump strings.Builder
		pprof.Lookup("goroutine").WriteTo(&dump, 1)
		t.Errorf("goroutines grew by %d over %d jobs; now:\n%s", after.goroutines-before.goroutines, growthJobs, dump.String())
	}
	if after.fds > before.fds {
		t.Errorf("open descriptors grew by %d over %d jobs: %s", after.fds-before.fds, growthJobs, openFDs(t))
	}
	if after.heapInuse > before.heapInuse && after.heapInuse-before.heapInuse >= growthHeapSlack {
		t.Errorf("heap in use grew by %.2f MiB over %d jobs, want under %d MiB",
			float64(after.heapInuse-before.heapInuse)/(1<<20), growthJobs, growthHeapSlack>>20)
	}
	requireNothingLeft(t)
}

// openFDs names this process's descriptors, for a failure message.
func openFDs(t *testing.T) string {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, e := range entries {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			out = append(out, e.Name()+"->"+l)
		}
	}
	return strings.Join(out, " ")
}

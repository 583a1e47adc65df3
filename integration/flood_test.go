//go:build integration

package integration

import (
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/egress"
)

// floodAttempts is the hostile job: 5,000 idle connections to
// the proxy from one job.
const floodAttempts = 5000

// TestEgress_ConnectionFloodIsContained runs the hostile job on
// real containerd, from its own network namespace: it opens 5,000 idle
// connections to its proxy. The proxy holds at most its per-job cap of
// them, so airlockd (this process) never has more than that many more
// goroutines; jobs beside it run as usual; and once it ends nothing is
// left.
func TestEgress_ConnectionFloodIsContained(t *testing.T) {
	// A warm-up pays for what the first allowlist job builds once.
	if resp := spawn(t, benignFetch()); resp.Verdict != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("warm-up: %s: %s", resp.Verdict, resp.Message)
	}
	before := settledSample(t, nil)
	liveBefore := liveHeapNow()

	// The peak is sampled while the flood runs; sampling is the
	// measurement, nothing waits on it.
	stop := make(chan struct{})
	type peaks struct {
		goroutines int
		live       uint64
	}
	peak := make(chan peaks, 1)
	go func() {
		var most peaks
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			most.goroutines = max(most.goroutines, runtime.NumGoroutine())
			if n%20 == 0 {
				// A collection every 100 ms: the live heap is then what the
				// held connections cost, not garbage nor a stale figure.
				most.live = max(most.live, liveHeapNow())
			}
			select {
			case <-stop:
				peak <- most
				return
			case <-tick.C:
			}
		}
	}()
	hostile := make(chan *airlockv1.SpawnResponse, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := env.brokerOf.Spawn(testContext(t), attackReq("egresstest",
			map[string]any{"op": "conn_flood", "count": floodAttempts, "hold_ms": 2000}))
		if err != nil {
			t.Errorf("hostile Spawn: %v", err)
		}
		hostile <- resp
	}()
	// Benign jobs run one after another for as long as the flood does.
	benign := 0
	var resp *airlockv1.SpawnResponse
	for done := false; !done; {
		r := spawn(t, benignFetch())
		if r.Verdict != airlockv1.Verdict_VERDICT_OK || str(r, "title") != "Allowed Page" {
			t.Errorf("benign job %d beside the flood: %s: %s", benign, r.Verdict, r.Message)
		}
		benign++
		select {
		case resp = <-hostile:
			done = true
		default:
		}
	}
	wg.Wait()
	close(stop)
	most := <-peak
	if resp == nil {
		t.Fatal("no hostile response")
	}
	ops := opOutcomes(t, resp)
	d, _ := ops[0]["detail"].(map[string]any)
	t.Logf("flood: %v; %d benign jobs beside it; goroutines %d at rest, %d at the peak; live heap %.2f MiB at rest, %.2f at the peak",
		d, benign, before.goroutines, most.goroutines, float64(liveBefore)/(1<<20), float64(most.live)/(1<<20))
	if open, _ := d["open_after_hold"].(float64); open > egress.DefaultMaxConns {
		t.Errorf("the proxy held %v connections of the job, over its cap of %d", open, egress.DefaultMaxConns)
	}
	// max_held is the job's own view, which counts connections the proxy
	// has closed until the job notices; it is logged, not asserted.
	if refused, _ := d["dial_errors"].(map[string]any); len(refused) == 0 {
		t.Errorf("no dial of %d was refused: the kernel's per-job limit did not act", floodAttempts)
	}
	// Each held connection costs the proxy a goroutine; the broker and
	// the benign jobs beside it a few hundred more.
	if most.goroutines-before.goroutines > egress.DefaultMaxConns+400 {
		t.Errorf("goroutines peaked %d over the rest, want at most the cap of %d and the jobs' own", most.goroutines-before.goroutines, egress.DefaultMaxConns)
	}
	// The bound: buffers taken per connection before the cap cost
	// 145 MiB for 3,000 of them.
	if grew := int64(most.live) - int64(liveBefore); grew > 16<<20 {
		t.Errorf("live heap grew %.1f MiB during the flood, want under 16", float64(grew)/(1<<20))
	}
	after := settledSample(t, &before)
	if after.goroutines > before.goroutines || after.fds > before.fds {
		t.Errorf("after the flood: goroutines %d -> %d, fds %d -> %d", before.goroutines, after.goroutines, before.fds, after.fds)
	}
	t.Logf("heap in use %.2f -> %.2f MiB", float64(before.heapInuse)/(1<<20), float64(after.heapInuse)/(1<<20))
	requireNothingLeft(t)
}

// liveHeapNow collects and returns the live heap.
func liveHeapNow() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// benignFetch is a job that fetches the allowlisted page.
func benignFetch() *airlockv1.SpawnRequest {
	return &airlockv1.SpawnRequest{
		Profile:      "egresstest",
		Task:         &airlockv1.Task{Name: "fetch", Params: map[string]string{"url": world.allowed.URL + "/page"}},
		Content:      []*airlockv1.Content{{Data: []byte("fetch it"), MediaType: "text/plain"}},
		ResultSchema: anyObject,
	}
}

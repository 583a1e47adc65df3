package broker_test

import (
	"context"
	"testing"

	"github.com/airlock/airlock/broker"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// TestCancel_QueuedJobNeverRuns: a job cancelled while it waits for a slot
// ends CANCELLED and never reaches the runner, even once a slot frees.
func TestCancel_QueuedJobNeverRuns(t *testing.T) {
	runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`), block: make(chan struct{})}
	srv, c, _ := newBrokerServer(t, runner, testToken, broker.Config{MaxJobs: 1, MaxQueue: 1})
	first := make(chan *airlockv1.SpawnResponse, 1)
	go func() {
		r, _ := c.Spawn(ctx(t), request())
		first <- r
	}()
	eventually(t, "one job to run", runner.started(1))
	queued := request()
	queued.JobId = "queued"
	second := make(chan *airlockv1.SpawnResponse, 1)
	go func() {
		r, _ := c.Spawn(ctx(t), queued)
		second <- r
	}()
	eventually(t, "the other to queue", func() bool { return srv.Queued() == 1 })
	cr, err := c.Cancel(ctx(t), &airlockv1.CancelRequest{JobId: "queued"})
	if err != nil || !cr.Cancelled {
		t.Fatalf("Cancel = %v, %v; want cancelled", cr, err)
	}
	r := <-second
	if r.GetVerdict() != airlockv1.Verdict_VERDICT_CANCELLED {
		t.Errorf("queued job: %v %q, want CANCELLED", r.GetVerdict(), r.GetMessage())
	}
	close(runner.block)
	<-first
	if n := runner.runs.Load(); n != 1 {
		t.Errorf("runs = %d, want only the first job", n)
	}
	got, err := c.GetJob(ctx(t), &airlockv1.GetJobRequest{JobId: "queued"})
	if err != nil || got.GetJob().GetVerdict() != airlockv1.Verdict_VERDICT_CANCELLED {
		t.Errorf("GetJob = %v, %v; want the CANCELLED verdict", got, err)
	}
}

// TestDrain_CancelsQueuedJobsAfterGrace: past the grace period, Drain
// cancels the jobs waiting for a slot as well as the running ones, and the
// waiting ones never run.
func TestDrain_CancelsQueuedJobsAfterGrace(t *testing.T) {
	runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`), block: make(chan struct{})}
	defer close(runner.block)
	srv, c, _ := newBrokerServer(t, runner, testToken, broker.Config{MaxJobs: 1, MaxQueue: 1})
	done := make(chan *airlockv1.SpawnResponse, 2)
	go func() {
		r, _ := c.Spawn(ctx(t), request())
		done <- r
	}()
	eventually(t, "one job to run", runner.started(1))
	go func() {
		r, _ := c.Spawn(ctx(t), request())
		done <- r
	}()
	eventually(t, "the other to queue", func() bool { return srv.Queued() == 1 })
	grace, cancel := context.WithCancel(context.Background())
	cancel() // no grace: cancel everything at once
	srv.Drain(grace)
	for range 2 {
		if r := <-done; r.GetVerdict() != airlockv1.Verdict_VERDICT_CANCELLED {
			t.Errorf("verdict %v, want CANCELLED", r.GetVerdict())
		}
	}
	if n := runner.runs.Load(); n != 1 {
		t.Errorf("runs = %d, want only the running job", n)
	}
}

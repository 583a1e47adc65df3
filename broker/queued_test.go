package broker_test

import (
	"context"
	"testing"

	"github.com/airlock/airlock/broker"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// TestDrain_QueuedJobsNeverStart: when Drain begins, a job waiting for a
// slot gives up its place at once with Unavailable (nothing ran, so the
// caller may retry elsewhere), while the running job keeps its grace.
func TestDrain_QueuedJobsNeverStart(t *testing.T) {
	runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`), block: make(chan struct{})}
	srv, c, _ := newBrokerServer(t, runner, testToken, broker.Config{MaxJobs: 1, MaxQueue: 1})
	running := make(chan *airlockv1.SpawnResponse, 1)
	go func() {
		r, _ := c.Spawn(ctx(t), request())
		running <- r
	}()
	eventually(t, "one job to run", runner.started(1))
	queued := make(chan error, 1)
	go func() {
		_, err := c.Spawn(ctx(t), request())
		queued <- err
	}()
	eventually(t, "the other to queue", func() bool { return srv.Queued() == 1 })
	drained := make(chan struct{})
	go func() { srv.Drain(context.Background()); close(drained) }()
	if err := <-queued; status.Code(err) != codes.Unavailable {
		t.Errorf("queued job at drain: %v, want Unavailable", err)
	}
	close(runner.block) // the running job finishes within its grace
	if r := <-running; r.GetVerdict() != airlockv1.Verdict_VERDICT_OK {
		t.Errorf("running job: %v, want OK", r.GetVerdict())
	}
	<-drained
	if n := runner.runs.Load(); n != 1 {
		t.Errorf("runs = %d, want only the running job", n)
	}
}

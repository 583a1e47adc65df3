package broker_test

import (
	"context"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/airlock/airlock/broker"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// TestHealth_NotServingWhileFullOrDraining: airlock.v1.Broker's health is
// NOT_SERVING from the moment the next Spawn would be refused (every slot
// taken, the queue full) until half the queue is gone, and for good once
// the drain begins. The server's ("", which a liveness probe reads) stays
// SERVING while the broker is merely full.
func TestHealth_NotServingWhileFullOrDraining(t *testing.T) {
	runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`), block: make(chan struct{})}
	srv, c, cc := newBrokerServer(t, runner, testToken, broker.Config{MaxJobs: 1, MaxQueue: 2})
	hc := healthpb.NewHealthClient(cc)
	check := func(svc string) healthpb.HealthCheckResponse_ServingStatus {
		r, err := hc.Check(ctx(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("Check(%q): %v", svc, err)
		}
		return r.GetStatus()
	}
	statusIs := func(want healthpb.HealthCheckResponse_ServingStatus, services ...string) func() bool {
		return func() bool {
			for _, svc := range services {
				if check(svc) != want {
					return false
				}
			}
			return true
		}
	}
	brokerSvc := airlockv1.Broker_ServiceDesc.ServiceName
	spawn := func(id string) chan *airlockv1.SpawnResponse {
		out := make(chan *airlockv1.SpawnResponse, 1)
		req := request()
		req.JobId = id
		go func() {
			r, _ := c.Spawn(ctx(t), req)
			out <- r
		}()
		return out
	}
	running := spawn("running")
	eventually(t, "one job to run", runner.started(1))
	queued1 := spawn("queued-1")
	eventually(t, "one job to queue", func() bool { return srv.Queued() == 1 })
	if !statusIs(healthpb.HealthCheckResponse_SERVING, brokerSvc)() {
		t.Fatal("NOT_SERVING with room left in the queue")
	}
	queued2 := spawn("queued-2")
	eventually(t, "NOT_SERVING with the queue full", statusIs(healthpb.HealthCheckResponse_NOT_SERVING, brokerSvc))
	if check("") != healthpb.HealthCheckResponse_SERVING {
		t.Error("the server as a whole is NOT_SERVING while merely full: a liveness probe would kill a busy broker")
	}

	if _, err := c.Cancel(ctx(t), &airlockv1.CancelRequest{JobId: "queued-2"}); err != nil {
		t.Fatal(err)
	}
	<-queued2
	eventually(t, "SERVING with half the queue free", statusIs(healthpb.HealthCheckResponse_SERVING, brokerSvc))

	drained := make(chan struct{})
	go func() { srv.Drain(context.Background()); close(drained) }()
	eventually(t, "NOT_SERVING once draining", statusIs(healthpb.HealthCheckResponse_NOT_SERVING, "", brokerSvc))
	close(runner.block)
	<-running
	<-queued1
	<-drained
	if !statusIs(healthpb.HealthCheckResponse_NOT_SERVING, "", brokerSvc)() {
		t.Error("SERVING again after the drain, once the jobs ended")
	}
}

// TestNode_EveryResponseNamesTheBroker: the node a broker is configured
// with comes back in Spawn's response, the stream's accepted event and
// done job, and GetJob's job, running or finished.
func TestNode_EveryResponseNamesTheBroker(t *testing.T) {
	const node = "10.1.2.3:7443"
	runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`), block: make(chan struct{})}
	_, c, _ := newBrokerServer(t, runner, testToken, broker.Config{Node: node})
	stream, err := c.SpawnStream(ctx(t), &airlockv1.SpawnStreamRequest{Spawn: request()})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := first.GetAccepted().GetNode(); got != node {
		t.Errorf("accepted event node = %q, want %q", got, node)
	}
	eventually(t, "the job to run", runner.started(1))
	got, err := c.GetJob(ctx(t), &airlockv1.GetJobRequest{JobId: first.GetJobId()})
	if err != nil || got.GetJob().GetNode() != node {
		t.Errorf("GetJob of a running job = %v, %v; want node %q", got, err, node)
	}
	close(runner.block)
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if d := ev.GetDone(); d != nil {
			if d.GetNode() != node {
				t.Errorf("done job node = %q, want %q", d.GetNode(), node)
			}
			break
		}
	}
	resp, err := c.Spawn(ctx(t), request())
	if err != nil || resp.GetNode() != node {
		t.Errorf("Spawn = %v, %v; want node %q", resp, err, node)
	}
	got, err = c.GetJob(ctx(t), &airlockv1.GetJobRequest{JobId: resp.GetJobId()})
	if err != nil || got.GetJob().GetNode() != node {
		t.Errorf("GetJob of a finished job = %v, %v; want node %q", got, err, node)
	}
}

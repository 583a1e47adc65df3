package broker

import (
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// readiness is what the broker's gRPC health service says. For
// airlock.v1.Broker: SERVING while the broker admits jobs, NOT_SERVING once
// it drains or while its admission is full. Balancing clients
// (broker/client) and Kubernetes' readiness probe read it, so that a node
// that would refuse the next Spawn gets none. The server as a whole ("")
// is NOT_SERVING only once it drains: a liveness probe reads that, and a
// busy broker is alive.
//
// Full means every sandbox slot is taken and the queue holds MaxQueue
// jobs: the next Spawn would be ResourceExhausted. Warm pools do not count:
// an empty pool makes a job cold, not refused. The way back is lower than
// the way in (half the queue drained), so that a node at its limit does not
// flip its health, and every watching client's picker, on each job that
// finishes and each that arrives.
type readiness struct {
	hs *health.Server
	// full and clear are admitted-job counts: NOT_SERVING from full up,
	// SERVING again at clear or below. serving is the state last set.
	// Guarded by Server.mu.
	full, clear int
	serving     bool
}

func newReadiness(maxJobs, maxQueue int) *readiness {
	r := &readiness{hs: health.NewServer(), full: maxJobs + maxQueue, clear: maxJobs + maxQueue/2, serving: true}
	r.hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	r.set(healthpb.HealthCheckResponse_SERVING)
	return r
}

func (r *readiness) set(st healthpb.HealthCheckResponse_ServingStatus) {
	r.hs.SetServingStatus(airlockv1.Broker_ServiceDesc.ServiceName, st)
}

// admitted updates the state for the count of admitted jobs (running and
// queued). The caller holds Server.mu, so that updates keep their order.
func (r *readiness) admitted(n int) {
	switch {
	case r.serving && n >= r.full:
		r.serving = false
		r.set(healthpb.HealthCheckResponse_NOT_SERVING)
	case !r.serving && n <= r.clear:
		r.serving = true
		r.set(healthpb.HealthCheckResponse_SERVING)
	}
}

// drain turns the health NOT_SERVING for good, the server's and the
// Broker's: the health server ignores every later update.
func (r *readiness) drain() { r.hs.Shutdown() }

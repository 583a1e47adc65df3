package broker

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// spawn validates, deduplicates and runs a job, calling emit for each event.
// interactive says the caller reads the events and can answer approvals.
func (s *Server) spawn(ctx context.Context, req *airlockv1.SpawnRequest, interactive bool, emit func(*airlockv1.SpawnStreamResponse)) (*airlockv1.SpawnResponse, error) {
	if req == nil {
		return nil, badField("spawn", "spawn request is required")
	}
	received := time.Now()
	plan, err := s.plan(req)
	if err != nil {
		s.metrics.RejectedSpawns.WithLabelValues("invalid").Inc()
		return nil, err
	}
	name, _ := owner(ctx)
	digest, err := requestDigest(req)
	if err != nil {
		return nil, err
	}
	j, first := s.jobs.start(name, plan.job.ID, digest)
	if !first {
		// Idempotent retry: the first job's response, never a second run,
		// for the same request. The store is per owner, so this is the
		// caller's own job.
		if j.request != digest {
			return nil, fmt.Errorf("%w: job_id %s was used for a different request; an idempotent retry must repeat the request exactly, and a new request needs a new job_id", ErrAlreadyExists, quoteName(plan.job.ID))
		}
		return j.wait(ctx)
	}
	// The cancel is registered before admission, so that Cancel and Drain
	// reach a job still waiting for a slot: it then never starts.
	jobCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	j.setCancel(cancel)
	release, err := s.admit(jobCtx, name)
	if err == nil && jobCtx.Err() != nil {
		// A slot and the cancel arrived together; the cancel wins.
		release()
		err = jobCtx.Err()
	}
	if err != nil {
		if jobCtx.Err() != nil && ctx.Err() == nil {
			resp := s.verdict(jobCtx, plan, nil, err, false)
			resp.Message = "job cancelled while it waited for a sandbox; nothing ran"
			j.finish(resp)
			s.record(req, plan, nil, resp, j.owner, nil)
			return resp, nil
		}
		j.finish(nil)
		s.jobs.forget(j)
		return nil, err
	}
	defer release()
	s.anomalies.Observe("owner_jobs", name)

	emit(&airlockv1.SpawnStreamResponse{JobId: j.id, Event: &airlockv1.SpawnStreamResponse_Accepted{
		Accepted: &airlockv1.JobAccepted{Policy: effectivePolicy(plan.job.Policy), Node: s.node}}})
	var started time.Time
	plan.job.OnEgress = func(a job.EgressAttempt) {
		emit(&airlockv1.SpawnStreamResponse{JobId: j.id, Event: &airlockv1.SpawnStreamResponse_Egress{Egress: egressProto(a, plan.sanitize)}})
	}
	plan.job.OnStart = func() {
		started = time.Now()
		s.metrics.Observe("spawn", started.Sub(received))
		emit(&airlockv1.SpawnStreamResponse{JobId: j.id, Event: &airlockv1.SpawnStreamResponse_Started{Started: &airlockv1.JobStarted{}}})
	}

	gate := newExecGate(j.id, plan.job.Policy, interactive, s.approvalTimeout, emit, plan.sanitize)
	onStart := plan.job.OnStart
	plan.job.OnStart = func() { gate.started(time.Now()); onStart() }
	j.setGate(gate)
	plan.job.OnExec = gate.decide
	if plan.job.Task == TaskAgent {
		gate.maxCalls = plan.job.Policy.Model.MaxToolCalls
		if gate.maxCalls == 0 {
			// Zero tool calls allowed: refuse the first, not none.
			gate.maxCalls = -1
		}
	}
	plan.job.OnModelCall = func(c job.ModelCall) {
		emit(&airlockv1.SpawnStreamResponse{JobId: j.id, Event: &airlockv1.SpawnStreamResponse_ModelTurn{ModelTurn: modelTurnProto(c, plan.sanitize)}})
	}

	start := time.Now()
	s.metrics.SandboxesLive.Inc()
	out, runErr := s.runner.Run(jobCtx, plan.job)
	s.metrics.SandboxesLive.Dec()
	gate.close()
	j.setGate(nil)
	calls, callLimit := gate.toolCalls()
	resp := s.verdict(jobCtx, plan, out, runErr, callLimit)
	var execCounts map[string]int
	resp.Exec, execCounts = gate.results()
	policyDenied(resp, plan.job.Policy, plan.sanitize)
	resp.Usage.ToolCalls = int32(calls)
	resp.Usage.Wall = durationpb.New(time.Since(start))
	if !started.IsZero() {
		s.metrics.Observe("run", time.Since(started))
	}
	s.metrics.ObserveJob(time.Since(received))
	j.finish(resp)
	s.record(req, plan, out, resp, j.owner, execCounts)
	return resp, nil
}

// requestDigest identifies a request for idempotency by its deterministic
// encoding, so that a retry matches only the same request, field for
// field. A request without a job_id gets a fresh ID and is never compared.
func requestDigest(req *airlockv1.SpawnRequest) ([sha256.Size]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("%w: request cannot be encoded: %v", ErrInvalidRequest, err)
	}
	return sha256.Sum256(b), nil
}

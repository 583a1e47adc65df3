package broker

import (
	"context"
	"crypto/sha256"
	"fmt"
	"runtime/debug"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
	"github.com/airlock/airlock/sandbox/job/panics"
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
	return s.execute(jobCtx, req, plan, j, interactive, emit, received), nil
}

// execute runs an admitted job to its end: its events, its exec gate, the
// runner, the verdict, its record. It always answers with a response: a
// panic on the way, a bug of Airlock's that the job may have provoked (in
// the runner, a hook of the broker's or the verdict), ends this job with
// SANDBOX_ERROR (see recoverJob), never airlockd and every other job in
// it.
func (s *Server) execute(jobCtx context.Context, req *airlockv1.SpawnRequest, plan *plan, j *jobState, interactive bool, emit func(*airlockv1.SpawnStreamResponse), received time.Time) (resp *airlockv1.SpawnResponse) {
	defer s.recoverJob(req, plan, j, &resp)
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
	out, runErr := s.run(jobCtx, plan.job)
	gate.close()
	j.setGate(nil)
	calls, callLimit := gate.toolCalls()
	resp = s.verdict(jobCtx, plan, out, runErr, callLimit)
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
	return resp
}

// run runs the job in the runner, counted as a live sandbox until Run
// returns or panics. A runner tears its sandbox down in its own deferred
// calls, which a panic runs too.
func (s *Server) run(ctx context.Context, j *job.Job) (*job.Outcome, error) {
	s.metrics.SandboxesLive.Inc()
	defer s.metrics.SandboxesLive.Dec()
	return s.runner.Run(ctx, j)
}

// recoverJob, deferred by execute, ends a job whose run panicked: the
// panic is logged with the stack it began in (debug.Stack, taken here,
// still holds those frames), pending approvals end, and the job is
// answered, finished and recorded with SANDBOX_ERROR and a fixed message,
// which quotes nothing of the panic. A panic after the job finished, in
// its record, answers with the response the job finished with.
func (s *Server) recoverJob(req *airlockv1.SpawnRequest, pl *plan, j *jobState, resp **airlockv1.SpawnResponse) {
	r := recover()
	if r == nil {
		return
	}
	panics.Log(s.log, "job panicked", r, debug.Stack(), "job", j.id)
	if g := j.execGate(); g != nil {
		g.close()
		j.setGate(nil)
	}
	failed := s.newResponse(pl)
	failed.Verdict = airlockv1.Verdict_VERDICT_SANDBOX_ERROR
	// The ID matched jobIDPattern at the door, or is the broker's own.
	failed.Message = "the broker failed on this job (a bug), and returns nothing of it; this is not the request's fault: ask the operator to look up job " + pl.job.ID + " in airlockd's log"
	if !j.finish(failed) {
		*resp, _ = j.response()
		return
	}
	s.record(req, pl, nil, failed, j.owner, nil)
	*resp = failed
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

package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/policies/prompt"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// Spawn runs a job to completion.
func (s *Server) Spawn(ctx context.Context, req *airlockv1.SpawnRequest) (*airlockv1.SpawnResponse, error) {
	// Nobody can answer an approval on a unary call: askFallback decides.
	return s.spawn(ctx, req, false, func(*airlockv1.SpawnStreamResponse) {})
}

// SpawnStream runs a job and streams its events.
func (s *Server) SpawnStream(req *airlockv1.SpawnStreamRequest, stream grpc.ServerStreamingServer[airlockv1.SpawnStreamResponse]) error {
	// Events come from the runner, the egress proxy and the tool gateway
	// at once, and a stream's Send is not safe for concurrent use.
	var mu sync.Mutex
	send := func(ev *airlockv1.SpawnStreamResponse) {
		mu.Lock()
		defer mu.Unlock()
		ev.Time = timestamppb.Now()
		if err := stream.Send(ev); err != nil {
			s.log.Debug("stream send", "err", err)
		}
	}
	resp, err := s.spawn(stream.Context(), req.GetSpawn(), true, send)
	if err != nil {
		return err
	}
	send(&airlockv1.SpawnStreamResponse{JobId: resp.JobId, Event: &airlockv1.SpawnStreamResponse_Done{Done: airlockv1.FinishedJob(resp)}})
	return nil
}

// Cancel cancels a running job.
func (s *Server) Cancel(ctx context.Context, req *airlockv1.CancelRequest) (*airlockv1.CancelResponse, error) {
	if req.GetJobId() == "" {
		return nil, badField("job_id", "job_id is required")
	}
	j, err := s.ownedJob(ctx, req.GetJobId())
	if err != nil {
		return nil, err
	}
	return &airlockv1.CancelResponse{Cancelled: j.cancelJob()}, nil
}

// GetJob returns a job's state.
func (s *Server) GetJob(ctx context.Context, req *airlockv1.GetJobRequest) (*airlockv1.GetJobResponse, error) {
	if req.GetJobId() == "" {
		return nil, badField("job_id", "job_id is required")
	}
	j, err := s.ownedJob(ctx, req.GetJobId())
	if err != nil {
		return nil, err
	}
	if resp, done := j.response(); done {
		return &airlockv1.GetJobResponse{Job: airlockv1.FinishedJob(resp)}, nil
	}
	return &airlockv1.GetJobResponse{Job: &airlockv1.Job{JobId: j.id, State: airlockv1.JobState_JOB_STATE_RUNNING, Node: s.node}}, nil
}

// ownedJob returns the caller's job with id. An admin may name another
// owner's job too, as long as only one owner holds the ID. Any other
// owner's job is simply not the caller's: the answer is NotFound, as for
// an ID nobody used, so that a caller cannot learn which IDs others hold.
func (s *Server) ownedJob(ctx context.Context, id string) (*jobState, error) {
	name, admin := owner(ctx)
	if j, ok := s.jobs.get(name, id); ok {
		return j, nil
	}
	if admin {
		switch js := s.jobs.byID(id); len(js) {
		case 0:
		case 1:
			return js[0], nil
		default:
			return nil, badField("job_id", "job_id %s is held by %d callers; ask with the owner's token", quoteName(id), len(js))
		}
	}
	return nil, fmt.Errorf("job %s: %w", quoteName(id), ErrNotFound)
}

// owner is the caller's token name; calls without auth (unit tests that
// skip the interceptors) share the empty owner.
func owner(ctx context.Context) (name string, admin bool) {
	id, ok := auth.Caller(ctx)
	if !ok {
		return "", false
	}
	return id.Name, id.Has(auth.ScopeAdmin)
}

// ListProfiles lists the served profiles.
func (s *Server) ListProfiles(context.Context, *airlockv1.ListProfilesRequest) (*airlockv1.ListProfilesResponse, error) {
	out := &airlockv1.ListProfilesResponse{}
	for _, name := range s.profiles.Names() {
		p, err := s.profiles.Get(name)
		if err != nil {
			return nil, err
		}
		out.Profiles = append(out.Profiles, effectivePolicy(p))
	}
	return out, nil
}

// ExplainProfile returns one profile's effective policy.
func (s *Server) ExplainProfile(_ context.Context, req *airlockv1.ExplainProfileRequest) (*airlockv1.ExplainProfileResponse, error) {
	p, err := s.profiles.Get(req.GetProfile())
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w (known: %v)", quoteName(req.GetProfile()), ErrNotFound, s.profiles.Names())
	}
	js, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	resp := &airlockv1.ExplainProfileResponse{Policy: effectivePolicy(p), EffectiveJson: string(js)}
	if p.Model != nil {
		resp.SystemPrompt, resp.SystemPromptVersion = prompt.System(), prompt.Version
	}
	if s.explainSpec != nil {
		spec, err := s.explainSpec(p)
		if err != nil {
			return nil, fmt.Errorf("render OCI spec of %s: %w", p.Name, err)
		}
		resp.OciSpecJson = string(spec)
	}
	return resp, nil
}

// Approve answers a job's pending approval request.
func (s *Server) Approve(ctx context.Context, req *airlockv1.ApproveRequest) (*airlockv1.ApproveResponse, error) {
	switch {
	case req.GetJobId() == "":
		return nil, badField("job_id", "job_id is required")
	case req.GetRequestId() == "":
		return nil, badField("request_id", "request_id is required")
	case req.GetDecision() != airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE &&
		req.GetDecision() != airlockv1.ApprovalDecision_APPROVAL_DECISION_DENY:
		return nil, badField("decision", "decision must be ALLOW_ONCE or DENY")
	}
	j, err := s.ownedJob(ctx, req.GetJobId())
	if err != nil {
		return nil, err
	}
	g := j.execGate()
	if g == nil || !g.answer(req.GetRequestId(), req.GetDecision()) {
		return nil, fmt.Errorf("%w: job %s has no approval request %s waiting", ErrNotFound, quoteName(req.GetJobId()), quoteName(req.GetRequestId()))
	}
	s.log.Info("exec approval answered", "job", req.GetJobId(), "request", req.GetRequestId(), "decision", req.GetDecision().String())
	return &airlockv1.ApproveResponse{}, nil
}

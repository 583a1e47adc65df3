// Package broker serves Airlock's gRPC API: it resolves a job's policy,
// hands the job to a Runner, and returns only a validated result with a
// verdict. It never talks to containerd itself.
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock/airlock/broker/anomaly"
	"github.com/airlock/airlock/broker/audit"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/metrics"
	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies/policy"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// Request bounds. Content is copied into the job's input directory, so its
// size is the broker's disk and memory, not the sandbox's.
const (
	maxContentItems = 64
	maxContentBytes = 32 << 20
	maxSchemaBytes  = 256 << 10
	maxParams       = 64
	maxParamBytes   = 4 << 10
	// maxAuditLogBytes caps the task output kept in an audit record.
	maxAuditLogBytes = 4 << 10
)

var (
	jobIDPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	taskNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// Config configures a Server.
type Config struct {
	Runner   job.Runner
	Profiles *policy.Set
	Logger   *slog.Logger
	// MaxJobs is how many sandboxes may run at once (default 8).
	MaxJobs int
	// MaxQueue is how many spawns may wait for a sandbox slot (default
	// 2*MaxJobs); more is ResourceExhausted with a retry hint.
	MaxQueue int
	// MaxPerOwner caps one token's concurrent jobs; 0 is no cap.
	MaxPerOwner int
	// Anomalies are burst thresholds by kind: auth_failures,
	// egress_denials (per owner) and owner_jobs (per owner).
	Anomalies map[string]anomaly.Rule
	// Retention is how long a finished job's response is kept for GetJob
	// and for idempotent retries.
	Retention time.Duration
	// RetainJobs caps how many finished jobs are kept, the oldest dropped
	// first; zero is DefaultRetainJobs.
	RetainJobs int
	// DefaultProfile serves requests that name none; default secureclaw.
	DefaultProfile string
	// Audit receives one record per finished job; nil records nothing.
	Audit *audit.Log
	// Metrics receives the broker's metrics; nil keeps a private set.
	Metrics *metrics.Metrics
	// Secrets returns every secret the broker holds (its tokens, service
	// credentials), to be redacted from results and logs wherever they
	// appear. Called per job, so rotated tokens are covered.
	Secrets func() [][]byte
	// ResolveSecret reads a secret reference (env:NAME or file:/path) for
	// a profile's service aliases. Nil means no profile may use services.
	ResolveSecret func(ref string) ([]byte, error)
	// ExplainSpec renders the OCI spec a profile produces, for
	// ExplainProfile. The sandbox provides it; the broker cannot.
	ExplainSpec func(*policy.Profile) ([]byte, error)
	// ApprovalTimeout is how long a command that needs approval waits for
	// Approve before exec.askFallback applies; default
	// DefaultApprovalTimeout.
	ApprovalTimeout time.Duration
}

// Server implements airlockv1.BrokerServer.
type Server struct {
	airlockv1.UnimplementedBrokerServer

	runner   job.Runner
	profiles *policy.Set
	log      *slog.Logger
	slots    chan struct{}
	queued   atomic.Int64
	maxQueue int64

	mu          sync.Mutex
	draining    bool
	running     int
	perOwner    map[string]int
	maxPerOwner int
	anomalies   *anomaly.Detector
	jobs        *jobStore

	defaultProfile string
	explainSpec    func(*policy.Profile) ([]byte, error)
	audit          *audit.Log
	metrics        *metrics.Metrics
	resolveSecret  func(ref string) ([]byte, error)
	secrets        func() [][]byte

	approvalTimeout time.Duration
	gates           gates
}

// New returns a Server. It refuses a config without a runner or profiles
// rather than serving a broker that cannot enforce anything.
func New(cfg Config) (*Server, error) {
	if cfg.Runner == nil {
		return nil, errors.New("broker: Runner is required")
	}
	if cfg.Profiles == nil || len(cfg.Profiles.Names()) == 0 {
		return nil, errors.New("broker: at least one policy profile is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxJobs <= 0 {
		cfg.MaxJobs = 8
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 2 * cfg.MaxJobs
	}
	if cfg.Retention <= 0 {
		cfg.Retention = time.Hour
	}
	if cfg.RetainJobs <= 0 {
		cfg.RetainJobs = DefaultRetainJobs
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	if cfg.DefaultProfile == "" {
		cfg.DefaultProfile = "secureclaw"
	}
	if cfg.ApprovalTimeout <= 0 {
		cfg.ApprovalTimeout = DefaultApprovalTimeout
	}
	if _, err := cfg.Profiles.Get(cfg.DefaultProfile); err != nil {
		return nil, fmt.Errorf("broker: default profile %q is not loaded (have %v)", cfg.DefaultProfile, cfg.Profiles.Names())
	}
	srv := &Server{
		runner:   cfg.Runner,
		profiles: cfg.Profiles,
		log:      cfg.Logger,
		slots:    make(chan struct{}, cfg.MaxJobs),
		maxQueue: int64(cfg.MaxQueue),

		perOwner:    map[string]int{},
		maxPerOwner: cfg.MaxPerOwner,
		jobs:        newJobStore(cfg.Retention, cfg.RetainJobs),

		defaultProfile: cfg.DefaultProfile,
		explainSpec:    cfg.ExplainSpec,
		audit:          cfg.Audit,
		metrics:        cfg.Metrics,
		resolveSecret:  cfg.ResolveSecret,
		secrets:        cfg.Secrets,

		approvalTimeout: cfg.ApprovalTimeout,
	}
	srv.anomalies = anomaly.New(cfg.Anomalies, func(kind, key string, n int) {
		srv.metrics.Anomalies.WithLabelValues(kind).Inc()
		srv.log.Warn("anomaly: burst over the configured rate", "kind", kind, "key", key, "count", n)
	})
	return srv, nil
}

// DefaultAnomalies are the burst thresholds airlockd uses unless told
// otherwise.
var DefaultAnomalies = map[string]anomaly.Rule{
	"auth_failures":  {Limit: 20, Window: time.Minute},
	"egress_denials": {Limit: 50, Window: time.Minute},
	"owner_jobs":     {Limit: 600, Window: time.Minute},
}

// Drain stops admitting jobs, waits for the running ones until ctx ends,
// then cancels those still running and waits for their teardown.
func (s *Server) Drain(ctx context.Context) {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	cancelled := false
	for {
		s.mu.Lock()
		n := s.running
		s.mu.Unlock()
		if n == 0 {
			return
		}
		if ctx.Err() != nil && !cancelled {
			s.log.Warn("drain grace period over; cancelling jobs", "running", n)
			s.jobs.cancelAll()
			cancelled = true
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MethodScopes maps each RPC to the token scope it needs. Cancel and
// Approve need spawn: a caller may cancel or approve for its own jobs, and
// admin reaches others'.
var MethodScopes = map[string]auth.Scope{
	airlockv1.Broker_Spawn_FullMethodName:          auth.ScopeSpawn,
	airlockv1.Broker_SpawnStream_FullMethodName:    auth.ScopeSpawn,
	airlockv1.Broker_Cancel_FullMethodName:         auth.ScopeSpawn,
	airlockv1.Broker_Approve_FullMethodName:        auth.ScopeSpawn,
	airlockv1.Broker_GetJob_FullMethodName:         auth.ScopeRead,
	airlockv1.Broker_ListProfiles_FullMethodName:   auth.ScopeRead,
	airlockv1.Broker_ExplainProfile_FullMethodName: auth.ScopeRead,
	healthpb.Health_List_FullMethodName:            auth.ScopeRead,
	// Reflection, when airlockd serves it, describes the API and nothing
	// else.
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      auth.ScopeRead,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": auth.ScopeRead,
}

// Authenticator returns the auth interceptors' checker for tokens, wired
// to the broker's scopes and metrics.
func (s *Server) Authenticator(tokens []auth.Token) (*auth.Authenticator, error) {
	return auth.NewTokens(tokens, auth.WithMethodScopes(MethodScopes), auth.WithFailureHook(s.authFailed))
}

func (s *Server) authFailed(reason string) {
	s.metrics.AuthFailures.WithLabelValues(reason).Inc()
	s.log.Info("auth failure", "reason", reason)
	if reason != "scope" {
		s.anomalies.Observe("auth_failures", "")
	}
}

// NewGRPCServer returns a gRPC server with the Broker and health services
// registered behind one all-scopes bearer token.
func NewGRPCServer(s *Server, token []byte, opts ...grpc.ServerOption) (*grpc.Server, error) {
	a, err := s.Authenticator([]auth.Token{{Name: auth.TokenCaller, Scopes: auth.AllScopes, Secret: token}})
	if err != nil {
		return nil, err
	}
	return NewGRPCServerAuth(s, a, opts...), nil
}

// NewGRPCServerAuth is NewGRPCServer with a prepared Authenticator, whose
// tokens can then be reloaded while serving.
func NewGRPCServerAuth(s *Server, a *auth.Authenticator, opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(a.StreamServerInterceptor()),
		grpc.MaxRecvMsgSize(maxContentBytes + maxSchemaBytes + 1<<20),
	}, opts...)
	g := grpc.NewServer(opts...)
	airlockv1.RegisterBrokerServer(g, s)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(airlockv1.Broker_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	return g
}

// Spawn runs a job to completion.
func (s *Server) Spawn(ctx context.Context, req *airlockv1.SpawnRequest) (*airlockv1.SpawnResponse, error) {
	// Nobody can answer an approval on a unary call: askFallback decides.
	resp, err := s.spawn(ctx, req, false, func(*airlockv1.SpawnStreamResponse) {})
	return resp, toStatus(err)
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
		return toStatus(err)
	}
	send(&airlockv1.SpawnStreamResponse{JobId: resp.JobId, Event: &airlockv1.SpawnStreamResponse_Finished{Finished: resp}})
	return nil
}

// Cancel cancels a running job.
func (s *Server) Cancel(ctx context.Context, req *airlockv1.CancelRequest) (*airlockv1.CancelResponse, error) {
	if req.GetJobId() == "" {
		return nil, toStatus(fmt.Errorf("%w: job_id is required", ErrInvalidRequest))
	}
	j, err := s.ownedJob(ctx, req.GetJobId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &airlockv1.CancelResponse{Cancelled: j.cancelJob()}, nil
}

// GetJob returns a job's state.
func (s *Server) GetJob(ctx context.Context, req *airlockv1.GetJobRequest) (*airlockv1.GetJobResponse, error) {
	if req.GetJobId() == "" {
		return nil, toStatus(fmt.Errorf("%w: job_id is required", ErrInvalidRequest))
	}
	j, err := s.ownedJob(ctx, req.GetJobId())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &airlockv1.GetJobResponse{JobId: j.id, State: airlockv1.JobState_JOB_STATE_RUNNING}
	if resp, done := j.response(); done {
		out.State = airlockv1.JobState_JOB_STATE_FINISHED
		out.Response = resp
	}
	return out, nil
}

// ownedJob returns the job if the caller owns it or holds admin. Another
// owner's job is PermissionDenied, not NotFound: job IDs are the caller's
// own idempotency keys, so confirming one exists tells nothing new.
func (s *Server) ownedJob(ctx context.Context, id string) (*jobState, error) {
	j, ok := s.jobs.get(id)
	if !ok {
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	if err := checkOwner(ctx, j); err != nil {
		return nil, err
	}
	return j, nil
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

func checkOwner(ctx context.Context, j *jobState) error {
	name, admin := owner(ctx)
	if j.owner != name && !admin {
		return fmt.Errorf("%w: job %q belongs to another caller", ErrPermission, j.id)
	}
	return nil
}

// ListProfiles lists the served profiles.
func (s *Server) ListProfiles(context.Context, *airlockv1.ListProfilesRequest) (*airlockv1.ListProfilesResponse, error) {
	out := &airlockv1.ListProfilesResponse{}
	for _, name := range s.profiles.Names() {
		p, err := s.profiles.Get(name)
		if err != nil {
			return nil, toStatus(err)
		}
		out.Profiles = append(out.Profiles, effectivePolicy(p))
	}
	return out, nil
}

// ExplainProfile returns one profile's effective policy.
func (s *Server) ExplainProfile(_ context.Context, req *airlockv1.ExplainProfileRequest) (*airlockv1.ExplainProfileResponse, error) {
	p, err := s.profiles.Get(req.GetProfile())
	if err != nil {
		return nil, toStatus(fmt.Errorf("profile %q: %w (known: %v)", req.GetProfile(), ErrNotFound, s.profiles.Names()))
	}
	js, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &airlockv1.ExplainProfileResponse{Policy: effectivePolicy(p), EffectiveJson: string(js)}
	if s.explainSpec != nil {
		spec, err := s.explainSpec(p)
		if err != nil {
			return nil, toStatus(fmt.Errorf("render OCI spec of %s: %w", p.Name, err))
		}
		resp.OciSpecJson = string(spec)
	}
	return resp, nil
}

// spawn validates, deduplicates and runs a job, calling emit for each event.
// interactive says the caller reads the events and can answer approvals.
func (s *Server) spawn(ctx context.Context, req *airlockv1.SpawnRequest, interactive bool, emit func(*airlockv1.SpawnStreamResponse)) (*airlockv1.SpawnResponse, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: spawn request is required", ErrInvalidRequest)
	}
	received := time.Now()
	plan, err := s.plan(req)
	if err != nil {
		s.metrics.RejectedSpawns.WithLabelValues("invalid").Inc()
		return nil, err
	}
	name, _ := owner(ctx)
	j, first := s.jobs.start(plan.job.ID, name)
	if !first {
		// Idempotent retry: the first job's response, never a second run,
		// and only to the caller that ran it.
		if err := checkOwner(ctx, j); err != nil {
			return nil, err
		}
		return j.wait(ctx)
	}
	release, err := s.admit(ctx, name)
	if err != nil {
		j.finish(nil)
		s.jobs.forget(j.id)
		return nil, err
	}
	defer release()
	s.anomalies.Observe("owner_jobs", name)

	emit(&airlockv1.SpawnStreamResponse{JobId: j.id, Event: &airlockv1.SpawnStreamResponse_Accepted{
		Accepted: &airlockv1.JobAccepted{Policy: effectivePolicy(plan.job.Policy)}}})
	jobCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	j.setCancel(cancel)
	var started time.Time
	plan.job.OnEgress = func(a job.EgressAttempt) {
		emit(&airlockv1.SpawnStreamResponse{JobId: j.id, Event: &airlockv1.SpawnStreamResponse_Egress{Egress: egressProto(a)}})
	}
	plan.job.OnStart = func() {
		started = time.Now()
		s.metrics.Observe("spawn", started.Sub(received))
		emit(&airlockv1.SpawnStreamResponse{JobId: j.id, Event: &airlockv1.SpawnStreamResponse_Started{Started: &airlockv1.JobStarted{}}})
	}

	gate := newExecGate(j.id, plan.job.Policy, interactive, s.approvalTimeout, emit, s.sanitizeOptions(plan.job))
	s.gates.add(gate)
	plan.job.OnExec = gate.decide

	start := time.Now()
	s.metrics.SandboxesLive.Inc()
	out, runErr := s.runner.Run(jobCtx, plan.job)
	s.metrics.SandboxesLive.Dec()
	gate.close()
	s.gates.remove(gate)
	resp := s.verdict(jobCtx, plan, out, runErr)
	var execCounts map[string]int
	resp.Exec, execCounts = gate.results()
	resp.Usage.Wall = durationpb.New(time.Since(start))
	if !started.IsZero() {
		s.metrics.Observe("run", time.Since(started))
	}
	s.metrics.Observe("total", time.Since(received))
	j.finish(resp)
	s.record(req, plan, out, resp, j.owner, execCounts)
	return resp, nil
}

// record writes the job's audit record. It holds counts and identifiers,
// never the content or the result.
func (s *Server) record(req *airlockv1.SpawnRequest, pl *plan, out *job.Outcome, resp *airlockv1.SpawnResponse, owner string, execCounts map[string]int) {
	rec := audit.Record{
		Time:        time.Now().UTC(),
		JobID:       resp.JobId,
		Owner:       owner,
		Profile:     pl.job.Policy.Name,
		PolicyHash:  resp.Policy.GetHash(),
		Image:       pl.job.Image,
		Task:        pl.job.Task,
		Labels:      req.GetLabels(),
		Verdict:     resp.Verdict.String(),
		Message:     resp.Message,
		ExitCode:    int(resp.Usage.GetExitCode()),
		WallMillis:  resp.Usage.GetWall().AsDuration().Milliseconds(),
		MemoryPeak:  resp.Usage.GetMemoryPeakBytes(),
		CPUMillis:   resp.Usage.GetCpu().AsDuration().Milliseconds(),
		OutputBytes: resp.Usage.GetOutputBytes(),
	}
	if out != nil && len(out.GatewayRefused) > 0 {
		if execCounts == nil {
			execCounts = map[string]int{}
		}
		for reason, n := range out.GatewayRefused {
			execCounts["GATEWAY_REFUSED_"+strings.ToUpper(reason)] += n
		}
		s.log.Warn("tool gateway refused requests", "job", resp.JobId, "refused", out.GatewayRefused)
	}
	if len(execCounts) > 0 {
		// Counts by verdict, never the commands: they are the job's words.
		rec.Exec = execCounts
	}
	if out != nil {
		rec.ImageDigest = out.ImageDigest
		// The task's own output is hostile text: it is recorded capped,
		// and sanitized and redacted like a result, never raw.
		logs := out.Logs
		if len(logs) > maxAuditLogBytes {
			logs = logs[:maxAuditLogBytes]
		}
		rec.Logs = result.SanitizeText(string(logs), s.sanitizeOptions(pl.job))
	}
	for _, f := range resp.GetSanitization().GetFindings() {
		if rec.Findings == nil {
			rec.Findings = map[string]int{}
		}
		rec.Findings[f.Kind]++
	}
	for _, e := range resp.GetEgress() {
		if e.Allowed {
			rec.EgressAllowed++
		} else {
			rec.EgressDenied++
		}
	}
	s.metrics.Jobs.WithLabelValues(rec.Profile, rec.Verdict).Inc()
	for kind, n := range rec.Findings {
		s.metrics.Sanitizer.WithLabelValues(kind).Add(float64(n))
	}
	for _, e := range resp.GetEgress() {
		decision := "denied"
		if e.Allowed {
			decision = "allowed"
		} else {
			s.anomalies.Observe("egress_denials", owner)
		}
		s.metrics.Egress.WithLabelValues(e.Host, decision).Inc()
	}
	s.log.Info("job finished", "job", rec.JobID, "profile", rec.Profile, "verdict", rec.Verdict,
		"policy_hash", rec.PolicyHash, "wall_ms", rec.WallMillis)
	if s.audit != nil {
		if err := s.audit.Write(rec); err != nil {
			s.log.Error("audit log write failed", "job", rec.JobID, "err", err)
		}
	}
}

// admit takes a sandbox slot for owner, waiting in the bounded queue if
// all are busy. The returned func gives everything back.
func (s *Server) admit(ctx context.Context, owner string) (func(), error) {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		s.metrics.RejectedSpawns.WithLabelValues("draining").Inc()
		return nil, fmt.Errorf("%w: the broker is shutting down; retry against its successor", ErrUnavailable)
	}
	if s.maxPerOwner > 0 && s.perOwner[owner] >= s.maxPerOwner {
		s.mu.Unlock()
		s.metrics.RejectedSpawns.WithLabelValues("owner_quota").Inc()
		return nil, fmt.Errorf("%w: %q already runs %d jobs, its quota", ErrOverloaded, owner, s.maxPerOwner)
	}
	s.running++
	s.perOwner[owner]++
	s.mu.Unlock()
	undo := func() {
		s.mu.Lock()
		s.running--
		if s.perOwner[owner]--; s.perOwner[owner] <= 0 {
			delete(s.perOwner, owner)
		}
		s.mu.Unlock()
	}
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots; undo() }, nil
	default:
	}
	if s.queued.Add(1) > s.maxQueue {
		s.queued.Add(-1)
		undo()
		s.metrics.RejectedSpawns.WithLabelValues("overloaded").Inc()
		return nil, fmt.Errorf("%w: %d jobs running and %d waiting", ErrOverloaded, cap(s.slots), s.maxQueue)
	}
	defer s.queued.Add(-1)
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots; undo() }, nil
	case <-ctx.Done():
		undo()
		return nil, ctx.Err()
	}
}

// plan is a validated request, ready to run.
type plan struct {
	job    *job.Job
	schema *result.Schema
}

// plan validates req and resolves its policy. Every failure is
// ErrInvalidRequest with a message that says what to change.
func (s *Server) plan(req *airlockv1.SpawnRequest) (*plan, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, a...))
	}
	id := req.GetJobId()
	if id == "" {
		id = uuid.NewString()
	} else if !jobIDPattern.MatchString(id) {
		return nil, bad("job_id %q must be 1-128 characters of letters, digits, '.', '_' or '-'", id)
	}
	name := req.GetProfile()
	if name == "" {
		name = s.defaultProfile
	}
	base, err := s.profiles.Get(name)
	if err != nil {
		return nil, bad("unknown profile %q; known profiles: %v", name, s.profiles.Names())
	}
	var o policy.Overrides
	if ov := req.GetOverrides(); ov != nil {
		if ov.GetTimeout() != nil {
			if err := ov.GetTimeout().CheckValid(); err != nil || ov.GetTimeout().AsDuration() <= 0 {
				return nil, bad("overrides.timeout must be a positive duration")
			}
			o.Timeout = ov.GetTimeout().AsDuration()
		}
		if ov.GetMemoryBytes() < 0 {
			return nil, bad("overrides.memory_bytes must not be negative")
		}
		if ov.GetOutputBytes() < 0 {
			return nil, bad("overrides.output_bytes must not be negative")
		}
		o.MemoryBytes = ov.GetMemoryBytes()
		o.OutputBytes = ov.GetOutputBytes()
		o.Egress = ov.GetEgress()
	}
	p, err := base.Tighten(o)
	if err != nil {
		return nil, bad("overrides: %v", err)
	}
	task := req.GetTask()
	if !taskNamePattern.MatchString(task.GetName()) {
		return nil, bad("task.name %q must be a lowercase task name such as summarize", task.GetName())
	}
	if err := checkTask(p, task.GetName()); err != nil {
		return nil, err
	}
	if len(task.GetParams()) > maxParams {
		return nil, bad("task.params has %d entries; at most %d", len(task.GetParams()), maxParams)
	}
	for k, v := range task.GetParams() {
		if len(k)+len(v) > maxParamBytes {
			return nil, bad("task.params[%q] is longer than %d bytes", k, maxParamBytes)
		}
	}
	if len(req.GetContent()) == 0 {
		return nil, bad("content is required")
	}
	if len(req.GetContent()) > maxContentItems {
		return nil, bad("%d content items; at most %d", len(req.GetContent()), maxContentItems)
	}
	var total int
	content := make([]job.Content, 0, len(req.GetContent()))
	for _, c := range req.GetContent() {
		total += len(c.GetData())
		content = append(content, job.Content{Data: c.GetData(), MediaType: c.GetMediaType(), Source: c.GetSource()})
	}
	if total > maxContentBytes {
		return nil, bad("content is %d bytes; at most %d", total, maxContentBytes)
	}
	schemaText := req.GetResultSchema()
	if schemaText == "" {
		schemaText = p.Result.DefaultSchema
	}
	if schemaText == "" {
		return nil, bad("result_schema is required: profile %s has no default schema", p.Name)
	}
	if len(schemaText) > maxSchemaBytes {
		return nil, bad("result_schema is longer than %d bytes", maxSchemaBytes)
	}
	schema, err := result.CompileSchema(schemaText)
	if err != nil {
		return nil, bad("result_schema: %v", err)
	}
	services, err := s.services(p)
	if err != nil {
		return nil, err
	}
	return &plan{
		job: &job.Job{
			ID:       id,
			Image:    p.Image(),
			Task:     task.GetName(),
			Params:   task.GetParams(),
			Content:  content,
			Tools:    p.EffectiveTools(policy.KnownTools),
			Policy:   p,
			Services: services,
		},
		schema: schema,
	}, nil
}

// services resolves the profile's service aliases. A secret that cannot be
// read fails the request before any sandbox starts: an alias must never be
// forwarded without its credential.
func (s *Server) services(p *policy.Profile) (map[string]job.Service, error) {
	if len(p.Network.Services) == 0 {
		return nil, nil
	}
	if s.resolveSecret == nil {
		return nil, fmt.Errorf("%w: profile %s uses service aliases but this broker has no secret source", ErrPrecondition, p.Name)
	}
	out := make(map[string]job.Service, len(p.Network.Services))
	for alias, svc := range p.Network.Services {
		var secret []byte
		if svc.Inject.SecretRef != "" {
			v, err := s.resolveSecret(svc.Inject.SecretRef)
			if err != nil {
				return nil, fmt.Errorf("%w: service %s of profile %s: %v", ErrPrecondition, alias, p.Name, err)
			}
			secret = v
		}
		out[alias] = job.Service{Upstream: svc.Upstream, Header: svc.Inject.Header, Secret: secret}
	}
	return out, nil
}

func egressProto(a job.EgressAttempt) *airlockv1.EgressAttempt {
	return &airlockv1.EgressAttempt{
		Time: timestamppb.New(a.Time), Host: a.Host, Port: uint32(a.Port), Allowed: a.Allowed, Reason: a.Reason,
		Method: a.Method, BytesUp: a.BytesUp, BytesDown: a.BytesDown,
	}
}

// sanitizeOptions is how a job's result is cleaned: every secret the
// broker holds and the job's service secrets are redacted, links are kept
// only to the job's egress hosts, strings are capped by the profile.
func (s *Server) sanitizeOptions(job *job.Job) result.SanitizeOptions {
	p := job.Policy
	opts := result.SanitizeOptions{MaxStringLength: p.Result.MaxStringLength, KeepLinks: p.Result.KeepLinks}
	if s.secrets != nil {
		opts.Secrets = append(opts.Secrets, s.secrets()...)
	}
	for _, svc := range job.Services {
		if len(svc.Secret) > 0 {
			opts.Secrets = append(opts.Secrets, svc.Secret)
		}
	}
	var rules []policy.EgressRule
	for _, e := range p.Network.Egress {
		if r, err := policy.ParseEgress(e); err == nil {
			rules = append(rules, r)
		}
	}
	opts.AllowedHosts = func(host string) bool {
		for _, r := range rules {
			if r.Matches(host, r.Port) {
				return true
			}
		}
		return false
	}
	for _, pat := range p.Result.RedactPatterns {
		// Validated at load; a pattern that fails here is skipped rather
		// than failing every job.
		if re, err := regexp.Compile(pat); err == nil {
			opts.ExtraPatterns = append(opts.ExtraPatterns, re)
		}
	}
	return opts
}

// verdict turns what came out of the sandbox into the response. The raw
// result is parsed and validated here, and only the validated value can
// leave.
func (s *Server) verdict(ctx context.Context, pl *plan, out *job.Outcome, runErr error) *airlockv1.SpawnResponse {
	p := pl.job.Policy
	resp := &airlockv1.SpawnResponse{
		JobId:        pl.job.ID,
		Policy:       effectivePolicy(p),
		Usage:        &airlockv1.Usage{},
		Sanitization: &airlockv1.SanitizationReport{},
	}
	set := func(v airlockv1.Verdict, format string, a ...any) *airlockv1.SpawnResponse {
		resp.Verdict = v
		resp.Message = fmt.Sprintf(format, a...)
		return resp
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return set(airlockv1.Verdict_VERDICT_CANCELLED, "job cancelled before it finished")
		}
		s.log.Error("sandbox failed", "job", pl.job.ID, "err", runErr)
		return set(airlockv1.Verdict_VERDICT_SANDBOX_ERROR, "sandbox failed: %v", runErr)
	}
	for _, a := range out.Egress {
		resp.Egress = append(resp.Egress, egressProto(a))
	}
	resp.Usage.ExitCode = int32(out.ExitCode)
	resp.Usage.MemoryPeakBytes = out.MemoryPeakBytes
	resp.Usage.Cpu = durationpb.New(out.CPU)
	resp.Usage.OutputBytes = int64(len(out.Result))
	switch {
	case out.TimedOut:
		return set(airlockv1.Verdict_VERDICT_TIMEOUT, "job ran past its %s deadline and was killed", p.Limits.Timeout)
	case out.OOMKilled:
		return set(airlockv1.Verdict_VERDICT_OOM, "job exceeded its %d-byte memory limit", p.Limits.MemoryBytes)
	case out.PidsLimitHit:
		return set(airlockv1.Verdict_VERDICT_RESOURCE_LIMIT, "job hit its limit of %d processes", p.Limits.Pids)
	case out.OutputTooLarge:
		return set(airlockv1.Verdict_VERDICT_OUTPUT_TOO_LARGE, "result is larger than the %d-byte output cap", p.Limits.OutputBytes)
	case out.ExitCode != 0:
		return set(airlockv1.Verdict_VERDICT_SANDBOX_ERROR, "agent exited with code %d", out.ExitCode)
	case out.Result == nil:
		return set(airlockv1.Verdict_VERDICT_SCHEMA_INVALID, "no result: %s", out.ResultProblem)
	}
	st, findings, err := result.Process(out.Result, pl.schema, p.Limits.OutputBytes, s.sanitizeOptions(pl.job))
	for _, f := range findings {
		resp.Sanitization.Findings = append(resp.Sanitization.Findings, &airlockv1.SanitizationFinding{
			Path: f.Path, Kind: f.Kind, Detail: f.Detail, Count: int32(f.Count)})
	}
	if err != nil {
		return set(airlockv1.Verdict_VERDICT_SCHEMA_INVALID, "result rejected: %v", err)
	}
	resp.Result = st
	resp.Verdict = airlockv1.Verdict_VERDICT_OK
	return resp
}

func effectivePolicy(p *policy.Profile) *airlockv1.EffectivePolicy {
	return &airlockv1.EffectivePolicy{Profile: p.Name, Hash: p.Hash(), Summary: p.Summary()}
}

// checkTask refuses a task the profile's tool policy rules out: a task
// that is itself a tool (extract_text, fetch, ...) must be one of the
// job's tools, and run, which only makes tool calls, needs a tool gateway.
func checkTask(p *policy.Profile, name string) error {
	if name == "run" {
		if !p.ToolGateway() {
			return fmt.Errorf("%w: task run makes tool calls, and profile %s allows none that the broker decides (exec, %s)",
				ErrPermission, p.Name, strings.Join(policy.GatewayTools, ", "))
		}
		return nil
	}
	if slices.Contains(policy.KnownTools, name) && !slices.Contains(p.EffectiveTools(policy.KnownTools), name) {
		return fmt.Errorf("%w: task %s is a tool that profile %s does not allow (its tools: %s)",
			ErrPermission, name, p.Name, strings.Join(p.EffectiveTools(policy.KnownTools), ", "))
	}
	return nil
}

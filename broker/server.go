// Package broker serves Airlock's gRPC API: it resolves a job's policy,
// hands the job to a Runner, and returns only a validated result with a
// verdict. It never talks to containerd itself.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/airlock/airlock/broker/audit"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/internal/anomaly"
	"github.com/airlock/airlock/broker/metrics"
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
	// maxInstructionsBytes caps the agent task's instructions: a task
	// description, not a document; content goes in content.
	maxInstructionsBytes = 32 << 10
	// maxAuditLogBytes caps the task output kept in an audit record.
	maxAuditLogBytes = 4 << 10
	// MaxMessageBytes is the largest request gRPC reads. It is twice what
	// the fields' own bounds add up to, so that a request over those is
	// read and refused at the door naming the field and its limit. Only
	// one over this gets gRPC's own words, which gRPC writes before any
	// handler or interceptor sees the call; broker/client rewrites them.
	MaxMessageBytes = 2 * (maxContentBytes + maxSchemaBytes + maxInstructionsBytes + maxParams*maxParamBytes + 1<<20)
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
	// Tasks are the tasks the images serve, checked with their params at
	// the door; nil is the reference agent's, job.ReferenceTasks.
	Tasks []job.TaskSpec
	// Node is the address this broker is reached at, as clients that
	// balance over several brokers know it. Every response and a stream's
	// accepted event carry it, so that GetJob, Cancel and Approve for a job
	// find the broker that holds it. Empty is sent as empty.
	Node string
	// Images imports, lists and removes agent images; nil serves no
	// image RPCs (FailedPrecondition).
	Images job.ImageStore
	// ImageSpoolDir is where an import's upload is spooled, a directory
	// of the broker's own; required with Images.
	ImageSpoolDir string
	// MaxImageBytes caps an import's upload; zero is DefaultMaxImageBytes.
	MaxImageBytes int64
	// ImportIdle is how long an import's upload may go without a message
	// before it is ended, and the single import slot freed; zero is
	// DefaultImportIdle.
	ImportIdle time.Duration
}

// Server implements airlockv1.BrokerServer.
type Server struct {
	airlockv1.UnimplementedBrokerServer

	runner   job.Runner
	tasks    []job.TaskSpec
	profiles *policy.Set
	log      *slog.Logger
	slots    chan struct{}
	queued   atomic.Int64
	maxQueue int64

	node string

	mu       sync.Mutex
	draining bool
	// ready is the health service's state, updated under mu: the one
	// health service of every gRPC server made for this broker, the API's
	// and the probes', so that both report the same status.
	ready *readiness
	// drainStarted is closed when Drain begins, so that jobs waiting in
	// the admission queue give up their place at once.
	drainStarted chan struct{}
	running      int
	// runningChanged is closed, and replaced, whenever running drops, so
	// that Drain waits without polling.
	runningChanged chan struct{}
	perOwner       map[string]int
	maxPerOwner    int
	anomalies      *anomaly.Detector
	jobs           *jobStore

	defaultProfile string
	explainSpec    func(*policy.Profile) ([]byte, error)
	audit          *audit.Log
	metrics        *metrics.Metrics
	resolveSecret  func(ref string) ([]byte, error)
	secrets        func() [][]byte

	approvalTimeout time.Duration

	images        job.ImageStore
	spoolDir      string
	maxImageBytes int64
	importIdle    time.Duration
	// importing holds the one import that may run at a time.
	importing chan struct{}
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
	if cfg.Tasks == nil {
		cfg.Tasks = job.ReferenceTasks()
	}
	if cfg.Images != nil && cfg.ImageSpoolDir == "" {
		return nil, errors.New("broker: ImageSpoolDir is required with Images: refusing to spool uploads to the system's temp dir")
	}
	if cfg.MaxImageBytes <= 0 {
		cfg.MaxImageBytes = DefaultMaxImageBytes
	}
	if cfg.ImportIdle <= 0 {
		cfg.ImportIdle = DefaultImportIdle
	}
	if _, err := cfg.Profiles.Get(cfg.DefaultProfile); err != nil {
		return nil, fmt.Errorf("broker: default profile %q is not loaded (have %v)", cfg.DefaultProfile, cfg.Profiles.Names())
	}
	srv := &Server{
		runner:   cfg.Runner,
		tasks:    cfg.Tasks,
		profiles: cfg.Profiles,
		log:      cfg.Logger,
		slots:    make(chan struct{}, cfg.MaxJobs),
		maxQueue: int64(cfg.MaxQueue),
		node:     cfg.Node,
		ready:    newReadiness(cfg.MaxJobs, cfg.MaxQueue),

		perOwner:       map[string]int{},
		runningChanged: make(chan struct{}),
		drainStarted:   make(chan struct{}),
		maxPerOwner:    cfg.MaxPerOwner,
		jobs:           newJobStore(cfg.Retention, cfg.RetainJobs),

		defaultProfile: cfg.DefaultProfile,
		explainSpec:    cfg.ExplainSpec,
		audit:          cfg.Audit,
		metrics:        cfg.Metrics,
		resolveSecret:  cfg.ResolveSecret,
		secrets:        cfg.Secrets,

		approvalTimeout: cfg.ApprovalTimeout,

		images:        cfg.Images,
		spoolDir:      cfg.ImageSpoolDir,
		maxImageBytes: cfg.MaxImageBytes,
		importIdle:    cfg.ImportIdle,
		importing:     make(chan struct{}, 1),
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
	if !s.draining {
		close(s.drainStarted)
		s.ready.drain()
	}
	s.draining = true
	s.mu.Unlock()
	grace := ctx.Done()
	for {
		s.mu.Lock()
		n, changed := s.running, s.runningChanged
		s.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-changed:
		case <-grace:
			s.log.Warn("drain grace period over; cancelling jobs", "running", n)
			s.jobs.cancelAll()
			grace = nil
		}
	}
}

// Draining reports whether Drain has begun: no job is admitted any more.
func (s *Server) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Queued is how many admitted jobs wait for a sandbox slot.
func (s *Server) Queued() int { return int(s.queued.Load()) }

// Running is how many admitted jobs have not finished, queued ones
// included.
func (s *Server) Running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
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
	// Images decide what agents the profiles can run: the operator's.
	airlockv1.Broker_ImportImage_FullMethodName: auth.ScopeAdmin,
	airlockv1.Broker_ListImages_FullMethodName:  auth.ScopeAdmin,
	airlockv1.Broker_RemoveImage_FullMethodName: auth.ScopeAdmin,
	healthpb.Health_List_FullMethodName:         auth.ScopeRead,
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
		// The error interceptors are outermost: whatever a handler returns,
		// a sentinel or a wrapped one, becomes a status there and only
		// there. Auth's refusals are statuses already and pass through.
		grpc.ChainUnaryInterceptor(recoverUnary(s.log), unaryErrors, a.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(recoverStream(s.log), streamErrors, watchLimit(MaxHealthWatches), a.StreamServerInterceptor()),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
	}, opts...)
	g := grpc.NewServer(opts...)
	airlockv1.RegisterBrokerServer(g, s)
	healthpb.RegisterHealthServer(g, s.ready.hs)
	return g
}

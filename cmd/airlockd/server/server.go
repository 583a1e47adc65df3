// Package server is airlockd, the whole daemon, built from a typed Options:
// tokens, policies, the listener, the state-dir lock, containerd, images,
// the sandbox runner and its warm pools, metrics, the audit log, the broker
// and its gRPC server. cmd/airlockd parses flags into Options; the
// integration suite starts the same package, so that what is tested is
// what ships.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/audit"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/listen"
	"github.com/airlock/airlock/broker/metrics"
	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/cgroupv2"
	"github.com/airlock/airlock/sandbox/egress"
	"github.com/airlock/airlock/sandbox/embedded"
	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/job"
)

// Options is everything airlockd is configured with: the flags of
// cmd/airlockd, typed. The zero value of a field is its flag's default
// only where the field says so; cmd/airlockd fills in every default.
type Options struct {
	// Socket is the unix socket to serve on; empty is $AIRLOCK_SOCKET or
	// client.DefaultSocket. Listen, when set, serves TCP instead.
	Socket, Listen string
	// AdvertiseAddress is the host:port clients that balance over several
	// airlockd instances reach this one at; every response carries it, so
	// that a job's later calls find this node. Empty is the address
	// served: Listen's (with its port), or unix:// and the socket.
	AdvertiseAddress string
	// MaxConnectionAge, when positive, asks each client to reconnect once
	// its connection is this old (calls in flight run on to their end), so
	// that a client balancing over a DNS name resolves it again and finds
	// brokers added since. Zero never asks.
	MaxConnectionAge time.Duration
	// AllowRemote, TLSCert, TLSKey and TLSClientCA are for a Listen
	// address that is not loopback.
	AllowRemote                  bool
	TLSCert, TLSKey, TLSClientCA string
	// TokenFile holds the one bearer token (empty: $AIRLOCK_TOKEN_FILE);
	// TokensFile, instead, names tokens with scopes.
	TokenFile, TokensFile string
	// StateDir holds job dirs, the lock, the audit log by default and the
	// embedded containerd.
	StateDir string
	// ContainerdAddress is a containerd to use; empty starts a private one.
	ContainerdAddress string
	// AgentBinary is the static airlock-agent; empty is next to the
	// running executable. Busybox is the static busybox for tools images.
	AgentBinary, Busybox string
	// PolicyDir holds the profiles; empty is the shipped ones.
	PolicyDir      string
	DefaultProfile string
	// AuditLog is the audit log's path; empty is StateDir/audit.jsonl.
	AuditLog string
	// MetricsListen is a host:port for Prometheus metrics under Listen's
	// bind rule and TLS (metricsBind); PprofListen a loopback host:port.
	// Empty serves none.
	MetricsListen, PprofListen string
	// HealthListen is a host:port, any address, that serves only the
	// gRPC health service's Check and Watch, in plaintext and without a
	// token, for Kubernetes' gRPC probes; empty serves none.
	HealthListen string
	// Dev allows what only a developer's machine should (exec full).
	Dev                                  bool
	MaxConcurrent, MaxQueue, MaxPerOwner int
	JobRetention                         time.Duration
	RetainJobs                           int
	ApprovalTimeout                      time.Duration
	// DrainGrace is how long running jobs may finish at Shutdown before
	// they are cancelled.
	DrainGrace time.Duration
	// Reflection serves gRPC reflection (still behind the token).
	Reflection bool
	// EgressPool is where job veth addresses come from; zero is
	// netns.DefaultPrefix.
	EgressPool netip.Prefix
	ProxyPort  uint
	// Pools maps a profile name to its warm pool size.
	Pools            map[string]int
	PoolIdle         time.Duration
	PoolMinAvailable int64
	// MaxImageBytes caps an agent image import's upload; zero is
	// broker.DefaultMaxImageBytes.
	MaxImageBytes int64
	// Logger is where airlockd logs; nil discards.
	Logger *slog.Logger

	// UpstreamCA is a PEM bundle of CAs the egress proxy trusts for https
	// service upstreams, besides the system roots: a private model
	// gateway's, or the stand-in model's in tests.
	UpstreamCA string

	// Egress configures the egress proxy beyond its defaults. The
	// integration suite sets a resolver that maps its test names to
	// loopback; airlockd sets nothing.
	Egress egress.Config
	// ExtraImages are imported beside the ones the profiles need. For the
	// integration suite's test-only hostile image.
	ExtraImages []images.Spec
	// WrapRunner, when set, wraps the sandbox runner the broker is given.
	// For the integration suite, which routes the hostile image's tasks to
	// it; a production broker picks the image from the policy only.
	WrapRunner func(job.Runner) job.Runner
	// AgentTasks, when set, are the tasks of an AgentBinary other than
	// the reference agent: only they are served, each taking any params,
	// which that agent checks itself. Empty serves the reference agent's
	// tasks, whose params the broker checks at the door.
	AgentTasks []string
	// ExtraTasks are served beside those, for the integration suite's
	// hostile image, whose tasks take any params.
	ExtraTasks []job.TaskSpec
}

// Validate refuses values that parse but mean nothing, before any work
// starts.
func (o *Options) Validate() error {
	if o.ProxyPort == 0 || o.ProxyPort > 65535 {
		return errors.New("--proxy-port must be 1-65535")
	}
	// The broker would quietly take a zero for its default; an operator
	// who typed one meant something else.
	if o.JobRetention <= 0 || o.RetainJobs <= 0 {
		return fmt.Errorf("--job-retention %v and --retain-jobs %d: both must be positive", o.JobRetention, o.RetainJobs)
	}
	if o.ApprovalTimeout <= 0 {
		return fmt.Errorf("--approval-timeout %v: must be positive, such as %v", o.ApprovalTimeout, broker.DefaultApprovalTimeout)
	}
	if o.StateDir == "" {
		return errors.New("--state-dir is required")
	}
	if o.MetricsListen != "" {
		if err := listen.Check("--metrics-listen", o.metricsBind()); err != nil {
			return err
		}
	}
	if o.MaxConnectionAge < 0 {
		return fmt.Errorf("--max-connection-age %v: must not be negative", o.MaxConnectionAge)
	}
	if o.AdvertiseAddress != "" {
		if _, _, err := net.SplitHostPort(o.AdvertiseAddress); err != nil || len(o.AdvertiseAddress) > maxAdvertiseAddress {
			return fmt.Errorf("--advertise-address %q: want host:port of at most %d bytes, such as 10.0.3.7:7443", o.AdvertiseAddress, maxAdvertiseAddress)
		}
	}
	return nil
}

// maxAdvertiseAddress bounds --advertise-address, which every response
// carries: a DNS name and a port.
const maxAdvertiseAddress = 256

// advertised is the node every response names: the configured address, or
// the one lis serves.
// An unspecified host (--listen :7443) is no address a client can reach:
// the node is then empty, and a balancing client cannot route a job's
// calls back, which Start warns of.
func advertised(o Options, lis net.Listener) string {
	if o.AdvertiseAddress != "" {
		return o.AdvertiseAddress
	}
	switch a := lis.Addr().(type) {
	case *net.UnixAddr:
		return "unix://" + a.Name
	case *net.TCPAddr:
		if a.IP.IsUnspecified() {
			return ""
		}
	}
	return lis.Addr().String()
}

// Server is a running airlockd. Shutdown stops it; calls after the first
// do nothing, so a caller's deferred Shutdown and its explicit one agree.
type Server struct {
	o        Options
	log      *slog.Logger
	lis      net.Listener
	health   net.Listener
	metrics  net.Listener
	pprof    net.Listener
	address  string
	broker   *broker.Server
	authn    *auth.Authenticator
	grpc     *grpc.Server
	m        *metrics.Metrics
	tokens   atomic.Pointer[[]auth.Token]
	profiles *policy.Set
	served   chan error
	shutdown sync.Once
	// closers undo Start, last first, at Shutdown or when Start fails.
	closers []func()
}

// Start brings airlockd up and serves. The order is the order of checks a
// careful operator wants: tokens and policies first (cheap, and most likely
// wrong), containerd last. Whatever Start started before an error is
// stopped again before it returns. ctx bounds start-up only.
func Start(ctx context.Context, o Options) (_ *Server, retErr error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{o: o, log: log, served: make(chan error, 1)}
	defer func() {
		if retErr != nil {
			s.close()
		}
	}()
	tokens, err := s.loadTokens()
	if err != nil {
		return nil, err
	}
	s.tokens.Store(&tokens)
	var pfs fs.FS = policies.FS
	if o.PolicyDir != "" {
		pfs = os.DirFS(o.PolicyDir)
	}
	profiles, err := policy.Load(pfs, policy.WithDevMode(o.Dev), policy.WithSchemaCheck(result.CheckSchema))
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	s.profiles = profiles
	if err := checkModelSecrets(profiles); err != nil {
		return nil, err
	}
	if err := checkRuntimes(profiles, log); err != nil {
		return nil, err
	}
	lis, serverOpts, err := listen.Open(listen.Config{
		Socket: client.Socket(o.Socket), Addr: o.Listen, AllowRemote: o.AllowRemote,
		TLSCert: o.TLSCert, TLSKey: o.TLSKey, TLSClientCA: o.TLSClientCA,
	})
	if err != nil {
		return nil, err
	}
	s.lis = lis
	s.push(func() { lis.Close() })
	if o.HealthListen != "" {
		// Opened with the API's listener, so a taken port stops start-up
		// before containerd does; served once the broker is.
		hl, err := net.Listen("tcp", o.HealthListen)
		if err != nil {
			return nil, fmt.Errorf("--health-listen: %w", err)
		}
		s.health = hl
		s.push(func() { hl.Close() })
	}
	if o.PprofListen != "" {
		// Before containerd and the image import, so start-up can be
		// profiled too.
		pl, err := listenPprof(o.PprofListen)
		if err != nil {
			return nil, err
		}
		s.pprof = pl
		s.push(servePprof(pl, log))
		log.Info("pprof serving", "addr", pl.Addr().String())
	}

	agentBin := o.AgentBinary
	if agentBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		agentBin = filepath.Join(filepath.Dir(exe), "airlock-agent")
	}
	if err := footprint.MkdirTraversable(o.StateDir); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	unlock, err := lockStateDir(o.StateDir)
	if err != nil {
		return nil, err
	}
	s.push(unlock)
	if o.MetricsListen != "" {
		// Before containerd, so that a taken port stops start-up early;
		// after the lock, so that a second airlockd on this state dir is
		// told so rather than about the port. Served once the metrics
		// exist.
		ml, err := openMetrics(&o)
		if err != nil {
			return nil, err
		}
		s.metrics = ml
		s.push(func() { ml.Close() })
	}
	for _, p := range profiles.All() {
		if p.ReachesAsNobody() {
			if err := footprint.CheckTraversable(o.StateDir); err != nil {
				return nil, fmt.Errorf("profile %s: %w", p.Name, err)
			}
			break
		}
	}
	s.address = o.ContainerdAddress
	if s.address == "" {
		// Before containerd starts, so that it and the shims are born in
		// the child cgroup, and the jobs' cgroups can have their limits.
		cg, err := cgroupv2.Delegate()
		if err != nil {
			return nil, err
		}
		log.Info("cgroups", "v2", cg.Outcome.String(), "moved", cg.Moved, "enabled", cg.Enabled)
		d, err := embedded.Start(ctx, filepath.Join(o.StateDir, "containerd"))
		if err != nil {
			return nil, fmt.Errorf("embedded containerd: %w", err)
		}
		s.push(func() {
			if err := d.Stop(context.Background()); err != nil {
				log.Warn("stop containerd", "err", err)
			}
		})
		s.address = d.Address()
		log.Info("embedded containerd started", "address", s.address)
	}
	if o.UpstreamCA != "" {
		tc, err := upstreamTLS(o.UpstreamCA)
		if err != nil {
			return nil, err
		}
		o.Egress.ServiceTLS = tc
	}
	specs, err := sandbox.ImagesFor(profiles.All(), agentBin, o.Busybox)
	if err != nil {
		return nil, err
	}
	// Another agent binary is told its tasks (--agent-tasks), and may not
	// know the start line; neither may an extra image's entrypoint.
	for i := range specs {
		specs[i].WaitsForStart = len(o.AgentTasks) == 0
	}
	runner, err := sandbox.New(ctx, sandbox.Config{
		Address:     s.address,
		StateDir:    o.StateDir,
		Images:      append(specs, o.ExtraImages...),
		Logger:      log,
		Egress:      o.Egress,
		VethPrefix:  o.EgressPool,
		ProxyPort:   uint16(o.ProxyPort),
		AgentImages: sandbox.AgentImagesOf(profiles.All()),
	})
	if err != nil {
		return nil, err
	}
	s.push(func() {
		if err := runner.Close(); err != nil {
			log.Warn("close runner", "err", err)
		}
	})
	for _, name := range slices.Sorted(maps.Keys(o.Pools)) {
		p, err := profiles.Get(name)
		if err != nil {
			return nil, fmt.Errorf("--pool %s: %w", name, err)
		}
		if err := runner.StartPool(p, sandbox.PoolConfig{Size: o.Pools[name], MaxIdle: o.PoolIdle, MinAvailable: o.PoolMinAvailable}); err != nil {
			return nil, err
		}
		log.Info("warm pool started", "profile", name, "size", o.Pools[name], "idle", o.PoolIdle)
	}

	s.m = metrics.New()
	s.m.Registry.MustRegister(runner.Collectors()...)
	if ml := s.metrics; ml != nil {
		go func() {
			if err := s.m.Serve(ml); err != nil {
				log.Error("metrics listener", "err", err)
			}
		}()
		log.Info("metrics serving", "addr", ml.Addr().String())
	}
	auditPath := o.AuditLog
	if auditPath == "" {
		auditPath = filepath.Join(o.StateDir, "audit.jsonl")
	}
	auditLog, err := audit.Open(auditPath)
	if err != nil {
		return nil, err
	}
	s.push(func() { auditLog.Close() })
	node := advertised(o, lis)
	if node == "" {
		log.Warn("--listen names no host a client can reach and --advertise-address is not set: responses name no node, so clients balancing over several airlockd cannot send GetJob, Cancel and Approve back to this one", "listen", lis.Addr().String())
	}
	// Uploads are spooled here, root's alone; one a crashed airlockd was
	// receiving is gone with it.
	spool := filepath.Join(o.StateDir, "uploads")
	if err := os.RemoveAll(spool); err != nil {
		return nil, err
	}
	if err := os.Mkdir(spool, 0o700); err != nil {
		return nil, err
	}
	var jobs job.Runner = runner
	if o.WrapRunner != nil {
		jobs = o.WrapRunner(runner)
	}
	s.broker, err = broker.New(broker.Config{
		Runner: jobs, Profiles: profiles, Logger: log, Audit: auditLog, Metrics: s.m,
		MaxJobs: o.MaxConcurrent, MaxQueue: o.MaxQueue, MaxPerOwner: o.MaxPerOwner, Anomalies: broker.DefaultAnomalies,
		Retention: o.JobRetention, RetainJobs: o.RetainJobs,
		ApprovalTimeout: o.ApprovalTimeout, DefaultProfile: o.DefaultProfile, ExplainSpec: runner.ExplainJSON, ResolveSecret: egress.ResolveSecret,
		Secrets: func() [][]byte { return knownSecrets(*s.tokens.Load(), profiles) },
		Tasks:   append(agentTasks(o.AgentTasks), o.ExtraTasks...),
		Node:    node,
		Images:  runner, ImageSpoolDir: spool, MaxImageBytes: o.MaxImageBytes,
	})
	if err != nil {
		return nil, err
	}
	if s.authn, err = s.broker.Authenticator(tokens); err != nil {
		return nil, err
	}
	if o.MaxConnectionAge > 0 {
		// No grace: a long job's call is never cut for its connection's age.
		serverOpts = append(serverOpts, grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: o.MaxConnectionAge}))
	}
	s.grpc = broker.NewGRPCServerAuth(s.broker, s.authn, serverOpts...)
	if o.Reflection {
		// Reflection lists the API to anyone holding a token; it is off
		// unless asked for, for grpcurl.
		reflection.Register(s.grpc)
	}
	go func() { s.served <- s.grpc.Serve(lis) }()
	if s.health != nil {
		// It answers until Shutdown has drained the broker, so that a
		// probe sees the broker's own status rather than a refused
		// connection.
		hg := broker.NewHealthGRPCServer(s.broker)
		go hg.Serve(s.health) // its error is the listener's closing
		s.push(hg.Stop)
		log.Info("health serving", "addr", s.health.Addr().String())
	}
	s.m.Up.Set(1)
	log.Info("airlockd serving", "addr", lis.Addr().String(), "profiles", profiles.Names())
	return s, nil
}

// loadTokens reads the configured token file or files.
func (s *Server) loadTokens() ([]auth.Token, error) {
	if s.o.TokensFile != "" {
		return auth.LoadTokens(s.o.TokensFile)
	}
	tok, err := auth.LoadToken(client.TokenFile(s.o.TokenFile))
	if err != nil {
		return nil, err
	}
	return []auth.Token{{Name: auth.TokenCaller, Scopes: auth.AllScopes, Secret: tok}}, nil
}

// ReloadTokens rereads the token files: rotation without a restart. A bad
// new set keeps the old one, so a typo never locks everyone out.
func (s *Server) ReloadTokens() error {
	toks, err := s.loadTokens()
	if err == nil {
		err = s.authn.Reload(toks)
	}
	if err != nil {
		s.log.Error("token reload failed; keeping the current tokens", "err", err)
		return err
	}
	s.tokens.Store(&toks)
	s.log.Info("tokens reloaded", "count", len(toks))
	return nil
}

// Addr is where the gRPC API listens.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// HealthAddr is the probes' health listener's address, nil when none is
// served.
func (s *Server) HealthAddr() net.Addr {
	if s.health == nil {
		return nil
	}
	return s.health.Addr()
}

// MetricsAddr is the metrics listener's address, nil when none is served.
func (s *Server) MetricsAddr() net.Addr {
	if s.metrics == nil {
		return nil
	}
	return s.metrics.Addr()
}

// Options are the options the server was started with.
func (s *Server) Options() Options { return s.o }

// ContainerdAddress is the containerd socket the sandboxes run on.
func (s *Server) ContainerdAddress() string { return s.address }

// Profiles are the loaded profiles.
func (s *Server) Profiles() *policy.Set { return s.profiles }

// Serving ends with the gRPC server's error if it stops serving on its own.
func (s *Server) Serving() <-chan error { return s.served }

// Shutdown stops taking jobs, lets running ones finish within DrainGrace
// (then cancels them), waits for their sandboxes to be torn down, and stops
// everything Start started, last first. ctx bounds the wait for the gRPC
// server's last calls to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Do(func() {
		s.log.Info("draining", "grace", s.o.DrainGrace)
		// Drain returns only once the running jobs' sandboxes are torn down,
		// before the runner and containerd stop.
		grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.DrainGrace)
		s.broker.Drain(grace)
		cancel()
		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		t := time.NewTimer(gracefulStopTimeout)
		defer t.Stop()
		select {
		case <-stopped:
		case <-t.C:
			s.grpc.Stop()
		case <-ctx.Done():
			s.grpc.Stop()
		}
		s.m.Up.Set(0)
		s.close()
		s.log.Info("stopped")
	})
	return nil
}

// gracefulStopTimeout bounds the wait for calls still open after the drain.
const gracefulStopTimeout = 5 * time.Second

// push adds a step for close.
func (s *Server) push(f func()) { s.closers = append(s.closers, f) }

// close runs every closer once, last first.
func (s *Server) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// upstreamTLS trusts the CAs in file besides the system's. A file that
// cannot be read or holds no certificate stops start-up: the operator
// meant to trust something, and nothing would be.
func upstreamTLS(file string) (*tls.Config, error) {
	pool, err := egress.LoadCAFile(file)
	if err != nil {
		return nil, fmt.Errorf("--upstream-ca: %w", err)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// checkModelSecrets reads the secret of every model service a profile
// names, so that a missing key stops airlockd at start rather than
// failing the first agent job. Other services are checked per job, as
// ever; the secret is read again for each job, so a rotated file works.
func checkModelSecrets(profiles *policy.Set) error {
	for _, p := range profiles.All() {
		if p.Model == nil {
			continue
		}
		svc := p.Network.Services[p.Model.Service]
		if svc.Inject.SecretRef == "" {
			continue
		}
		if _, err := egress.ResolveSecret(svc.Inject.SecretRef); err != nil {
			return fmt.Errorf("profile %s: model service %s: %w", p.Name, p.Model.Service, err)
		}
	}
	return nil
}

// checkRuntimes refuses to start when a profile names an OCI runtime this
// host lacks, saying what to install: its jobs would otherwise fail one by
// one, and a weaker runtime must never stand in.
func checkRuntimes(profiles *policy.Set, log *slog.Logger) error {
	for _, p := range profiles.All() {
		if err := sandbox.CheckRuntime(p, log); err != nil {
			return fmt.Errorf("profile %s: isolation.runtime: %w", p.Name, err)
		}
	}
	return nil
}

// knownSecrets is every secret airlockd holds: its tokens and every service
// credential a profile names. Results and logs are redacted of all of them,
// not only the job's own.
func knownSecrets(tokens []auth.Token, profiles *policy.Set) [][]byte {
	var out [][]byte
	for _, t := range tokens {
		out = append(out, t.Secret)
	}
	for _, p := range profiles.All() {
		for _, svc := range p.Network.Services {
			if v, err := egress.ResolveSecret(svc.Inject.SecretRef); err == nil {
				out = append(out, v)
			}
		}
	}
	return out
}

// agentTasks are the tasks the reader and tools images serve: the
// reference agent's, or those named for another agent binary.
func agentTasks(names []string) []job.TaskSpec {
	if len(names) == 0 {
		return job.ReferenceTasks()
	}
	specs := make([]job.TaskSpec, 0, len(names))
	for _, n := range names {
		specs = append(specs, job.TaskSpec{Name: n, Doc: "a task of the configured agent binary", AnyParams: true})
	}
	return specs
}

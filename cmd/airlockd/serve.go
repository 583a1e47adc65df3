package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/reflection"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/audit"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/listen"
	"github.com/airlock/airlock/broker/metrics"
	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/egress"
	"github.com/airlock/airlock/sandbox/embedded"
)

type options struct {
	socket, listen, tokenFile, stateDir  string
	containerdAddress, agentBinary       string
	busybox                              string
	policyDir, defaultProfile, auditLog  string
	metricsListen, pprofListen           string
	tlsCert, tlsKey, tlsClientCA         string
	allowRemote                          bool
	tokensFile                           string
	egressPool                           netip.Prefix
	proxyPort                            uint
	dev, debug                           bool
	maxConcurrent, maxQueue, maxPerOwner int
	drainGrace, approvalTimeout          time.Duration
	jobRetention                         time.Duration
	retainJobs                           int
	reflection                           bool
	// pools maps a profile name to its warm pool size.
	pools            map[string]int
	poolIdle         time.Duration
	poolMinAvailable int64
}

// run wires the broker to a sandbox runner and serves until ctx ends. The
// order of start-up is the order of checks a careful operator wants: token
// and policies first (cheap, and most likely wrong), containerd last.
func run(ctx context.Context, o options, log *slog.Logger) error {
	loadTokens := func() ([]auth.Token, error) {
		if o.tokensFile != "" {
			return auth.LoadTokens(o.tokensFile)
		}
		tok, err := auth.LoadToken(client.TokenFile(o.tokenFile))
		if err != nil {
			return nil, err
		}
		return []auth.Token{{Name: auth.TokenCaller, Scopes: auth.AllScopes, Secret: tok}}, nil
	}
	tokens, err := loadTokens()
	if err != nil {
		return err
	}
	var current atomic.Pointer[[]auth.Token]
	current.Store(&tokens)
	var pfs fs.FS = policies.FS
	if o.policyDir != "" {
		pfs = os.DirFS(o.policyDir)
	}
	profiles, err := policy.Load(pfs, policy.WithDevMode(o.dev), policy.WithSchemaCheck(result.CheckSchema))
	if err != nil {
		return fmt.Errorf("policies: %w", err)
	}
	lis, serverOpts, err := listen.Open(listen.Config{
		Socket: client.Socket(o.socket), Addr: o.listen, AllowRemote: o.allowRemote,
		TLSCert: o.tlsCert, TLSKey: o.tlsKey, TLSClientCA: o.tlsClientCA,
	})
	if err != nil {
		return err
	}
	defer lis.Close()
	if o.pprofListen != "" {
		// Before containerd and the image import, so start-up can be
		// profiled too.
		pl, err := listenPprof(o.pprofListen)
		if err != nil {
			return err
		}
		defer servePprof(pl, log)()
		log.Info("pprof serving", "addr", pl.Addr().String())
	}

	agentBin := o.agentBinary
	if agentBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		agentBin = filepath.Join(filepath.Dir(exe), "airlock-agent")
	}
	if err := sandbox.MkdirTraversable(o.stateDir); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	unlock, err := lockStateDir(o.stateDir)
	if err != nil {
		return err
	}
	defer unlock()
	for _, p := range profiles.All() {
		if p.Isolation.UserNamespace {
			if err := sandbox.CheckTraversable(o.stateDir); err != nil {
				return fmt.Errorf("profile %s: %w", p.Name, err)
			}
			break
		}
	}
	address := o.containerdAddress
	if address == "" {
		d, err := embedded.Start(ctx, filepath.Join(o.stateDir, "containerd"))
		if err != nil {
			return fmt.Errorf("embedded containerd: %w", err)
		}
		defer func() {
			if err := d.Stop(context.Background()); err != nil {
				log.Warn("stop containerd", "err", err)
			}
		}()
		address = d.Address()
		log.Info("embedded containerd started", "address", address)
	}
	specs, err := sandbox.ImagesFor(profiles.All(), agentBin, o.busybox)
	if err != nil {
		return err
	}
	runner, err := sandbox.New(ctx, sandbox.Config{
		Address:    address,
		StateDir:   o.stateDir,
		Images:     specs,
		Logger:     log,
		VethPrefix: o.egressPool,
		ProxyPort:  uint16(o.proxyPort),
	})
	if err != nil {
		return err
	}
	defer runner.Close()
	for _, name := range slices.Sorted(maps.Keys(o.pools)) {
		p, err := profiles.Get(name)
		if err != nil {
			return fmt.Errorf("--pool %s: %w", name, err)
		}
		if err := runner.StartPool(p, sandbox.PoolConfig{Size: o.pools[name], MaxIdle: o.poolIdle, MinAvailable: o.poolMinAvailable}); err != nil {
			return err
		}
		log.Info("warm pool started", "profile", name, "size", o.pools[name], "idle", o.poolIdle)
	}

	m := metrics.New()
	m.Registry.MustRegister(runner.Collectors()...)
	if o.metricsListen != "" {
		ml, err := metrics.Listen(o.metricsListen)
		if err != nil {
			return err
		}
		defer ml.Close()
		go func() {
			if err := m.Serve(ml); err != nil {
				log.Error("metrics listener", "err", err)
			}
		}()
		log.Info("metrics serving", "addr", ml.Addr().String())
	}
	auditPath := o.auditLog
	if auditPath == "" {
		auditPath = filepath.Join(o.stateDir, "audit.jsonl")
	}
	auditLog, err := audit.Open(auditPath)
	if err != nil {
		return err
	}
	defer auditLog.Close()
	srv, err := broker.New(broker.Config{
		Runner: runner, Profiles: profiles, Logger: log, Audit: auditLog, Metrics: m,
		MaxJobs: o.maxConcurrent, MaxQueue: o.maxQueue, MaxPerOwner: o.maxPerOwner, Anomalies: broker.DefaultAnomalies,
		Retention: o.jobRetention, RetainJobs: o.retainJobs,
		ApprovalTimeout: o.approvalTimeout, DefaultProfile: o.defaultProfile, ExplainSpec: sandbox.ExplainJSON, ResolveSecret: egress.ResolveSecret,
		Secrets: func() [][]byte { return knownSecrets(*current.Load(), profiles) },
	})
	if err != nil {
		return err
	}
	authn, err := srv.Authenticator(tokens)
	if err != nil {
		return err
	}
	g := broker.NewGRPCServerAuth(srv, authn, serverOpts...)
	if o.reflection {
		// Reflection lists the API to anyone holding a token; it is off
		// unless asked for, for grpcurl.
		reflection.Register(g)
	}
	// SIGHUP rereads the token files: rotation without a restart. A bad
	// new set keeps the old one, so a typo never locks everyone out.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			toks, err := loadTokens()
			if err == nil {
				err = authn.Reload(toks)
			}
			if err == nil {
				current.Store(&toks)
			}
			if err != nil {
				log.Error("token reload failed; keeping the current tokens", "err", err)
				continue
			}
			log.Info("tokens reloaded", "count", len(toks))
		}
	}()
	errCh := make(chan error, 1)
	go func() { errCh <- g.Serve(lis) }()
	m.Up.Set(1)
	defer m.Up.Set(0)
	log.Info("airlockd serving", "addr", lis.Addr().String(), "profiles", profiles.Names())

	select {
	case err := <-errCh:
		return err
	case <-ctx.Done():
	}
	log.Info("draining", "grace", o.drainGrace)
	// No new jobs; running ones get the grace period, then are cancelled,
	// and Drain returns only once their sandboxes are torn down, before
	// the runner and containerd stop (the deferred calls).
	grace, cancel := context.WithTimeout(context.Background(), o.drainGrace)
	srv.Drain(grace)
	cancel()
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		g.Stop()
	}
	log.Info("stopped")
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

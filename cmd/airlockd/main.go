// Command airlockd is the Airlock broker daemon: it serves the gRPC Spawn
// API and runs each job in a containerd sandbox.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/cmd/airlockd/server"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/netns"
)

func main() {
	var o server.Options
	flag.StringVar(&o.Socket, "socket", "", "unix socket to serve on (default $AIRLOCK_SOCKET or "+client.DefaultSocket+")")
	flag.StringVar(&o.Listen, "listen", "", "serve TCP on host:port instead of the unix socket; non-loopback needs --allow-remote and TLS")
	flag.BoolVar(&o.AllowRemote, "allow-remote", false, "allow --listen on a non-loopback address (requires --tls-cert and --tls-key)")
	flag.StringVar(&o.TLSCert, "tls-cert", "", "TLS certificate for --listen")
	flag.StringVar(&o.TLSKey, "tls-key", "", "TLS key for --listen")
	flag.StringVar(&o.TLSClientCA, "tls-client-ca", "", "require client certificates signed by this CA (mTLS)")
	flag.StringVar(&o.TokenFile, "token-file", "", "file holding the bearer token (default $AIRLOCK_TOKEN_FILE)")
	flag.StringVar(&o.TokensFile, "tokens", "", "YAML file of named tokens with scopes and secretRefs (instead of --token-file); SIGHUP rereads it")
	flag.StringVar(&o.StateDir, "state-dir", "/var/lib/airlock", "state directory: job dirs and the embedded containerd")
	flag.StringVar(&o.ContainerdAddress, "containerd-address", "", "use this containerd socket instead of starting a private one")
	flag.StringVar(&o.AgentBinary, "agent-binary", "", "static airlock-agent binary for the reader image (default: next to airlockd)")
	flag.Func("agent-tasks", "for an --agent-binary other than airlock-agent: the tasks it serves, comma-separated, each taking any params (default: airlock-agent's tasks, their params checked at the door)", func(v string) error {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				return errors.New("want task names, comma-separated")
			}
			o.AgentTasks = append(o.AgentTasks, name)
		}
		return nil
	})
	flag.StringVar(&o.Busybox, "busybox", "/bin/busybox", "static busybox for the tools image (Debian: busybox-static)")
	flag.StringVar(&o.PolicyDir, "policy-dir", "", "directory of policy profiles (default: the shipped ones)")
	flag.StringVar(&o.DefaultProfile, "default-profile", "secureclaw", "profile for requests that name none")
	flag.StringVar(&o.AuditLog, "audit-log", "", "audit log, one JSON line per job (default STATE_DIR/audit.jsonl)")
	flag.StringVar(&o.MetricsListen, "metrics-listen", "", "serve Prometheus metrics on this loopback host:port (off by default)")
	flag.StringVar(&o.PprofListen, "pprof", "", "serve net/http/pprof under /debug/pprof/ on this loopback host:port (off by default)")
	flag.BoolVar(&o.Dev, "dev", false, "development mode: allows exec.security full")
	flag.IntVar(&o.MaxConcurrent, "max-concurrent", 8, "sandboxes that may run at once")
	flag.IntVar(&o.MaxQueue, "max-queue", 16, "spawns that may wait for a sandbox; more get ResourceExhausted")
	flag.IntVar(&o.MaxPerOwner, "max-per-owner", 0, "concurrent jobs per token name (0: no quota)")
	flag.DurationVar(&o.JobRetention, "job-retention", time.Hour, "how long a finished job's response is kept for GetJob and idempotent retries")
	flag.IntVar(&o.RetainJobs, "retain-jobs", broker.DefaultRetainJobs, "most finished jobs kept, the oldest dropped first; bounds the broker's memory")
	flag.DurationVar(&o.ApprovalTimeout, "approval-timeout", broker.DefaultApprovalTimeout, "how long a command that needs approval waits for Approve before it is denied")
	flag.DurationVar(&o.DrainGrace, "drain-grace", 30*time.Second, "on SIGTERM, how long running jobs may finish before they are cancelled")
	flag.StringVar(&o.UpstreamCA, "upstream-ca", "", "PEM file of CAs the egress proxy trusts for https service upstreams, besides the system's (a private model gateway)")
	flag.BoolVar(&o.Reflection, "reflection", false, "serve gRPC reflection (for grpcurl); needs a token like every call")
	var debug bool
	flag.BoolVar(&debug, "debug", false, "debug logging")
	flag.Func("egress-pool", "address pool for job veths, one /30 per job (default "+netns.DefaultPrefix.String()+"); must overlap nothing on the host", func(v string) error {
		p, err := netip.ParsePrefix(v)
		o.EgressPool = p
		return err
	})
	flag.Func("pool", "keep warm sandboxes for a profile: NAME=SIZE, repeatable or comma-separated (jobs under that profile, without overrides, skip the sandbox's creation)", func(v string) error {
		return policy.ParsePools(v, &o.Pools)
	})
	flag.DurationVar(&o.PoolIdle, "pool-idle", 10*time.Minute, "drain a warm pool nobody claimed from for this long, until its next claim (0: never)")
	flag.Func("pool-min-available", "drain warm pools while the host's MemAvailable is under this (default 512Mi)", func(v string) error {
		n, err := policy.ParseBytes(v)
		if err == nil && n <= 0 {
			err = errors.New("want a positive size such as 512Mi")
		}
		o.PoolMinAvailable = n
		return err
	})
	flag.UintVar(&o.ProxyPort, "proxy-port", sandbox.DefaultProxyPort, "egress proxy port on each job's gateway")
	flag.Parse()
	if err := o.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "airlockd:", err)
		os.Exit(2)
	}
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	o.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "airlockd:", err)
		os.Exit(1)
	}
}

// run starts airlockd and serves until SIGINT or SIGTERM, then drains and
// stops it. SIGHUP rereads the token files.
func run(o server.Options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	s, err := server.Start(ctx, o)
	if err != nil {
		return err
	}
	for {
		select {
		case <-hup:
			_ = s.ReloadTokens() // logged; the old tokens stay
		case err := <-s.Serving():
			_ = s.Shutdown(context.Background())
			return err
		case <-ctx.Done():
			return s.Shutdown(context.Background())
		}
	}
}

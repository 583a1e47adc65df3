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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/netns"
)

func main() {
	var o options
	flag.StringVar(&o.socket, "socket", "", "unix socket to serve on (default $AIRLOCK_SOCKET or "+client.DefaultSocket+")")
	flag.StringVar(&o.listen, "listen", "", "serve TCP on host:port instead of the unix socket; non-loopback needs --allow-remote and TLS")
	flag.BoolVar(&o.allowRemote, "allow-remote", false, "allow --listen on a non-loopback address (requires --tls-cert and --tls-key)")
	flag.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate for --listen")
	flag.StringVar(&o.tlsKey, "tls-key", "", "TLS key for --listen")
	flag.StringVar(&o.tlsClientCA, "tls-client-ca", "", "require client certificates signed by this CA (mTLS)")
	flag.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token (default $AIRLOCK_TOKEN_FILE)")
	flag.StringVar(&o.tokensFile, "tokens", "", "YAML file of named tokens with scopes and secretRefs (instead of --token-file); SIGHUP rereads it")
	flag.StringVar(&o.stateDir, "state-dir", "/var/lib/airlock", "state directory: job dirs and the embedded containerd")
	flag.StringVar(&o.containerdAddress, "containerd-address", "", "use this containerd socket instead of starting a private one")
	flag.StringVar(&o.agentBinary, "agent-binary", "", "static airlock-agent binary for the reader image (default: next to airlockd)")
	flag.StringVar(&o.busybox, "busybox", "/bin/busybox", "static busybox for the tools image (Debian: busybox-static)")
	flag.StringVar(&o.policyDir, "policy-dir", "", "directory of policy profiles (default: the shipped ones)")
	flag.StringVar(&o.defaultProfile, "default-profile", "secureclaw", "profile for requests that name none")
	flag.StringVar(&o.auditLog, "audit-log", "", "audit log, one JSON line per job (default STATE_DIR/audit.jsonl)")
	flag.StringVar(&o.metricsListen, "metrics-listen", "", "serve Prometheus metrics on this loopback host:port (off by default)")
	flag.StringVar(&o.pprofListen, "pprof", "", "serve net/http/pprof under /debug/pprof/ on this loopback host:port (off by default)")
	flag.BoolVar(&o.dev, "dev", false, "development mode: allows exec.security full")
	flag.IntVar(&o.maxConcurrent, "max-concurrent", 8, "sandboxes that may run at once")
	flag.IntVar(&o.maxQueue, "max-queue", 16, "spawns that may wait for a sandbox; more get ResourceExhausted")
	flag.IntVar(&o.maxPerOwner, "max-per-owner", 0, "concurrent jobs per token name (0: no quota)")
	flag.DurationVar(&o.jobRetention, "job-retention", time.Hour, "how long a finished job's response is kept for GetJob and idempotent retries")
	flag.IntVar(&o.retainJobs, "retain-jobs", broker.DefaultRetainJobs, "most finished jobs kept, the oldest dropped first; bounds the broker's memory")
	flag.DurationVar(&o.approvalTimeout, "approval-timeout", broker.DefaultApprovalTimeout, "how long a command that needs approval waits for Approve before it is denied")
	flag.DurationVar(&o.drainGrace, "drain-grace", 30*time.Second, "on SIGTERM, how long running jobs may finish before they are cancelled")
	flag.BoolVar(&o.reflection, "reflection", false, "serve gRPC reflection (for grpcurl); needs a token like every call")
	flag.BoolVar(&o.debug, "debug", false, "debug logging")
	flag.Func("egress-pool", "address pool for job veths, one /30 per job (default "+netns.DefaultPrefix.String()+"); must overlap nothing on the host", func(v string) error {
		p, err := netip.ParsePrefix(v)
		o.egressPool = p
		return err
	})
	flag.Func("pool", "keep warm sandboxes for a profile: NAME=SIZE, repeatable or comma-separated (jobs under that profile, without overrides, skip the sandbox's creation)", func(v string) error {
		return parsePools(v, &o.pools)
	})
	flag.DurationVar(&o.poolIdle, "pool-idle", 10*time.Minute, "drain a warm pool nobody claimed from for this long, until its next claim (0: never)")
	flag.Func("pool-min-available", "drain warm pools while the host's MemAvailable is under this (default 512Mi)", func(v string) error {
		n, err := policy.ParseBytes(v)
		if err == nil && n <= 0 {
			err = errors.New("want a positive size such as 512Mi")
		}
		o.poolMinAvailable = n
		return err
	})
	flag.UintVar(&o.proxyPort, "proxy-port", sandbox.DefaultProxyPort, "egress proxy port on each job's gateway")
	flag.Parse()
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "airlockd:", err)
		os.Exit(2)
	}

	level := slog.LevelInfo
	if o.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		fmt.Fprintln(os.Stderr, "airlockd:", err)
		os.Exit(1)
	}
}

// validate refuses flag values that parse but mean nothing, before any
// work starts.
func (o *options) validate() error {
	if o.proxyPort == 0 || o.proxyPort > 65535 {
		return errors.New("--proxy-port must be 1-65535")
	}
	// The broker would quietly take a zero for its default; an operator
	// who typed one meant something else.
	if o.jobRetention <= 0 || o.retainJobs <= 0 {
		return fmt.Errorf("--job-retention %v and --retain-jobs %d: both must be positive", o.jobRetention, o.retainJobs)
	}
	if o.approvalTimeout <= 0 {
		return fmt.Errorf("--approval-timeout %v: must be positive, such as %v", o.approvalTimeout, broker.DefaultApprovalTimeout)
	}
	return nil
}

// parsePools adds NAME=SIZE entries, comma-separated, to pools.
func parsePools(v string, pools *map[string]int) error {
	if *pools == nil {
		*pools = map[string]int{}
	}
	for _, e := range strings.Split(v, ",") {
		name, size, ok := strings.Cut(strings.TrimSpace(e), "=")
		n, err := strconv.Atoi(size)
		if !ok || name == "" || err != nil || n < 1 || n > 64 {
			return fmt.Errorf("%q: want PROFILE=SIZE with SIZE from 1 to 64, such as secureclaw=2", e)
		}
		if _, dup := (*pools)[name]; dup {
			return fmt.Errorf("%q: profile %s named twice", e, name)
		}
		(*pools)[name] = n
	}
	return nil
}

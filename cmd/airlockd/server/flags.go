package server

import (
	"errors"
	"flag"
	"net/netip"
	"strings"
	"time"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/netns"
)

// FlagSet is airlockd's command line, bound to o, with every default
// filled in. debug reports --debug, the log level cmd/airlockd builds
// o.Logger with. It is here, not in cmd/airlockd, so that what passes
// flags to airlockd (deploy/kubernetes's manifests) is checked against the
// real set.
func FlagSet(name string, h flag.ErrorHandling, o *Options) (fs *flag.FlagSet, debug *bool) {
	fs = flag.NewFlagSet(name, h)
	fs.StringVar(&o.Socket, "socket", "", "unix socket to serve on (default $AIRLOCK_SOCKET or "+client.DefaultSocket+")")
	fs.StringVar(&o.Listen, "listen", "", "serve TCP on host:port instead of the unix socket; non-loopback needs --allow-remote and TLS")
	fs.StringVar(&o.AdvertiseAddress, "advertise-address", "", "host:port clients reach this airlockd at when they balance over several (Kubernetes: $(POD_IP):PORT); every response names it so a job's GetJob, Cancel and Approve come back here (default: the --listen address)")
	fs.DurationVar(&o.MaxConnectionAge, "max-connection-age", 0, "ask clients to reconnect once a connection is this old (calls in flight finish), so that clients balancing over a DNS name find new nodes (Kubernetes: 5m; 0: never)")
	fs.BoolVar(&o.AllowRemote, "allow-remote", false, "allow --listen on a non-loopback address (requires --tls-cert and --tls-key)")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "TLS certificate for --listen")
	fs.StringVar(&o.TLSKey, "tls-key", "", "TLS key for --listen")
	fs.StringVar(&o.TLSClientCA, "tls-client-ca", "", "require client certificates signed by this CA (mTLS)")
	fs.StringVar(&o.TokenFile, "token-file", "", "file holding the bearer token (default $AIRLOCK_TOKEN_FILE)")
	fs.StringVar(&o.TokensFile, "tokens", "", "YAML file of named tokens with scopes and secretRefs (instead of --token-file); SIGHUP rereads it")
	fs.StringVar(&o.StateDir, "state-dir", "/var/lib/airlock", "state directory: job dirs and the embedded containerd")
	fs.StringVar(&o.ContainerdAddress, "containerd-address", "", "use this containerd socket instead of starting a private one")
	fs.StringVar(&o.AgentBinary, "agent-binary", "", "static airlock-agent binary for the reader image (default: next to airlockd)")
	fs.Func("agent-tasks", "for an --agent-binary other than airlock-agent: the tasks it serves, comma-separated, each taking any params (default: airlock-agent's tasks, their params checked at the door)", func(v string) error {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				return errors.New("want task names, comma-separated")
			}
			o.AgentTasks = append(o.AgentTasks, name)
		}
		return nil
	})
	fs.StringVar(&o.Busybox, "busybox", "/bin/busybox", "static busybox for the tools image (Debian: busybox-static)")
	fs.StringVar(&o.PolicyDir, "policy-dir", "", "directory of policy profiles (default: the shipped ones)")
	fs.StringVar(&o.DefaultProfile, "default-profile", "secureclaw", "profile for requests that name none")
	fs.StringVar(&o.AuditLog, "audit-log", "", "audit log, one JSON line per job (default STATE_DIR/audit.jsonl)")
	fs.StringVar(&o.MetricsListen, "metrics-listen", "", "serve Prometheus metrics on this host:port (off by default); https with --tls-cert, and non-loopback needs --allow-remote and TLS, as --listen")
	fs.StringVar(&o.HealthListen, "health-listen", "", "serve only the gRPC health service (Check, Watch) on this host:port, plaintext and without a token, for Kubernetes gRPC probes (off by default)")
	fs.StringVar(&o.PprofListen, "pprof", "", "serve net/http/pprof under /debug/pprof/ on this loopback host:port (off by default)")
	fs.BoolVar(&o.Dev, "dev", false, "development mode: allows exec.security full")
	fs.IntVar(&o.MaxConcurrent, "max-concurrent", 8, "sandboxes that may run at once")
	fs.IntVar(&o.MaxQueue, "max-queue", 16, "spawns that may wait for a sandbox; more get ResourceExhausted")
	fs.IntVar(&o.MaxPerOwner, "max-per-owner", 0, "concurrent jobs per token name (0: no quota)")
	fs.DurationVar(&o.JobRetention, "job-retention", time.Hour, "how long a finished job's response is kept for GetJob and idempotent retries")
	fs.IntVar(&o.RetainJobs, "retain-jobs", broker.DefaultRetainJobs, "most finished jobs kept, the oldest dropped first; bounds the broker's memory")
	fs.DurationVar(&o.ApprovalTimeout, "approval-timeout", broker.DefaultApprovalTimeout, "how long a command that needs approval waits for Approve before it is denied")
	fs.DurationVar(&o.DrainGrace, "drain-grace", 30*time.Second, "on SIGTERM, how long running jobs may finish before they are cancelled")
	fs.StringVar(&o.UpstreamCA, "upstream-ca", "", "PEM file of CAs the egress proxy trusts for https service upstreams, besides the system's (a private model gateway)")
	fs.BoolVar(&o.Reflection, "reflection", false, "serve gRPC reflection (for grpcurl); needs a token like every call")
	debug = new(bool)
	fs.BoolVar(debug, "debug", false, "debug logging")
	fs.Func("egress-pool", "address pool for job veths, one /30 per job (default "+netns.DefaultPrefix.String()+"); must overlap nothing on the host", func(v string) error {
		p, err := netip.ParsePrefix(v)
		o.EgressPool = p
		return err
	})
	fs.Func("pool", "keep warm sandboxes for a profile: NAME=SIZE, repeatable or comma-separated (jobs under that profile, without overrides, skip the sandbox's creation)", func(v string) error {
		return policy.ParsePools(v, &o.Pools)
	})
	fs.DurationVar(&o.PoolIdle, "pool-idle", 10*time.Minute, "drain a warm pool nobody claimed from for this long, until its next claim (0: never)")
	sizeFlag(fs, &o.PoolMinAvailable, "pool-min-available", "drain warm pools while the host's MemAvailable is under this (default 512Mi)")
	o.MaxImageBytes = broker.DefaultMaxImageBytes
	sizeFlag(fs, &o.MaxImageBytes, "max-image-bytes", "largest agent image tarball `airlock image import` may upload (default 512Mi)")
	fs.UintVar(&o.ProxyPort, "proxy-port", sandbox.DefaultProxyPort, "egress proxy port on each job's gateway")
	return fs, debug
}

// sizeFlag defines a flag of a positive size such as 512Mi, stored in dst.
func sizeFlag(fs *flag.FlagSet, dst *int64, name, usage string) {
	fs.Func(name, usage, func(v string) error {
		n, err := policy.ParseBytes(v)
		if err == nil && n <= 0 {
			err = errors.New("want a positive size such as 512Mi")
		}
		*dst = n
		return err
	})
}

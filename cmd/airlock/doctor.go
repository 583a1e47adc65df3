package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/cmd/airlock/internal/doctor"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/netns"
)

const doctorUsage = `usage: airlock doctor [flags]

Checks the host and airlockd's configuration: kernel features, containerd
and runc, the state dir, the socket, the bind address, tokens, profiles,
the egress pool, and what a broker that no longer runs left behind.

Pass the flags airlockd runs with: doctor takes every one of them. A
broker's namespaces, veths, mounts and cgroups are told apart by the
state-dir lock each airlockd holds and the instance ID their names carry:
those of a running broker are its jobs', and never reported as left over.
Run as root to see every broker's. Exits non-zero if any check fails.

`

// ignoredFlag is an airlockd flag that no check depends on: doctor takes it
// so that airlockd's command line can be passed as it is.
const ignoredFlag = "airlockd's flag, accepted and not checked"

// doctorTimeout bounds the whole run; the checks read files and ask a few
// binaries for their version.
const doctorTimeout = 30 * time.Second

// doctorFlags is airlockd's flags, each into c when a check depends on it;
// socket and tokenFile are resolved against the environment by the caller.
func doctorFlags(c *doctor.Config) (fset *flag.FlagSet, socket, tokenFile *string, asJSON *bool) {
	fset = flag.NewFlagSet("doctor", flag.ExitOnError)
	fset.Usage = func() {
		fmt.Fprint(os.Stderr, doctorUsage)
		fset.PrintDefaults()
	}
	fset.StringVar(&c.StateDir, "state-dir", doctor.DefaultStateDir, "airlockd's state directory: its permissions, its lock, its mounts and instance")
	socket = fset.String("socket", "", "airlockd's unix socket (default $AIRLOCK_SOCKET or "+client.DefaultSocket+")")
	fset.StringVar(&c.Listen, "listen", "", "airlockd's --listen host:port, if it serves TCP")
	fset.BoolVar(&c.AllowRemote, "allow-remote", false, "airlockd runs with --allow-remote")
	fset.StringVar(&c.TLSCert, "tls-cert", "", "airlockd's --tls-cert")
	fset.StringVar(&c.TLSKey, "tls-key", "", "airlockd's --tls-key")
	fset.StringVar(&c.TLSClientCA, "tls-client-ca", "", "airlockd's --tls-client-ca")
	tokenFile = fset.String("token-file", "", "airlockd's bearer token file (default $AIRLOCK_TOKEN_FILE)")
	fset.StringVar(&c.TokensFile, "tokens", "", "airlockd's --tokens file of named token references")
	fset.StringVar(&c.WebhookTokenFile, "webhook-token-file", "", "not airlockd's: the agent side's webhook token file, to check it differs from the gateway token")
	fset.StringVar(&c.ContainerdAddress, "containerd-address", "", "airlockd's --containerd-address: checked to answer, instead of containerd on PATH")
	fset.StringVar(&c.AgentBinary, "agent-binary", "", "airlockd's --agent-binary (default: airlock-agent next to this command, or on PATH)")
	fset.StringVar(&c.Busybox, "busybox", doctor.DefaultBusybox, "airlockd's --busybox")
	fset.StringVar(&c.PolicyDir, "policy-dir", "", "airlockd's profile directory (default: the shipped profiles)")
	fset.StringVar(&c.DefaultProfile, "default-profile", "secureclaw", "airlockd's --default-profile")
	fset.StringVar(&c.MetricsListen, "metrics-listen", "", "airlockd's --metrics-listen: checked against its bind rule (loopback, or --allow-remote and TLS)")
	fset.StringVar(&c.PprofListen, "pprof", "", "airlockd's --pprof: checked to be loopback")
	fset.StringVar(&c.UpstreamCA, "upstream-ca", "", "airlockd's --upstream-ca: checked to hold CA certificates")
	fset.BoolVar(&c.Dev, "dev", false, "airlockd runs with --dev")
	fset.Func("egress-pool", "airlockd's --egress-pool: checked to overlap nothing on the host (default "+netns.DefaultPrefix.String()+")", func(v string) error {
		p, err := netip.ParsePrefix(v)
		c.EgressPool = p
		return err
	})
	fset.Func("pool", "airlockd's --pool NAME=SIZE, repeatable or comma-separated: each NAME checked to be a profile", func(v string) error {
		return policy.ParsePools(v, &c.Pools)
	})
	for _, name := range []string{"audit-log", "agent-tasks", "health-listen", "advertise-address"} {
		fset.String(name, "", ignoredFlag)
	}
	for _, name := range []string{"max-concurrent", "max-queue", "max-per-owner", "retain-jobs"} {
		fset.Int(name, 0, ignoredFlag)
	}
	for _, name := range []string{"job-retention", "approval-timeout", "drain-grace", "pool-idle", "max-connection-age"} {
		fset.Duration(name, 0, ignoredFlag)
	}
	for _, name := range []string{"reflection", "debug"} {
		fset.Bool(name, false, ignoredFlag)
	}
	fset.Uint("proxy-port", 0, ignoredFlag)
	// A size such as 512Mi, which no flag type parses.
	fset.Func("pool-min-available", ignoredFlag, func(string) error { return nil })
	fset.Func("max-image-bytes", ignoredFlag, func(string) error { return nil })
	asJSON = fset.Bool("json", false, "print the checks as JSON")
	return fset, socket, tokenFile, asJSON
}

// doctorCmd checks the host and an airlockd configuration; it needs no
// broker, and changes nothing.
func doctorCmd(args []string) error {
	var c doctor.Config
	fset, socket, tokenFile, asJSON := doctorFlags(&c)
	_ = fset.Parse(args)
	if fset.NArg() != 0 {
		fset.Usage()
		os.Exit(2)
	}
	c.Socket = client.Socket(*socket)
	c.TokenFile = client.TokenFile(*tokenFile)

	ctx, cancel := context.WithTimeout(context.Background(), doctorTimeout)
	defer cancel()
	checks := doctor.Run(ctx, c)
	write := doctor.WriteText
	if *asJSON {
		write = doctor.WriteJSON
	}
	if err := write(os.Stdout, checks); err != nil {
		return err
	}
	if n := doctor.Summary(checks); n > 0 {
		return fmt.Errorf("doctor: %d check(s) failed", n)
	}
	return nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/cmd/airlock/internal/doctor"
)

const doctorUsage = `usage: airlock doctor [flags]

Checks the host and airlockd's configuration: kernel features, containerd
and runc, the state dir, the socket, the bind address, tokens, profiles and
resources a crashed broker left behind. Pass the flags airlockd runs with.
Exits non-zero if any check fails.

`

// doctorTimeout bounds the whole run; the checks read files and ask a few
// binaries for their version.
const doctorTimeout = 30 * time.Second

// doctorCmd checks the host and an airlockd configuration; it needs no
// broker, and changes nothing.
func doctorCmd(args []string) error {
	fset := flag.NewFlagSet("doctor", flag.ExitOnError)
	fset.Usage = func() {
		fmt.Fprint(os.Stderr, doctorUsage)
		fset.PrintDefaults()
	}
	var c doctor.Config
	fset.StringVar(&c.StateDir, "state-dir", doctor.DefaultStateDir, "airlockd's state directory")
	socket := fset.String("socket", "", "airlockd's unix socket (default $AIRLOCK_SOCKET or "+client.DefaultSocket+")")
	tokenFile := fset.String("token-file", "", "airlockd's bearer token file (default $AIRLOCK_TOKEN_FILE)")
	fset.StringVar(&c.TokensFile, "tokens", "", "airlockd's --tokens file of named token references")
	fset.StringVar(&c.PolicyDir, "policy-dir", "", "airlockd's profile directory (default: the shipped profiles)")
	fset.StringVar(&c.DefaultProfile, "default-profile", "", "airlockd's --default-profile (default secureclaw)")
	fset.StringVar(&c.Listen, "listen", "", "airlockd's --listen host:port, if it serves TCP")
	fset.BoolVar(&c.AllowRemote, "allow-remote", false, "airlockd runs with --allow-remote")
	fset.StringVar(&c.TLSCert, "tls-cert", "", "airlockd's --tls-cert")
	fset.StringVar(&c.TLSKey, "tls-key", "", "airlockd's --tls-key")
	fset.StringVar(&c.TLSClientCA, "tls-client-ca", "", "airlockd's --tls-client-ca")
	fset.StringVar(&c.WebhookTokenFile, "webhook-token-file", "", "the agent side's webhook token file, to check it differs from the gateway token")
	fset.StringVar(&c.Busybox, "busybox", doctor.DefaultBusybox, "airlockd's --busybox")
	fset.StringVar(&c.AgentBinary, "agent-binary", "", "airlockd's --agent-binary (default: airlock-agent next to this command, or on PATH)")
	fset.BoolVar(&c.Dev, "dev", false, "airlockd runs with --dev")
	asJSON := fset.Bool("json", false, "print the checks as JSON")
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

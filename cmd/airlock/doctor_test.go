package main

import (
	"flag"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/airlock/airlock/cmd/airlock/internal/doctor"
	"github.com/airlock/airlock/cmd/airlockd/server"
)

// airlockdFlags are the flags airlockd parses, from its own FlagSet.
func airlockdFlags(t *testing.T) []string {
	t.Helper()
	var o server.Options
	fs, _ := server.FlagSet("airlockd", flag.ContinueOnError, &o)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// TestDoctorFlags_TakesEveryAirlockdFlag: airlockd's command line can be
// handed to doctor as it is, as doctor's help promises.
func TestDoctorFlags_TakesEveryAirlockdFlag(t *testing.T) {
	names := airlockdFlags(t)
	if len(names) < 30 || !slices.Contains(names, "state-dir") || !slices.Contains(names, "egress-pool") {
		t.Fatalf("read %d airlockd flags (%v): server.FlagSet is not airlockd's command line", len(names), names)
	}
	var c doctor.Config
	fset, _, _, _ := doctorFlags(&c)
	for _, name := range names {
		if fset.Lookup(name) == nil {
			t.Errorf("airlock doctor does not take airlockd's --%s", name)
		}
	}
}

// TestDoctorFlags_AirlockdsCommandLineDrivesTheChecks: the flags a check
// depends on reach the doctor's Config; the rest parse and are ignored.
func TestDoctorFlags_AirlockdsCommandLineDrivesTheChecks(t *testing.T) {
	args := []string{
		"--state-dir", "/srv/airlock", "--socket", "/run/a.sock", "--token-file", "/etc/airlock/token",
		"--egress-pool", "10.215.0.0/16", "--proxy-port", "3140", "--max-concurrent", "8",
		"--containerd-address", "/run/containerd/containerd.sock", "--policy-dir", "/etc/airlock/policies",
		"--pool", "secureclaw=2,ironclaw=1", "--pool", "vanilla=3", "--pool-idle", "5m", "--pool-min-available", "1Gi",
		"--metrics-listen", "127.0.0.1:9464", "--pprof", "127.0.0.1:6060", "--upstream-ca", "/etc/airlock/ca.pem",
		"--job-retention", "2h", "--retain-jobs", "100", "--approval-timeout", "1m", "--drain-grace", "10s",
		"--audit-log", "/var/log/airlock.jsonl", "--reflection", "--debug", "--dev", "--default-profile", "vanilla",
	}
	var c doctor.Config
	fset, socket, tokenFile, _ := doctorFlags(&c)
	if err := fset.Parse(args); err != nil {
		t.Fatal(err)
	}
	if fset.NArg() != 0 {
		t.Fatalf("left over arguments %v", fset.Args())
	}
	if c.StateDir != "/srv/airlock" || *socket != "/run/a.sock" || *tokenFile != "/etc/airlock/token" ||
		c.EgressPool != netip.MustParsePrefix("10.215.0.0/16") || c.ContainerdAddress != "/run/containerd/containerd.sock" ||
		c.PolicyDir != "/etc/airlock/policies" || c.MetricsListen != "127.0.0.1:9464" || c.PprofListen != "127.0.0.1:6060" ||
		c.UpstreamCA != "/etc/airlock/ca.pem" || !c.Dev || c.DefaultProfile != "vanilla" {
		t.Errorf("config %+v", c)
	}
	if want := map[string]int{"secureclaw": 2, "ironclaw": 1, "vanilla": 3}; !maps.Equal(c.Pools, want) {
		t.Errorf("pools %v, want %v", c.Pools, want)
	}
}

func TestDoctorFlags_RefusesWhatAirlockdRefuses(t *testing.T) {
	for _, args := range [][]string{
		{"--egress-pool", "10.215.0.0"},
		{"--pool", "secureclaw"},
		{"--pool", "secureclaw=65"},
		{"--pool", "secureclaw=1,secureclaw=2"},
	} {
		var c doctor.Config
		fset, _, _, _ := doctorFlags(&c)
		fset.Init("doctor", flag.ContinueOnError)
		fset.SetOutput(new(strings.Builder))
		fset.Usage = func() {}
		if err := fset.Parse(args); err == nil {
			t.Errorf("%q parsed", args)
		}
	}
}

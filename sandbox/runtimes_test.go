package sandbox

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/policies/policy"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A runtime that is not installed is refused with what to install, and
// never stood in for by another.
func TestRuntimeFor_RefusesWhatIsNotInstalled(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	for name, want := range map[string]string{
		"runc":  "apt-get install runc",
		"crun":  "apt-get install crun",
		"runsc": "apt-get install runsc",
		"kata":  "not supported",
	} {
		err := CheckRuntime(&policy.Profile{Isolation: policy.Isolation{Runtime: name}}, slog.Default())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckRuntime(%q) with an empty PATH = %v, want an error saying %q", name, err, want)
		}
	}
}

// crun runs under the runc shim, which is told to exec crun's binary.
func TestRuntimeFor_CrunRunsUnderTheRuncShim(t *testing.T) {
	dir := t.TempDir()
	crun := filepath.Join(dir, "crun")
	if err := os.WriteFile(crun, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	defer func(u string) { hybridUnified = u }(hybridUnified)
	hybridUnified = t.TempDir()
	rt, err := RuntimeFor("crun")
	if err != nil {
		t.Fatal(err)
	}
	o, ok := rt.Options.(*runcoptions.Options)
	if rt.Shim != runcShim || !ok || o.BinaryName != crun {
		t.Fatalf("RuntimeFor(crun) = %+v; want the runc shim running %s", rt, crun)
	}
	var s specs.Spec
	for _, opt := range rt.Spec {
		if err := opt(context.Background(), nil, nil, &s); err != nil {
			t.Fatal(err)
		}
	}
	if s.Version != crunSpecVersion {
		t.Errorf("crun is told spec version %q, want %q", s.Version, crunSpecVersion)
	}
}

// On a hybrid cgroup host, crun runs only once the cgroup v2 hierarchy
// holds no controller.
func TestCrunCgroups(t *testing.T) {
	dir := t.TempDir()
	if err := crunCgroups(dir); err != nil {
		t.Errorf("no cgroup v2 hierarchy: %v", err)
	}
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.controllers"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("\n")
	if err := crunCgroups(dir); err != nil {
		t.Errorf("an empty cgroup v2 hierarchy: %v", err)
	}
	write("hugetlb\n")
	if err := crunCgroups(dir); err == nil || !strings.Contains(err.Error(), "hugetlb") || !strings.Contains(err.Error(), "make deps") {
		t.Errorf("hugetlb on cgroup v2: %v, want a refusal naming it and the fix", err)
	}
}

// runsc runs under the runc shim through a wrapper that gives it the
// profile's network and platform: gVisor's own stack on the job's
// namespace for an allowlist job, no network otherwise, and never the
// host's. Its state lives under the directory given.
func TestForProfile_RunscWrapper(t *testing.T) {
	bin := t.TempDir()
	runsc := filepath.Join(bin, "runsc")
	if err := os.WriteFile(runsc, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	defer func(d string) { kvmDevice = d }(kvmDevice)
	kvmDevice = filepath.Join(t.TempDir(), "kvm") // absent
	dir := t.TempDir()
	for mode, want := range map[string]string{policy.NetworkNone: "--network=none", policy.NetworkAllowlist: "--network=sandbox"} {
		p := &policy.Profile{Isolation: policy.Isolation{Runtime: "runsc", Platform: "ptrace", Seccomp: "strict"}, Network: policy.Network{Mode: mode}}
		rt, err := ForProfile(dir, p)
		if err != nil {
			t.Fatal(err)
		}
		o, ok := rt.Options.(*runcoptions.Options)
		if rt.Shim != runcShim || !ok || o.Root != filepath.Join(dir, "root") || filepath.Dir(o.BinaryName) != filepath.Join(dir, "bin") {
			t.Fatalf("ForProfile(runsc, %s) = %+v; want the runc shim, a wrapper in %s/bin and runsc's root in %s/root", mode, rt, dir, dir)
		}
		b, err := os.ReadFile(o.BinaryName)
		if err != nil {
			t.Fatal(err)
		}
		script := string(b)
		if !strings.Contains(script, "'"+runsc+"'") || !strings.Contains(script, want) || !strings.Contains(script, "--platform=ptrace") ||
			!strings.Contains(script, "--oci-seccomp") || !strings.Contains(script, "--host-uds=none") ||
			strings.Contains(script, "--network=host") || !strings.HasSuffix(script, "\"$@\"\n") {
			t.Errorf("the %s wrapper is %q; want runsc with %s, the ptrace platform, the profile's seccomp and no host sockets, never the host network", mode, script, want)
		}
	}
	// A profile that names kvm on a host without it does not load.
	p := &policy.Profile{Isolation: policy.Isolation{Runtime: "runsc", Platform: "kvm", Seccomp: "strict"}}
	if err := CheckRuntime(p, slog.Default()); err == nil || !strings.Contains(err.Error(), "kvm") {
		t.Errorf("CheckRuntime(runsc on kvm) without %s = %v, want a refusal naming kvm", kvmDevice, err)
	}
}

// The sentry's and the gofer's threads count in the job's pids cgroup, so
// a runsc sandbox's limit leaves them room beside the profile's.
func TestRuntimeFor_RunscPidsHeadroom(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "runsc"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	rt, err := RuntimeFor("runsc")
	if err != nil {
		t.Fatal(err)
	}
	s := specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: 32}}}}
	for _, opt := range rt.Spec {
		if err := opt(context.Background(), nil, nil, &s); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Linux.Resources.Pids.Limit; got != 32+sentryPids {
		t.Errorf("pids limit under runsc = %d, want %d", got, 32+sentryPids)
	}
}

// gVisor does not apply containerd's default seccomp profile: a runsc
// profile with it does not load, where it would run the agent unfiltered.
func TestCheckRuntime_RunscNeedsStrictSeccomp(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "runsc"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	p := &policy.Profile{Isolation: policy.Isolation{Runtime: "runsc", Platform: "ptrace", Seccomp: "default"}}
	if err := CheckRuntime(p, slog.Default()); err == nil || !strings.Contains(err.Error(), "strict") {
		t.Errorf("CheckRuntime(runsc, seccomp default) = %v, want a refusal naming strict", err)
	}
	if _, err := ForProfile(t.TempDir(), p); err == nil {
		t.Error("ForProfile ran a runsc profile with the default seccomp profile")
	}
	p.Isolation.Seccomp = "strict"
	if err := CheckRuntime(p, slog.Default()); err != nil {
		t.Errorf("CheckRuntime(runsc, seccomp strict) = %v", err)
	}
}

// A kvm probe that hangs, as on a virtual machine without nested
// virtualization, is killed at its deadline and leaves nothing: not the
// bundle runsc do makes in TMPDIR, nor its own state.
func TestProbeKVM_HungProbeLeavesNothing(t *testing.T) {
	bin, dir := t.TempDir(), t.TempDir()
	t.Setenv("TMPDIR", dir)
	kvm := filepath.Join(dir, "kvm")
	if err := os.WriteFile(kvm, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer func(d string, timeout time.Duration) { kvmDevice, kvmProbeTimeout = d, timeout }(kvmDevice, kvmProbeTimeout)
	kvmDevice, kvmProbeTimeout = kvm, 300*time.Millisecond
	// A stand-in for runsc do: it makes its bundle in TMPDIR, says so,
	// and hangs.
	runsc := filepath.Join(bin, "runsc")
	script := "#!/bin/sh\nd=$(mktemp -d \"${TMPDIR:-/tmp}/runsc-do.XXXXXX\") && touch \"$d/config.json\" && exec sleep 60\n"
	if err := os.WriteFile(runsc, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := probeKVM(runsc); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("probeKVM of a hung sandbox = %v, want a timeout", err)
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		if e.Name() != "kvm" {
			t.Errorf("the probe left %s in TMPDIR", e.Name())
		}
	}
}

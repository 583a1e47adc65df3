package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/airlock/airlock/policies/policy"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/oci"
)

// All three OCI runtimes run under containerd's runc v2 shim, which execs
// the binary the task's options name with runc's command line: crun takes
// it as it is, and runsc through a wrapper that adds the flags the
// profile's sandbox needs (gVisor's own shim is not packaged).
const runcShim = "io.containerd.runc.v2"

// Runtime is how a profile's OCI runtime is run: by containerd, through
// Shim with the task options Options, or by hand, as Binary with Flags
// first; either way with Spec applied to the sandbox's spec.
type Runtime struct {
	Name    string
	Binary  string // the runtime's own binary
	Flags   []string
	Shim    string
	Options any
	// RunAhead are the task options that run a sandbox ahead, for an
	// agent that waits for its start line (see wrapperScript); set by
	// ForProfile.
	RunAhead any
	Spec     []oci.SpecOpts
}

// CheckRuntime reports whether the runtime profile p names can run on this
// host as p says. The error says what to install: a profile never falls
// back to a weaker runtime. What it picks for the profile where the
// profile leaves the choice (gVisor's platform) it says in log.
func CheckRuntime(p *policy.Profile, log *slog.Logger) error {
	rt, err := RuntimeFor(p.Isolation.Runtime)
	if err != nil || rt.Name != policy.RuntimeRunsc {
		return err
	}
	if err := runscSeccomp(p); err != nil {
		return err
	}
	_, err = runscPlatform(p.Isolation.Platform, rt.Binary, log)
	return err
}

// runscSeccomp refuses a profile whose seccomp filter gVisor would not
// apply: runsc 2022 runs the agent unfiltered under containerd's default
// profile (the agent's /proc/self/status says "Seccomp: 0"), and applies
// Airlock's strict one.
func runscSeccomp(p *policy.Profile) error {
	if p.Isolation.Seccomp != policy.SeccompStrict {
		return fmt.Errorf("runtime runsc: isolation.seccomp %s is not applied by this gVisor, which would run the agent with no filter; use seccomp: strict", p.Isolation.Seccomp)
	}
	return nil
}

// crunSpecVersion is the newest OCI spec version crun 1.8 accepts; it
// refuses the 1.2 the runtime-spec module writes, though nothing Airlock
// sets needs more than 1.0.
const crunSpecVersion = "1.0.2"

// RuntimeFor returns how the named runtime is run here, or an error saying
// what to install when it is not. A runsc Runtime needs ForProfile to be
// run by containerd.
func RuntimeFor(name string) (Runtime, error) {
	if name == "" {
		name = policy.RuntimeRunc
	}
	need, ok := policy.RuntimeNeeds[name]
	if !ok {
		return Runtime{}, fmt.Errorf("runtime %q is not supported (runc, crun, runsc)", name)
	}
	path, err := exec.LookPath(need.Binary)
	if err != nil {
		return Runtime{}, fmt.Errorf("runtime %s: %s is not installed (%s)", name, need.Binary, need.Install)
	}
	rt := Runtime{Name: name, Binary: path, Shim: runcShim}
	switch name {
	case policy.RuntimeCrun:
		if err := crunCgroups(hybridUnified); err != nil {
			return Runtime{}, err
		}
		rt.Options = &runcoptions.Options{BinaryName: path}
		rt.Spec = []oci.SpecOpts{withSpecVersion(crunSpecVersion)}
	case policy.RuntimeRunsc:
		rt.Spec = []oci.SpecOpts{withPidsHeadroom(sentryPids)}
	}
	return rt, nil
}

// ForProfile returns how profile p's sandboxes run here. It writes, under
// dir, the wrappers the shim runs: for runsc, the one that gives runsc p's
// flags; for every runtime, the one that runs a sandbox ahead (see
// wrapperScript). runsc's state is kept under dir too. dir is the broker's
// state, so that a restart finds what a killed broker's sandboxes left.
func ForProfile(dir string, p *policy.Profile) (Runtime, error) {
	rt, err := RuntimeFor(p.Isolation.Runtime)
	if err != nil {
		return rt, err
	}
	bin := filepath.Join(dir, "bin")
	var root string
	var hideNet bool
	if rt.Name == policy.RuntimeRunsc {
		if err := runscSeccomp(p); err != nil {
			return Runtime{}, err
		}
		platform, err := runscPlatform(p.Isolation.Platform, rt.Binary, slog.Default())
		if err != nil {
			return Runtime{}, err
		}
		rt.Flags = runscFlags(p, platform)
		root = filepath.Join(dir, "root")
		hideNet = slices.Contains(rt.Flags, "--network=sandbox")
		script, err := wrapperScript(rt.Binary, rt.Flags, hideNet, false)
		if err != nil {
			return Runtime{}, err
		}
		wrapper, err := writeWrapper(bin, "runsc", script)
		if err != nil {
			return Runtime{}, err
		}
		rt.Options = &runcoptions.Options{BinaryName: wrapper, Root: root}
	}
	script, err := wrapperScript(rt.Binary, rt.Flags, hideNet, true)
	if err != nil {
		return Runtime{}, err
	}
	ahead, err := writeWrapper(bin, rt.Name+"-ahead", script)
	if err != nil {
		return Runtime{}, err
	}
	rt.RunAhead = &runcoptions.Options{BinaryName: ahead, Root: root}
	return rt, nil
}

// withSpecVersion sets the OCI spec version the runtime is told.
func withSpecVersion(v string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		s.Version = v
		return nil
	}
}

// hybridUnified is where a hybrid cgroup host mounts its cgroup v2
// hierarchy beside the v1 controllers; tests point it elsewhere.
var hybridUnified = "/sys/fs/cgroup/unified"

// crunCgroups refuses crun on a hybrid cgroup host whose cgroup v2
// hierarchy at unified holds controllers, which crun will not run on
// ("cgroups in hybrid mode not supported"). A host with cgroup v1 or v2
// alone has no such hierarchy.
func crunCgroups(unified string) error {
	b, err := os.ReadFile(filepath.Join(unified, "cgroup.controllers"))
	if err != nil {
		return nil
	}
	if c := strings.Fields(string(b)); len(c) > 0 {
		return fmt.Errorf("runtime crun: this hybrid cgroup host's cgroup v2 hierarchy (%s) holds the controllers %s, which crun refuses; move them to cgroup v1 (make deps does) or run the profile on runc",
			unified, strings.Join(c, ", "))
	}
	return nil
}

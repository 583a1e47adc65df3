package sandbox

import (
	"fmt"
	"os/exec"

	"github.com/airlock/airlock/policies/policy"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
)

// The OCI runtimes a profile may name. runc and crun both run under
// containerd's runc v2 shim, which execs the binary the task's options
// name; gVisor needs its own shim.
const (
	runcShim  = "io.containerd.runc.v2"
	runscShim = "io.containerd.runsc.v1"
)

// CheckRuntime reports whether the runtime a profile names can run on this
// host. The error says what to install: a profile never falls back to a
// weaker runtime.
func CheckRuntime(name string) error {
	_, _, err := runtimeFor(name)
	return err
}

// runtimeFor maps a policy runtime to a containerd shim and the options
// its tasks are created with, refusing one that is not installed.
func runtimeFor(name string) (string, any, error) {
	if name == "" {
		name = "runc"
	}
	need, ok := policy.RuntimeNeeds[name]
	if !ok {
		return "", nil, fmt.Errorf("runtime %q is not supported (runc, crun, runsc)", name)
	}
	path, err := exec.LookPath(need.Binary)
	if err != nil {
		return "", nil, fmt.Errorf("runtime %s: %s is not installed (%s)", name, need.Binary, need.Install)
	}
	switch name {
	case "crun":
		return runcShim, &runcoptions.Options{BinaryName: path}, nil
	case "runsc":
		return runscShim, nil, nil
	}
	return runcShim, nil, nil
}

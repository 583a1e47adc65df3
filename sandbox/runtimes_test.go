package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
)

// A runtime that is not installed is refused with what to install, and
// never stood in for by another.
func TestRuntimeFor_RefusesWhatIsNotInstalled(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	for name, want := range map[string]string{
		"runc":  "apt-get install runc",
		"crun":  "apt-get install crun",
		"runsc": "containerd-shim-runsc-v1",
		"kata":  "not supported",
	} {
		err := CheckRuntime(name)
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
	shim, opts, err := runtimeFor("crun")
	if err != nil {
		t.Fatal(err)
	}
	o, ok := opts.(*runcoptions.Options)
	if shim != runcShim || !ok || o.BinaryName != crun {
		t.Fatalf("runtimeFor(crun) = %s, %+v; want the runc shim running %s", shim, opts, crun)
	}
}

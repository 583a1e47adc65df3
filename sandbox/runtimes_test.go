package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

// Package runctest runs a process in an unpacked image's root filesystem
// under runc, for the tests of images Airlock builds: with the caller's
// spec, in a bundle and a runc state directory of the test's own, which
// go when the test ends.
package runctest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultSpec is runc's own default spec, as `runc spec` writes it: its
// own namespaces, /proc, /dev and /sys, and a read-only root, with no
// terminal, since Run captures the output. The caller sets Root.Path and
// the process.
func DefaultSpec(t testing.TB) *specs.Spec {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("runc", "spec", "--bundle", dir).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Process.Terminal = false
	return &spec
}

// NeedRoot fails the test unless it runs as root, as runc needs: a test
// calls it before readying a root filesystem, so that it fails saying
// why, rather than at a chown or a mount on the way.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("running an image under runc needs root")
	}
}

// Result is how a run ended.
type Result struct {
	// Output is what the process wrote to stdout and stderr, interleaved.
	Output string
	// Exit is its exit status; runc's own, when runc could not start it.
	Exit int
}

// Run runs spec under runc and returns how its process ended. It fails
// the test when runc cannot be run, or the process outlives timeout: a
// run is only ever judged by an exit it made itself.
func Run(t testing.TB, spec *specs.Spec, timeout time.Duration) Result {
	t.Helper()
	NeedRoot(t)
	dir := t.TempDir()
	bundle, state := filepath.Join(dir, "bundle"), filepath.Join(dir, "state")
	if err := os.Mkdir(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	// Unique across tests running at once: runc names the container's
	// cgroup after it.
	id := fmt.Sprintf("runctest-%d", time.Now().UnixNano())
	// Registered after TempDir, so it runs first: the container goes
	// before its state directory.
	t.Cleanup(func() { _ = exec.Command("runc", "--root", state, "delete", "--force", id).Run() })
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "runc", "--root", state, "run", "--bundle", bundle, id)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("runc run: %v after %s\n%s", errors.Join(err, ctx.Err()), timeout, out.String())
	case errors.As(err, &ee):
		return Result{Output: out.String(), Exit: ee.ExitCode()}
	case err != nil:
		t.Fatalf("runc run: %v\n%s", err, out.String())
	}
	return Result{Output: out.String()}
}

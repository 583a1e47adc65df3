package agent

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// landlockChildEnv makes the test binary the restricted child of
// TestRestrict_DeniesExecAndWritesOutsideWritable.
const landlockChildEnv = "AIRLOCK_AGENT_LANDLOCK_CHILD"

func TestRestrict_DeniesExecAndWritesOutsideWritable(t *testing.T) {
	if dirs := os.Getenv(landlockChildEnv); dirs != "" {
		landlockChild(dirs)
		return
	}
	allowed, denied := t.TempDir(), t.TempDir()
	run := func(bin string) string {
		cmd := exec.Command(bin, "-test.run=^TestRestrict_DeniesExecAndWritesOutsideWritable$")
		cmd.Env = append(os.Environ(), landlockChildEnv+"="+allowed+":"+denied)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	got := run(os.Args[0])
	if strings.Contains(got, "operation not supported") {
		// A cgo build cannot restrict every thread on a kernel without
		// TSYNC; the agent is built without cgo, so the child is too.
		bin := filepath.Join(t.TempDir(), "agent.test")
		build := exec.Command("go", "test", "-c", "-o", bin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build the child without cgo: %v\n%s", err, out)
		}
		got = run(bin)
	}
	if strings.Contains(got, "unavailable:") {
		t.Skipf("Landlock is not available here: %s", got)
	}
	for _, want := range []string{"write allowed: ok", "write denied: permission denied", "exec: permission denied"} {
		if !strings.Contains(got, want) {
			t.Errorf("child output lacks %q:\n%s", want, got)
		}
	}
}

// landlockChild restricts itself to writing below the first of dirs, then
// reports what it can still do.
func landlockChild(dirs string) {
	allowed, denied, _ := strings.Cut(dirs, ":")
	if _, err := Restrict([]string{allowed}); err != nil {
		if errors.Is(err, ErrLandlockUnavailable) {
			os.Stdout.WriteString("unavailable: " + err.Error() + "\n")
			os.Exit(0)
		}
		os.Stdout.WriteString("restrict: " + err.Error() + "\n")
		os.Exit(1)
	}
	report := func(what string, err error) {
		msg := "ok"
		if err != nil {
			msg = err.Error()
			if errors.Is(err, os.ErrPermission) {
				msg = "permission denied"
			}
		}
		os.Stdout.WriteString(what + ": " + msg + "\n")
	}
	report("write allowed", os.WriteFile(filepath.Join(allowed, "f"), []byte("x"), 0o600))
	report("write denied", os.WriteFile(filepath.Join(denied, "f"), []byte("x"), 0o600))
	// From a new goroutine, which may run on any thread: every thread is
	// restricted, not only the one that asked.
	done := make(chan error)
	go func() { done <- exec.Command("/bin/true").Run() }()
	report("exec", <-done)
	os.Exit(0)
}

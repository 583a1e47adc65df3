package runctest_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/images/rootfs/runctest"
)

// rootfs is a root filesystem holding the test binary, statically linked,
// as /child, and the directories runc mounts over.
func rootfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"proc", "dev", "sys", "tmp"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(root, "child"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestRun_ReturnsTheProcesssOutputAndExitStatus(t *testing.T) {
	root := rootfs(t)
	for _, tt := range []struct {
		mode string
		exit int
		want []string
	}{
		{"ok", 0, []string{"ok\n"}},
		{"exit3", 3, []string{"to stdout\n", "to stderr\n"}},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			spec := runctest.DefaultSpec(t)
			spec.Root.Path = root
			spec.Process.Args = []string{"/child"}
			spec.Process.Env = []string{childEnv + "=" + tt.mode}
			res := runctest.Run(t, spec, 30*time.Second)
			if res.Exit != tt.exit {
				t.Errorf("exit %d, want %d; output %q", res.Exit, tt.exit, res.Output)
			}
			for _, w := range tt.want {
				if !strings.Contains(res.Output, w) {
					t.Errorf("output %q lacks %q", res.Output, w)
				}
			}
		})
	}
}

// fatalRecorder records a test failure instead of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, a ...any) {
	f.msg = fmt.Sprintf(format, a...)
	runtime.Goexit()
}

func (f *fatalRecorder) Fatal(a ...any) {
	f.msg = fmt.Sprint(a...)
	runtime.Goexit()
}

func TestRun_FailsAProcessThatOutlivesItsTimeout(t *testing.T) {
	spec := runctest.DefaultSpec(t)
	spec.Root.Path = rootfs(t)
	spec.Process.Args = []string{"/child"}
	spec.Process.Env = []string{childEnv + "=sleep"}
	rec := &fatalRecorder{TB: t}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runctest.Run(rec, spec, time.Second)
	}()
	<-done
	if !strings.Contains(rec.msg, "after 1s") {
		t.Errorf("Run of a process that sleeps a minute, with a 1s timeout: failure %q, want one naming the timeout", rec.msg)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Run took %s", d)
	}
}

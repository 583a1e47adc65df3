package embedded

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestStart_RefusesAMissingBinaryBeforeMakingAnything(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	dir := t.TempDir() + "/containerd"
	_, err := Start(context.Background(), dir)
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "apt-get install containerd runc") {
		t.Fatalf("Start without containerd on PATH = %v, want ErrNotInstalled with the fix", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Start made %s before refusing: %v", dir, err)
	}
}

func TestConfig_KeepsEverythingUnderItsDir(t *testing.T) {
	c := config("/state/containerd", "/state/containerd/containerd.sock")
	for _, want := range []string{
		`root = "/state/containerd/root"`,
		`state = "/state/containerd/state"`,
		`address = "/state/containerd/containerd.sock"`,
		`address = "/state/containerd/containerd.sock.ttrpc"`,
		`"io.containerd.grpc.v1.cri"`,
	} {
		if !strings.Contains(c, want) {
			t.Errorf("config lacks %s:\n%s", want, c)
		}
	}
	// Debug and metrics sockets would be more ways in; both stay off.
	if strings.Count(c, `address = ""`) != 2 {
		t.Errorf("config serves debug or metrics:\n%s", c)
	}
}

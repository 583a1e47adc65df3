package bench

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadProc_Self(t *testing.T) {
	s, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 {
		t.Errorf("RSS = %d, want > 0", s.RSS)
	}
	if s.CPU < 0 {
		t.Errorf("CPU = %v", s.CPU)
	}
}

func TestListenerPID_FindsTheListeningProcess(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pid, err := ListenerPID(sock)
	if err != nil {
		t.Fatal(err)
	}
	if pid != os.Getpid() {
		t.Errorf("ListenerPID = %d, want this process, %d", pid, os.Getpid())
	}
}

func TestListenerPID_NoListenerIsAnError(t *testing.T) {
	if _, err := ListenerPID(filepath.Join(t.TempDir(), "nothing.sock")); err == nil || !strings.Contains(err.Error(), "no unix socket") {
		t.Errorf("err = %v", err)
	}
}

func TestFlagValue_ReadsEveryFlagSpelling(t *testing.T) {
	tests := []struct {
		args   []string
		want   string
		wantOK bool
	}{
		{[]string{"--state-dir", "/a"}, "/a", true},
		{[]string{"-state-dir", "/b"}, "/b", true},
		{[]string{"--state-dir=/c"}, "/c", true},
		{[]string{"-state-dir=/d", "--socket", "x"}, "/d", true},
		{[]string{"--socket", "/s"}, "", false},
		{[]string{"--", "--state-dir", "/e"}, "", false},
		{[]string{"state-dir", "/f"}, "", false},
		{[]string{"--state-dir"}, "", false},
	}
	for _, tt := range tests {
		got, ok := FlagValue(tt.args, "state-dir")
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("FlagValue(%q) = %q, %v; want %q, %v", tt.args, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestEmbeddedContainerd_IsUnderStateDir(t *testing.T) {
	if got := EmbeddedContainerd("/var/lib/airlock"); got != "/var/lib/airlock/containerd/containerd.sock" {
		t.Errorf("EmbeddedContainerd = %q", got)
	}
}

func TestCappedBuffer_KeepsOnlyTheStart(t *testing.T) {
	c := &cappedBuffer{max: 5}
	for _, s := range []string{"abc", "defgh", "ijk"} {
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want the whole write accepted", s, n, err)
		}
	}
	if c.String() != "abcde" {
		t.Errorf("kept %q, want %q", c.String(), "abcde")
	}
}

package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/broker"
)

// TestStart_AFailedStartUndoesWhatItStarted: Start fails after the socket,
// the pprof listener and (in the second case) the state-dir lock are up,
// and nothing of them is left. No containerd is needed: both failures come
// before it. goleak, in TestMain, proves the pprof server stopped.
func TestStart_AFailedStartUndoesWhatItStarted(t *testing.T) {
	tests := []struct {
		name     string
		lockHeld bool
		wantErr  string
	}{
		{"the state dir is locked", true, "in use by another airlockd"},
		{"the agent binary is missing, after the lock", false, "agent binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not t.TempDir(): a unix socket's path must stay under 108
			// bytes, and a state dir must be traversable.
			dir, err := os.MkdirTemp("", "airlockd-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			if err := os.Chmod(dir, 0o711); err != nil {
				t.Fatal(err)
			}
			tokenFile := filepath.Join(dir, "token")
			if err := os.WriteFile(tokenFile, []byte(rand.Text()+rand.Text()), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			o := Options{
				Socket: filepath.Join(dir, "airlock.sock"), TokenFile: tokenFile, StateDir: filepath.Join(dir, "state"),
				ContainerdAddress: filepath.Join(dir, "containerd.sock"), AgentBinary: filepath.Join(dir, "no-such-agent"), Busybox: "/bin/busybox",
				DefaultProfile: "secureclaw", PprofListen: "127.0.0.1:0",
				MaxConcurrent: 1, MaxQueue: 1, JobRetention: time.Hour, RetainJobs: broker.DefaultRetainJobs,
				ApprovalTimeout: broker.DefaultApprovalTimeout, DrainGrace: time.Second, ProxyPort: 3128,
				Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
			}
			if err := os.MkdirAll(o.StateDir, 0o711); err != nil {
				t.Fatal(err)
			}
			if tt.lockHeld {
				unlock, err := lockStateDir(o.StateDir)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(unlock)
			}

			s, err := Start(context.Background(), o)
			if err == nil {
				s.Shutdown(context.Background())
				t.Fatalf("Start = nil, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Start = %v, want an error containing %q", err, tt.wantErr)
			}

			if _, err := os.Lstat(o.Socket); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the socket is left after a failed Start: %v", err)
			}
			pprofAddr := loggedAddr(t, logs.Bytes(), "pprof serving")
			if c, err := net.Dial("tcp", pprofAddr); err == nil {
				c.Close()
				t.Errorf("pprof still listens on %s after a failed Start", pprofAddr)
			}
			if !tt.lockHeld {
				unlock, err := lockStateDir(o.StateDir)
				if err != nil {
					t.Fatalf("the state dir stays locked after a failed Start: %v", err)
				}
				unlock()
			}
		})
	}
}

// loggedAddr is the addr attribute of the JSON log line with message msg.
func loggedAddr(t *testing.T, logs []byte, msg string) string {
	t.Helper()
	for line := range bytes.Lines(logs) {
		var rec struct{ Msg, Addr string }
		if err := json.Unmarshal(line, &rec); err == nil && rec.Msg == msg {
			return rec.Addr
		}
	}
	t.Fatalf("no %q in the log:\n%s", msg, logs)
	return ""
}

// TestStart_ATakenHealthPortStopsStartUp: --health-listen is opened with
// the API's listener, so a port already in use fails Start before any
// other work, naming the flag, and the socket is gone again.
func TestStart_ATakenHealthPortStopsStartUp(t *testing.T) {
	dir, err := os.MkdirTemp("", "airlockd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(rand.Text()+rand.Text()), 0o600); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	o := Options{
		Socket: filepath.Join(dir, "airlock.sock"), TokenFile: tokenFile, StateDir: filepath.Join(dir, "state"),
		HealthListen: taken.Addr().String(), DefaultProfile: "secureclaw", MaxConcurrent: 1, MaxQueue: 1,
		JobRetention: time.Hour, RetainJobs: broker.DefaultRetainJobs, ApprovalTimeout: broker.DefaultApprovalTimeout,
		DrainGrace: time.Second, ProxyPort: 3128,
	}
	s, err := Start(context.Background(), o)
	if err == nil {
		s.Shutdown(context.Background())
		t.Fatal("Start = nil, want an error for the taken --health-listen port")
	}
	if !strings.Contains(err.Error(), "--health-listen") {
		t.Fatalf("Start = %v, want an error naming --health-listen", err)
	}
	if _, err := os.Lstat(o.Socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the socket is left after a failed Start: %v", err)
	}
}

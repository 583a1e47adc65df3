package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock/airlock/broker/audit"
)

// writeAuditLog writes records for jobs to STATE_DIR/audit.jsonl as
// airlockd does.
func writeAuditLog(t *testing.T, stateDir string, jobs ...string) string {
	t.Helper()
	var b bytes.Buffer
	l := audit.New(&b)
	for _, j := range jobs {
		if err := l.Write(audit.Record{JobID: j}); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(stateDir, "audit.jsonl")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func jobIDs(t *testing.T, out string) []string {
	t.Helper()
	var ids []string
	for line := range strings.Lines(out) {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		ids = append(ids, r.JobID)
	}
	return ids
}

func TestAuditLogFrom_IsWhereAirlockdWritesIt(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"defaults", []string{"--token-file", "/etc/airlock.token"}, "/var/lib/airlock/audit.jsonl"},
		{"state dir", []string{"--state-dir", "/srv/airlock"}, "/srv/airlock/audit.jsonl"},
		{"state dir with =", []string{"-state-dir=/srv/airlock"}, "/srv/airlock/audit.jsonl"},
		{"audit log wins", []string{"--state-dir", "/srv/airlock", "--audit-log", "/var/log/airlock.jsonl"}, "/var/log/airlock.jsonl"},
		{"empty audit log means the state dir's", []string{"--audit-log=", "--state-dir", "/srv/airlock"}, "/srv/airlock/audit.jsonl"},
		{"relative state dir from airlockd's cwd", []string{"--state-dir", "state"}, "/home/op/state/audit.jsonl"},
		{"relative audit log from airlockd's cwd", []string{"--audit-log", "a.jsonl"}, "/home/op/a.jsonl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := auditLogFrom(tt.args, "/home/op"); got != tt.want {
				t.Errorf("auditLogFrom(%q) = %s, want %s", tt.args, got, tt.want)
			}
		})
	}
}

func TestAudit_TailReadsTheLastRecordsOfStateDirsLog(t *testing.T) {
	dir := t.TempDir()
	writeAuditLog(t, dir, "j1", "j2", "j3")
	var out bytes.Buffer
	if err := runAudit([]string{"--state-dir", dir, "tail", "-n", "2"}, &out, filepath.Join(dir, "no.sock")); err != nil {
		t.Fatal(err)
	}
	if got := jobIDs(t, out.String()); fmt.Sprint(got) != "[j2 j3]" {
		t.Errorf("tail -n 2 printed jobs %v, want [j2 j3]", got)
	}
}

func TestAudit_FindsTheLogOfTheAirlockdServingTheSocket(t *testing.T) {
	// This process stands in for airlockd: it serves the socket, and its
	// command line has no --state-dir, so its log is airlockd's default.
	sock := filepath.Join(t.TempDir(), "airlock.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	src := findAuditLog("", "", sock)
	if src.path != "/var/lib/airlock/audit.jsonl" {
		t.Errorf("path = %s, want airlockd's default", src.path)
	}
	if want := fmt.Sprintf("airlockd pid %d, which serves %s", os.Getpid(), sock); !strings.Contains(src.why, want) {
		t.Errorf("why = %q, want it to name %q", src.why, want)
	}
}

func TestAudit_MissingLogSaysWhichFileAndHowToChooseAnother(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "none.sock")
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"default", []string{"tail"}, []string{"no audit log at /var/lib/airlock/audit.jsonl", "no airlockd found serving " + sock, "--file PATH or --state-dir DIR"}},
		{"state dir", []string{"--state-dir", dir, "tail"}, []string{"no audit log at " + filepath.Join(dir, "audit.jsonl") + " (--state-dir)"}},
		{"file", []string{"--file", filepath.Join(dir, "x.jsonl"), "show", "j1"}, []string{"no audit log at " + filepath.Join(dir, "x.jsonl") + " (--file)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := os.Stat("/var/lib/airlock/audit.jsonl"); err == nil && tt.name == "default" {
				t.Skip("this host has an audit log at airlockd's default")
			}
			err := runAudit(tt.args, &bytes.Buffer{}, sock)
			if err == nil {
				t.Fatal("no error for a missing audit log")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestAudit_ShowPrintsOneJobsRecord(t *testing.T) {
	dir := t.TempDir()
	path := writeAuditLog(t, dir, "j1", "j2")
	var out bytes.Buffer
	if err := runAudit([]string{"--file", path, "show", "j1"}, &out, filepath.Join(dir, "no.sock")); err != nil {
		t.Fatal(err)
	}
	var r audit.Record
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || r.JobID != "j1" {
		t.Errorf("show j1 printed %s (%v)", out.String(), err)
	}
	if err := runAudit([]string{"--file", path, "show", "j9"}, &out, filepath.Join(dir, "no.sock")); err == nil || !strings.Contains(err.Error(), `job "j9" is not in `+path) {
		t.Errorf("show j9: %v", err)
	}
}

package sandbox

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/airlock/airlock/sandbox/agent"
	"github.com/airlock/airlock/sandbox/job"
)

func TestInput_OnlyTheJobsHostUserCanReadIt(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	const uid, gid = 1_000_065_534 + 7*65536, 1_000_065_534 + 7*65536
	input := filepath.Join(t.TempDir(), "input")
	if err := prepareInput(input, uid, gid); err != nil {
		t.Fatal(err)
	}
	j := &job.Job{ID: "j", Task: "summarize", Policy: testProfile(), Content: []job.Content{{Data: []byte("one")}, {Data: []byte("two")}}}
	if err := writeInput(input, j, nil, uid, gid); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := filepath.WalkDir(input, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		want := fs.FileMode(0o400)
		if d.IsDir() {
			want = 0o500
		}
		if info.Mode().Perm() != want || st.Uid != uid || st.Gid != gid {
			t.Errorf("%s is %#o %d:%d, want %#o %d:%d", path, info.Mode().Perm(), st.Uid, st.Gid, want, uid, gid)
		}
		n++
		return nil
	})
	if err != nil || n != 5 {
		t.Fatalf("walked %d entries (input, job.json, content, 0, 1): %v", n, err)
	}
	// The agent refuses a job.json without the contract's version.
	var written agent.Job
	if b, err := os.ReadFile(filepath.Join(input, "job.json")); err != nil || json.Unmarshal(b, &written) != nil {
		t.Fatalf("job.json: %v", err)
	}
	if written.ContractVersion != agent.ContractVersion {
		t.Errorf("job.json contractVersion = %d, want %d", written.ContractVersion, agent.ContractVersion)
	}
	// The input is written once: a file already there is never reused.
	if err := writeInput(input, j, nil, uid, gid); err == nil {
		t.Error("a second writeInput overwrote the input")
	}
}

func TestNewDirName_IsRandomAndNamesNoID(t *testing.T) {
	hex128 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for range 100 {
		name, err := newDirName()
		if err != nil {
			t.Fatal(err)
		}
		if !hex128.MatchString(name) || strings.HasPrefix(name, "airlock-") || seen[name] {
			t.Fatalf("dir name %q: want 128 fresh random bits in hex", name)
		}
		seen[name] = true
	}
}

package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadResult(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(`{"secret":"host"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		setup   func(dir string) error
		want    string
		wantErr string
	}{
		{"regular file", func(d string) error { return os.WriteFile(filepath.Join(d, "result.json"), []byte(`{"a":1}`), 0o644) }, `{"a":1}`, ""},
		{"at the cap", func(d string) error {
			return os.WriteFile(filepath.Join(d, "result.json"), []byte(strings.Repeat("x", 16)), 0o644)
		}, strings.Repeat("x", 16), ""},
		{"over the cap", func(d string) error {
			return os.WriteFile(filepath.Join(d, "result.json"), []byte(strings.Repeat("x", 17)), 0o644)
		}, "", "output byte cap"},
		{"symlink to a host file", func(d string) error { return os.Symlink(secret, filepath.Join(d, "result.json")) }, "", "symlink"},
		{"fifo", func(d string) error { return syscall.Mkfifo(filepath.Join(d, "result.json"), 0o644) }, "", "not a regular file"},
		{"directory", func(d string) error { return os.Mkdir(filepath.Join(d, "result.json"), 0o755) }, "", "not a regular file"},
		{"missing", func(string) error { return nil }, "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tt.setup(dir); err != nil {
				t.Fatal(err)
			}
			got, err := readResult(dir, "result.json", 16)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if got != nil {
					t.Fatalf("got %q with an error", got)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestReadResult_RefusesSymlinkedOutputDir(t *testing.T) {
	real := t.TempDir()
	if err := os.WriteFile(filepath.Join(real, "result.json"), []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "out")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := readResult(link, "result.json", 16); err == nil {
		t.Fatal("followed a symlinked output dir")
	}
}

func TestReadResult_TooLargeIsDistinguishable(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "result.json"), make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readResult(dir, "result.json", 10); !errors.Is(err, errTooLarge) {
		t.Fatalf("err = %v, want errTooLarge", err)
	}
}

func TestCappedBuffer_KeepsPrefixAndCountsRest(t *testing.T) {
	b := newCappedBuffer(4)
	if n, err := b.Write([]byte("abcdef")); n != 6 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if got := string(b.Bytes()); !strings.HasPrefix(got, "abcd") || !strings.Contains(got, "2 bytes dropped") {
		t.Fatalf("Bytes = %q", got)
	}
}

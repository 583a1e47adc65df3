package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// The agent runs only under a seccomp filter, and says why it will not.
func TestCheckConfined(t *testing.T) {
	dir := t.TempDir()
	for status, ok := range map[string]bool{
		"Name:\tairlock-agent\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n": true,
		"Name:\tairlock-agent\nSeccomp:\t0\n":                                      false,
		"Name:\tairlock-agent\nSeccomp:\t1\n":                                      false,
		"Name:\tairlock-agent\n":                                                   false,
	} {
		f := filepath.Join(dir, "status")
		if err := os.WriteFile(f, []byte(status), 0o600); err != nil {
			t.Fatal(err)
		}
		err := checkConfined(f)
		if (err == nil) != ok || err != nil && !errors.Is(err, ErrUnconfined) {
			t.Errorf("checkConfined(%q) = %v, want ok %v", status, err, ok)
		}
	}
	if err := checkConfined(filepath.Join(dir, "absent")); !errors.Is(err, ErrUnconfined) {
		t.Errorf("checkConfined of no status file = %v, want ErrUnconfined", err)
	}
}

//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAirlockd_RefusesToStartUnsafely runs the real binary with each unsafe
// configuration and checks it exits non-zero saying why, before binding.
func TestAirlockd_RefusesToStartUnsafely(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.token", randHex(32), 0o600)
	short := write("short.token", "abc123", 0o600)
	literal := write("tokens.yaml", "tokens:\n  - name: a\n    scopes: [spawn]\n    token: "+randHex(32)+"\n", 0o600)
	sock := filepath.Join(dir, "a.sock")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no token", nil, "no token"},
		{"short token", []string{"--token-file", short}, "weak token"},
		{"literal token in config", []string{"--tokens", literal}, "literal token"},
		{"non-loopback without TLS", []string{"--token-file", good, "--listen", "0.0.0.0:7799"}, "--allow-remote"},
		{"opt-in without TLS", []string{"--token-file", good, "--listen", "0.0.0.0:7799", "--allow-remote"}, "--tls-cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(env.bin, "airlockd"), append([]string{"--state-dir", filepath.Join(dir, "state"), "--socket", sock}, tt.args...)...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("airlockd started; output:\n%s", out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output %q does not say %q", out, tt.want)
			}
			if _, err := os.Stat(sock); err == nil {
				t.Error("the socket was bound before refusing")
			}
		})
	}
}

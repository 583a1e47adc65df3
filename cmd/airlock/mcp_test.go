package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock/airlock/broker/client"
)

// `airlock mcp --http` binds by the broker's rule: a loopback address, or
// --allow-remote with TLS. A name is refused: it could resolve elsewhere.
func TestMCP_HTTPBindRule(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "none.sock")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--http", "localhost:0"}, "not a loopback address"},
		{[]string{"--http", "10.1.2.3:0"}, "not a loopback address"},
		{[]string{"--http", "10.1.2.3:0", "--allow-remote"}, "--tls-cert"},
	} {
		err := mcpCmd(client.Endpoint{Socket: socket, TokenFile: token}, tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("mcp %v = %v, want a refusal naming %q", tc.args, err, tc.want)
		}
	}
}

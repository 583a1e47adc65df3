package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	tokFile := writeFile(t, dir, "a.token", string(testToken))
	t.Setenv("AIRLOCK_TEST_OPS", string(otherToken))
	tests := []struct {
		name string
		body string
		want error
	}{
		{"file and env refs", "tokens:\n  - {name: a, scopes: [spawn, read], secretRef: 'file:" + tokFile + "'}\n  - {name: ops, scopes: [admin], secretRef: 'env:AIRLOCK_TEST_OPS'}\n", nil},
		{"literal token key", "tokens:\n  - {name: a, scopes: [spawn], token: " + string(testToken) + "}\n", ErrLiteralToken},
		{"literal secretRef", "tokens:\n  - {name: a, scopes: [spawn], secretRef: " + string(testToken) + "}\n", ErrLiteralToken},
		{"unset env", "tokens:\n  - {name: a, scopes: [spawn], secretRef: 'env:AIRLOCK_TEST_UNSET'}\n", ErrNoToken},
		{"no tokens", "tokens: []\n", ErrNoToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			toks, err := LoadTokens(writeFile(t, dir, "tokens.yaml", tt.body))
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(toks) != 2 || toks[1].Name != "ops" || string(toks[1].Secret) != string(otherToken) {
				t.Errorf("tokens = %+v", toks)
			}
		})
	}
	if _, err := LoadTokens(writeFile(t, dir, "bad.yaml", "tokens:\n  - {name: a, scopes: [spawn], secretRef: 'env:X', extra: 1}\n")); err == nil || !strings.Contains(err.Error(), "extra") {
		t.Errorf("unknown field: err = %v", err)
	}
}

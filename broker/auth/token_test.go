package auth

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestLoadToken(t *testing.T) {
	hex48 := strings.Repeat("0123456789abcdef", 3)
	b64url32 := "q83vEjRWeJq83vEjRWeJ-_q83vEjRWeJ"
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		noFile  bool
		want    string
		wantErr error
		wantMsg string
	}{
		{name: "accepts 48 hex characters", content: hex48, mode: 0o600, want: hex48},
		{name: "accepts a generated-length token", content: hex48 + "0123456789abcdef", mode: 0o600, want: hex48 + "0123456789abcdef"},
		{name: "trims surrounding whitespace", content: "\n  " + hex48 + " \r\n", mode: 0o600, want: hex48},
		{name: "accepts 32 base64url characters", content: b64url32, mode: 0o400, want: b64url32},
		{name: "accepts padded base64 of 24 bytes or more", content: "q83vEjRWeJq83vEjRWeJ+/q83vEjRWeJq83vEjRWeJ=", mode: 0o600, want: "q83vEjRWeJq83vEjRWeJ+/q83vEjRWeJq83vEjRWeJ="},
		{name: "refuses a missing file", noFile: true, wantErr: ErrNoToken, wantMsg: "cannot open"},
		{name: "refuses an empty file", content: "", mode: 0o600, wantErr: ErrNoToken, wantMsg: "empty"},
		{name: "refuses a whitespace-only file", content: " \n\t", mode: 0o600, wantErr: ErrNoToken, wantMsg: "empty"},
		{name: "refuses 47 hex characters", content: hex48[:47], mode: 0o600, wantErr: ErrWeakToken, wantMsg: "47 hex characters (188 bits)"},
		{name: "refuses short base64", content: b64url32[:31], mode: 0o600, wantErr: ErrWeakToken, wantMsg: "31 base64 characters"},
		{name: "refuses a passphrase it cannot judge", content: "correct horse battery staple and then some more words", mode: 0o600, wantErr: ErrWeakToken, wantMsg: "hex or base64"},
		{name: "refuses a repeated character", content: strings.Repeat("a", 64), mode: 0o600, wantErr: ErrWeakToken, wantMsg: "too few characters"},
		{name: "refuses a group-readable file", content: hex48, mode: 0o640, wantErr: ErrInsecureTokenFile, wantMsg: "chmod 600"},
		{name: "refuses a world-readable file", content: hex48, mode: 0o644, wantErr: ErrInsecureTokenFile, wantMsg: "chmod 600"},
		{name: "refuses a group-writable file", content: hex48, mode: 0o620, wantErr: ErrInsecureTokenFile},
		{name: "refuses an oversized file", content: hex48 + strings.Repeat(" ", maxTokenFileBytes), mode: 0o600, wantErr: ErrNoToken, wantMsg: "only the token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token")
			if !tc.noFile {
				if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
				// Chmod explicitly: WriteFile's mode is filtered by the umask.
				if err := os.Chmod(path, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			got, err := LoadToken(path)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("LoadToken = %v, want success", err)
				}
				if string(got) != tc.want {
					t.Errorf("LoadToken = %q, want %q", got, tc.want)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("LoadToken error = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("LoadToken error = %q, want it to contain %q", err, tc.wantMsg)
			}
			if got != nil {
				t.Errorf("LoadToken returned a token with an error")
			}
		})
	}
}

func TestLoadToken_RefusesEmptyPathWithAdvice(t *testing.T) {
	_, err := LoadToken("")
	if !errors.Is(err, ErrNoToken) || !strings.Contains(err.Error(), "set --token-file or AIRLOCK_TOKEN_FILE") {
		t.Errorf("LoadToken(\"\") = %v, want ErrNoToken naming the flag and variable", err)
	}
}

func TestLoadToken_RefusesNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{dir, fifo} {
		if _, err := LoadToken(path); !errors.Is(err, ErrNoToken) {
			t.Errorf("LoadToken(%s) = %v, want ErrNoToken", path, err)
		}
	}
}

func TestGenerateToken_PassesCheckToken(t *testing.T) {
	a, err := GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 64 || a == b {
		t.Errorf("GenerateToken gave %q then %q, want two distinct 64-character tokens", a, b)
	}
	if err := CheckToken([]byte(a)); err != nil {
		t.Errorf("CheckToken(GenerateToken()) = %v", err)
	}
	if bytes.ContainsAny([]byte(a), "ABCDEF \n") {
		t.Errorf("GenerateToken = %q, want lower-case hex only", a)
	}
}

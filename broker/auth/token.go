package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

var (
	// ErrNoToken means no usable token could be read: no path, an unreadable
	// or non-regular file, or an empty one.
	ErrNoToken = errors.New("no token")
	// ErrWeakToken means the token is too short or too regular to resist guessing.
	ErrWeakToken = errors.New("weak token")
	// ErrInsecureTokenFile means other users could read or replace the token file.
	ErrInsecureTokenFile = errors.New("insecure token file")
)

const (
	// minHexChars is 192 bits at 4 bits per hex digit.
	minHexChars = 48
	// minBase64Chars is 192 bits at 6 bits per base64 character.
	minBase64Chars = 32
	// minDistinct catches a repeated or patterned token ("aaaa…", "abab…").
	// A random 48-hex or 32-base64 token has fewer distinct characters with
	// probability below 1e-12, so no real token is refused.
	minDistinct = 8
	// maxTokenFileBytes bounds the read; a token file holds one short line.
	maxTokenFileBytes = 4096
)

// LoadToken reads the broker's bearer token from path, trimming surrounding
// whitespace, and refuses it unless the file is private to its owner (no
// group or other permission bits) and the token passes CheckToken.
func LoadToken(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: set --token-file or AIRLOCK_TOKEN_FILE", ErrNoToken)
	}
	// O_NONBLOCK so that a FIFO at path is refused below instead of
	// blocking start-up until something writes to it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot open token file: %w", ErrNoToken, err)
	}
	defer f.Close()
	// Stat the open file, not the path, so the checks apply to what is read.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: cannot stat token file %s: %w", ErrNoToken, path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: token file %s is not a regular file", ErrNoToken, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: token file %s has mode %#o, so other users can read or change it: run chmod 600 %s",
			ErrInsecureTokenFile, path, perm, path)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxTokenFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: cannot read token file %s: %w", ErrNoToken, path, err)
	}
	if len(raw) > maxTokenFileBytes {
		return nil, fmt.Errorf("%w: token file %s is over %d bytes; it should hold only the token", ErrNoToken, path, maxTokenFileBytes)
	}
	tok := bytes.TrimSpace(raw)
	if len(tok) == 0 {
		return nil, fmt.Errorf("%w: token file %s is empty", ErrNoToken, path)
	}
	if err := CheckToken(tok); err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return tok, nil
}

// CheckToken refuses a token under 192 bits. Strength is judged from the
// alphabet, assuming the characters are random: a token of only hex digits
// needs at least 48 of them; otherwise it must be base64 or base64url (either
// alphabet, optional "=" padding) with at least 32 characters before the
// padding. Anything else (a passphrase, say) is refused, because its
// strength cannot be judged. CheckToken cannot detect a long token that is
// not random beyond refusing one with fewer than 8 distinct characters.
func CheckToken(tok []byte) error {
	const fix = "generate one with `openssl rand -hex 32`"
	if len(tok) == 0 {
		return fmt.Errorf("%w: token is empty", ErrNoToken)
	}
	switch {
	case isHex(tok):
		if len(tok) < minHexChars {
			return fmt.Errorf("%w: token has %d hex characters (%d bits), need at least %d (192 bits): %s",
				ErrWeakToken, len(tok), 4*len(tok), minHexChars, fix)
		}
	case isBase64(tok):
		n := len(bytes.TrimRight(tok, "="))
		if n < minBase64Chars {
			return fmt.Errorf("%w: token has %d base64 characters (%d bits), need at least %d (192 bits): %s",
				ErrWeakToken, n, 6*n, minBase64Chars, fix)
		}
	default:
		return fmt.Errorf("%w: token must be hex or base64 so its strength can be judged: %s", ErrWeakToken, fix)
	}
	if distinct(tok) < minDistinct {
		return fmt.Errorf("%w: token repeats too few characters to be random: %s", ErrWeakToken, fix)
	}
	return nil
}

// GenerateToken returns 32 random bytes (256 bits) as 64 hex characters.
func GenerateToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func isBase64(b []byte) bool {
	body := bytes.TrimRight(b, "=")
	if len(b)-len(body) > 2 {
		return false
	}
	for _, c := range body {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' ||
			c == '+' || c == '/' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func distinct(b []byte) int {
	var seen [256]bool
	n := 0
	for _, c := range b {
		if !seen[c] {
			seen[c] = true
			n++
		}
	}
	return n
}

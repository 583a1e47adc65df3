package broker

import (
	"strings"
	"testing"

	"github.com/airlock/airlock/broker/result"
)

// TestCleanText_NeverShowsASecretCutInTwo: wherever a secret falls in a
// long text (across the cap, across the window a long text is read in,
// after text that stripping removes), the cleaned text holds no part of it
// long enough to matter, and is capped.
func TestCleanText_NeverShowsASecretCutInTwo(t *testing.T) {
	secret := "sk-hostile-0123456789abcdefghijklmnopqrstuvwxyz"
	opts := result.SanitizeOptions{Secrets: [][]byte{[]byte(secret)}}
	margin := 3 * (3*len(secret) + 16)
	for _, maxRunes := range []int{32, maxReasonRunes, maxAuditLogBytes} {
		window := 4 * (maxRunes + margin)
		offsets := []int{0, 1}
		for _, edge := range []int{maxRunes, window, 2 * window, 4 * window} {
			for d := -len(secret) - 2; d <= 2; d++ {
				offsets = append(offsets, edge+d)
			}
		}
		for _, junk := range []string{"x", "\x01", "\x1b[0m", "<|im_start|>"} {
			for _, off := range offsets {
				if off < 0 {
					continue
				}
				pad := strings.Repeat(junk, off/len(junk)+1)[:off]
				s := pad + secret + strings.Repeat("z", 1<<16)
				out := cleanText(s, maxRunes, opts)
				if strings.Contains(out, secret[:8]) || strings.Contains(out, secret[len(secret)-8:]) {
					t.Fatalf("max %d, %q junk, secret at %d: %q shows part of the secret", maxRunes, junk, off, out[max(0, len(out)-80):])
				}
				if n := len([]rune(out)); n > maxRunes {
					t.Fatalf("max %d: %d characters", maxRunes, n)
				}
			}
		}
	}
}

// TestCleanLine_IsOneLine: a reason or a message cannot forge a line of
// a log or a terminal.
func TestCleanLine_IsOneLine(t *testing.T) {
	for _, s := range []string{"a\nlevel=ERROR", "a\r\nb", "a\u2028b", "a\u0085b", "a\tb", "a\vb\fc"} {
		if out := cleanLine(s, 64, result.SanitizeOptions{}); strings.ContainsAny(out, "\n\r\t\v\f\u2028\u2029\u0085") {
			t.Errorf("cleanLine(%q) = %q", s, out)
		}
	}
}

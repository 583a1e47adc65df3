package result

import (
	"strings"
	"testing"
)

// TestSanitize_RedactsASecretAnEscapeSequenceWouldEatInto: an escape
// introducer right before a known secret takes its first character when
// stripped; the secret is still redacted, whole, and no long part of it
// survives.
func TestSanitize_RedactsASecretAnEscapeSequenceWouldEatInto(t *testing.T) {
	secret := "sk-hostile-0123456789abcdefghijklmnopqrstuvwxyz"
	opts := SanitizeOptions{Secrets: [][]byte{[]byte(secret)}}
	for _, prefix := range []string{"\x1b", "\x1b[", "\x1b(", "\x1b#", "\u009b", "\x1b]", "\x1bP", "\x1b[1;", "a\x1b"} {
		for _, text := range []string{prefix + secret, prefix + secret + " tail", "head " + prefix + secret} {
			out := SanitizeText(text, opts)
			if strings.Contains(out, secret[1:12]) || strings.Contains(out, secret[len(secret)-12:]) {
				t.Errorf("SanitizeText(%q) = %q: part of the secret survives", text, out)
			}
			if again := SanitizeText(out, opts); again != out {
				t.Errorf("SanitizeText(%q) = %q, again %q: not a fixed point", text, out, again)
			}
			v, _ := Sanitize(map[string]any{"k": text}, opts)
			if s := v.(map[string]any)["k"].(string); strings.Contains(s, secret[1:12]) {
				t.Errorf("Sanitize of %q = %q", text, s)
			}
		}
	}
}

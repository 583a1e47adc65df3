package result

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxKeyRunes bounds how much of a hostile key an error message repeats.
const maxKeyRunes = 32

// maxPathBytes bounds a rendered path; beyond it the middle is elided,
// keeping the root and the innermost steps, which locate the problem.
const maxPathBytes = 160

// step is one element of a JSON path: an object key or an array index.
type step struct {
	key     string
	index   int
	isIndex bool
}

// formatPath renders steps as a JSONPath such as $.items[2]["odd key"].
// Keys are truncated and escaped because they come from the sandbox.
func formatPath(steps []step) string {
	var b strings.Builder
	b.WriteByte('$')
	for _, s := range steps {
		switch {
		case s.isIndex:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		case isPlainKey(s.key):
			b.WriteByte('.')
			b.WriteString(s.key)
		default:
			b.WriteByte('[')
			b.WriteString(quote(s.key))
			b.WriteByte(']')
		}
	}
	return elide(b.String(), maxPathBytes)
}

// elide shortens s to about n bytes by replacing its middle with "…".
func elide(s string, n int) string {
	if len(s) <= n {
		return s
	}
	head, tail := n/4, len(s)-(n-n/4)
	for head > 0 && !utf8.RuneStart(s[head]) {
		head--
	}
	for tail < len(s) && !utf8.RuneStart(s[tail]) {
		tail++
	}
	return s[:head] + "…" + s[tail:]
}

// isPlainKey reports whether key can be written as .key without quoting.
func isPlainKey(key string) bool {
	if key == "" || len(key) > maxKeyRunes {
		return false
	}
	for i, r := range key {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
		case i > 0 && '0' <= r && r <= '9':
		default:
			return false
		}
	}
	return true
}

// quote truncates s and quotes it with every non-printable rune escaped, so
// an error message cannot carry control sequences, bidi overrides or a long
// payload from the sandbox.
func quote(s string) string {
	if utf8.RuneCountInString(s) > maxKeyRunes {
		n := 0
		for i := range s {
			if n == maxKeyRunes {
				s = s[:i] + "…"
				break
			}
			n++
		}
	}
	return strconv.Quote(s)
}

package result

import (
	"strings"
	"unicode/utf8"

	"github.com/airlock/airlock/broker/result/internal/invisible"
	"github.com/airlock/airlock/broker/result/internal/swar"
	"golang.org/x/text/unicode/norm"
)

// Details of stripped findings.
const (
	detailControl   = "control_character"
	detailEscape    = "escape_sequence"
	detailInvisible = "invisible_character"
	detailInvalid   = "invalid_utf8"
	detailNFKC      = "nfkc"
)

// clean strips what a reader cannot see or a terminal would execute, then
// NFKC-normalizes, so that every later rule looks at the text a person or a
// model actually reads: "ｓｋ-…" is a key and "<｜im_start｜>" a token.
//
// Stripping comes first because NFKC is idempotent only on the stripped
// text: removing a zero-width joiner after normalizing could leave a letter
// and a combining mark side by side that NFKC would then compose.
func clean(s string, ns *notes) string {
	i, inert := scanClean(s)
	if i == len(s) && inert {
		// Nothing to strip, and every character is its own NFKC form
		// whatever its neighbours: the common case, which this avoids
		// copying or even looking at twice.
		return s
	}
	t := s
	if i < len(s) {
		t = strip(s, i, ns)
	}
	// NFKC never yields a character strip removes (TestNFKC_NeverYieldsStrippedRunes
	// checks every rune), so a second round is a safety net that stops at once.
	for range 3 {
		if isNFKC(t) {
			break
		}
		ns.add(KindNormalized, detailNFKC, 1)
		t = norm.NFKC.String(t)
		if u, _ := scanClean(t); u < len(t) {
			t = strip(t, u, ns)
		}
	}
	return t
}

// isNFKC reports whether s is NFKC-normalized. ASCII never combines with a
// following ASCII byte, so the check starts at the last ASCII byte before
// the first non-ASCII one, which could combine with what follows.
func isNFKC(s string) bool {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	if i == len(s) {
		return true
	}
	return norm.NFKC.IsNormalString(s[max(0, i-1):])
}

// scanClean returns the offset of the first byte strip would act on (or
// len(s)), and whether every character before it is inert: printable ASCII
// or one of inertRunes, which NFKC leaves alone next to anything else
// inert. Printable ASCII goes eight bytes at a time.
func scanClean(s string) (int, bool) {
	inert := true
	i := 0
	for i < len(s) {
		if i+8 <= len(s) {
			x := swar.Word(s[i : i+8])
			// No byte >= 0x80, none < 0x20 and none == 0x7f.
			y := x ^ (0x7f * swar.Low)
			if (x|(x-0x20*swar.Low)|(y-swar.Low)&^y)&swar.High == 0 {
				i += 8
				continue
			}
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' || c == 0x7f {
				return i, inert
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || isStrippedRune(r) {
			return i, inert
		}
		if inert && !isInertRune(r) {
			inert = false
		}
		i += n
	}
	return len(s), inert
}

// isInertRune reports whether r is one of the common non-ASCII characters
// of ordinary text that are their own NFKC form and compose with neither
// ASCII nor each other (TestInertRunes checks every pair): Latin-1 letters
// and typographic punctuation.
func isInertRune(r rune) bool {
	switch {
	case 0xc0 <= r && r <= 0xff:
		return true
	case 0x2013 <= r && r <= 0x2014, 0x2018 <= r && r <= 0x2019, 0x201c <= r && r <= 0x201d,
		0x2020 <= r && r <= 0x2022:
		return true
	}
	switch r {
	case 0xa3, 0xa5, 0xa7, 0xa9, 0xae, 0xb0, 0xb1, 0xb6, 0x20ac:
		return true
	}
	return false
}

// strip removes, from offset i on, escape sequences whole, C0 and C1
// controls other than tab and newline, and invisible characters; it
// replaces invalid UTF-8 with U+FFFD. s[:i] must need no stripping.
func strip(s string, i int, ns *notes) string {
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	var nCtl, nEsc, nInv, nBad int
	for i < len(s) {
		// Copy printable ASCII runs without decoding.
		j := i
		for j < len(s) {
			c := s[j]
			if c >= utf8.RuneSelf || c < 0x20 && c != '\t' && c != '\n' || c == 0x7f {
				break
			}
			j++
		}
		b.WriteString(s[i:j])
		if i = j; i == len(s) {
			break
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteRune(utf8.RuneError)
			nBad++
			i++
		case r == 0x1b || isC1Introducer(r):
			i = escapeEnd(s, i)
			nEsc++
		case r < 0x20 || 0x7f <= r && r <= 0x9f:
			i += n
			nCtl++
		case invisible.Is(r):
			i += n
			nInv++
		default:
			b.WriteString(s[i : i+n])
			i += n
		}
	}
	ns.add(KindStripped, detailEscape, nEsc)
	ns.add(KindStripped, detailControl, nCtl)
	ns.add(KindStripped, detailInvisible, nInv)
	ns.add(KindStripped, detailInvalid, nBad)
	return b.String()
}

// isStrippedRune reports whether strip removes r (escape introducers included).
func isStrippedRune(r rune) bool {
	return r < 0x20 && r != '\t' && r != '\n' || 0x7f <= r && r <= 0x9f || invisible.Is(r)
}

// isC1Introducer reports whether r opens an 8-bit escape sequence: CSI,
// OSC, DCS, SOS, PM or APC.
func isC1Introducer(r rune) bool {
	switch r {
	case 0x9b, 0x9d, 0x90, 0x98, 0x9e, 0x9f:
		return true
	}
	return false
}

// escapeEnd returns the offset just past the escape sequence that starts at
// s[i] (ESC or a C1 introducer), following ECMA-48 as terminals do, so that
// no parameter bytes are left behind as visible debris or, worse, as the
// start of a sequence in whatever displays the result next.
func escapeEnd(s string, i int) int {
	r, n := utf8.DecodeRuneInString(s[i:])
	j := i + n
	switch r {
	case 0x9b:
		return csiEnd(s, j)
	case 0x9d, 0x90, 0x98, 0x9e, 0x9f:
		return stringEnd(s, j)
	}
	// ESC.
	if j == len(s) {
		return j
	}
	switch c := s[j]; {
	case c == '[':
		return csiEnd(s, j+1)
	case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_':
		return stringEnd(s, j+1)
	case 0x20 <= c && c <= 0x2f:
		// nF: intermediates, then one final byte.
		for j < len(s) && 0x20 <= s[j] && s[j] <= 0x2f {
			j++
		}
		if j < len(s) && 0x30 <= s[j] && s[j] <= 0x7e {
			j++
		}
		return j
	case 0x30 <= c && c <= 0x7e:
		// Fp, Fe and Fs: a single final byte, such as ESC c (reset).
		return j + 1
	}
	return j
}

// csiEnd skips CSI parameter and intermediate bytes and the final byte. A
// sequence broken off by any other character ends before that character.
func csiEnd(s string, j int) int {
	for j < len(s) && 0x30 <= s[j] && s[j] <= 0x3f {
		j++
	}
	for j < len(s) && 0x20 <= s[j] && s[j] <= 0x2f {
		j++
	}
	if j < len(s) && 0x40 <= s[j] && s[j] <= 0x7e {
		j++
	}
	return j
}

// stringEnd skips the body of an OSC, DCS, SOS, PM or APC string up to and
// including its terminator: BEL, ST (ESC \ or U+009C), CAN or SUB. Another
// ESC ends the string and starts a new sequence. An unterminated string runs
// to the end, as it would swallow the rest of the text on a terminal.
func stringEnd(s string, j int) int {
	for j < len(s) {
		switch s[j] {
		case 0x07, 0x18, 0x1a:
			return j + 1
		case 0x1b:
			if j+1 < len(s) && s[j+1] == '\\' {
				return j + 2
			}
			return j
		case 0xc2:
			if j+1 < len(s) && s[j+1] == 0x9c {
				return j + 2
			}
		}
		j++
	}
	return j
}

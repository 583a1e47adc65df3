package detect

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"unicode"
	"unicode/utf8"
)

// minEncoded is the shortest base64 or hex run that is decoded: twelve
// bytes of text, about two words.
const minEncoded = 16

// minEscaped is the fewest \xHH or %HH escapes, or spaced hex pairs, in a
// row that are decoded.
const minEscaped = 6

// isB64 marks the bytes of the standard and URL-safe base64 alphabets.
var isB64 = func() (t [256]bool) {
	for c := range t {
		t[c] = c < utf8.RuneSelf && isWordByte[c] || c == '+' || c == '/' || c == '-' || c == '_'
	}
	return t
}()

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f' }

// encodedRun decodes the base64 or hex run that starts at v[i], and looks
// at a hex DNS label that carries text out.
func (sc *scanner) encodedRun(v string, i int) {
	if i < sc.encodedEnd {
		return
	}
	j := i
	for j < len(v) && isB64[v[j]] {
		j++
	}
	for k := 0; k < 2 && j < len(v) && v[j] == '='; k++ {
		j++
	}
	sc.encodedEnd = j
	run := v[i:j]
	if len(run) < minEncoded {
		return
	}
	allHex := true
	for k := 0; k < len(run); k++ {
		if !isHex(run[k]) {
			allHex = false
			break
		}
	}
	if allHex && len(run)%2 == 0 {
		if b, err := hex.DecodeString(run); err == nil && isText(b) {
			if j < len(v) && v[j] == '.' {
				sc.found |= Exfiltration // text spelt into a host name
			}
			if sc.decodes(b) {
				sc.found |= Encoded
			}
			return
		}
	}
	if b := decodeBase64(run); b != nil && sc.decodes(b) {
		sc.found |= Encoded
	}
}

// decodeBase64 decodes s in whichever base64 alphabet it uses, with or
// without padding, ignoring a trailing partial byte. It returns nil when s
// is not base64 of text.
func decodeBase64(s string) []byte {
	s = strings.TrimRight(s, "=")
	if len(s)%4 == 1 {
		s = s[:len(s)-1]
	}
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	b, err := enc.DecodeString(s)
	if err != nil || !isText(b) {
		return nil
	}
	return b
}

// isText reports whether b reads as text: valid UTF-8, nearly all of it
// printable, with letters and a space between words.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	var runes, bad, letters, spaces int
	for _, r := range string(b) {
		runes++
		switch {
		case r == ' ':
			spaces++
		case unicode.IsLetter(r):
			letters++
		case r == '\n' || r == '\t' || unicode.IsPrint(r):
		default:
			bad++
		}
	}
	return letters >= 4 && (spaces > 0 || letters >= 12) && bad*20 <= runes
}

// decodes reports whether decoded text holds instructions, itself or in a
// further layer of encoding.
func (sc *scanner) decodes(b []byte) bool {
	return scan(string(b), sc.depth+1)&(instructions|Encoded) != 0
}

// escapedRun decodes a run of \xHH or %HH escapes starting at v[i], which
// holds the escape's first byte.
func (sc *scanner) escapedRun(v string, i int, lead byte) {
	if i < sc.encodedEnd || sc.depth >= maxDepth {
		return
	}
	var b []byte
	j := i
	for {
		switch {
		case lead == '\\' && j+3 < len(v) && v[j] == '\\' && v[j+1]|0x20 == 'x' && isHex(v[j+2]) && isHex(v[j+3]):
			b = append(b, unhex(v[j+2])<<4|unhex(v[j+3]))
			j += 4
			continue
		case lead == '%' && j+2 < len(v) && v[j] == '%' && isHex(v[j+1]) && isHex(v[j+2]):
			b = append(b, unhex(v[j+1])<<4|unhex(v[j+2]))
			j += 3
			continue
		}
		break
	}
	sc.encodedEnd = j
	if len(b) >= minEscaped && isText(b) && sc.decodes(b) {
		sc.found |= Encoded
	}
}

// spacedHex decodes a run of hex pairs separated by single spaces, as a hex
// dump prints them, starting at v[i].
func (sc *scanner) spacedHex(v string, i int) {
	if i < sc.encodedEnd {
		return
	}
	var b []byte
	j := i
	for j+1 < len(v) && isHex(v[j]) && isHex(v[j+1]) && (j+2 == len(v) || !isB64[v[j+2]]) {
		b = append(b, unhex(v[j])<<4|unhex(v[j+1]))
		j += 2
		if j < len(v) && v[j] == ' ' {
			j++
		}
	}
	sc.encodedEnd = j
	if len(b) >= minEscaped && isText(b) && sc.decodes(b) {
		sc.found |= Encoded
	}
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c | 0x20 - 'a' + 10
}

// rot13 maps ASCII letters thirteen places on.
func rot13(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z':
			return 'a' + (r-'a'+13)%26
		case 'A' <= r && r <= 'Z':
			return 'A' + (r-'A'+13)%26
		}
		return r
	}, s)
}

func encodedRules() {
	// ROT13 is found by its name or by the ROT13 of words that injected
	// text rarely does without: ignore, disregard, forget, instructions,
	// prompt, system, previous.
	r := &rule{cat: Encoded, fn: func(sc *scanner, v string, i int) bool {
		if sc.depth >= maxDepth {
			return false
		}
		w := v[max(0, i-80):min(len(v), i+window)]
		return scan(rot13(w), sc.depth+1)&instructions != 0
	}}
	onWords("rot13 vtaber qvfertneq sbetrg vafgehpgvbaf cebzcg flfgrz cerivbhf", r)
	onPunct('\\', &rule{cat: Encoded, fn: func(sc *scanner, v string, i int) bool {
		sc.escapedRun(v, i, '\\')
		return false
	}})
	onPunct('%', &rule{cat: Encoded, fn: func(sc *scanner, v string, i int) bool {
		sc.escapedRun(v, i, '%')
		return false
	}})
}

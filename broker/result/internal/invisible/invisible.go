// Package invisible knows the characters that change what text means
// without being seen. The sanitizer strips them, and the injection
// detector reads through them, so both use this one list.
package invisible

import "unicode"

// Is reports whether r is a character that changes what text
// means without being seen: Unicode tags (which can spell out hidden ASCII),
// bidi controls (which reorder what is displayed), zero-width and other
// format characters, variation selectors (which can encode hidden bytes) and
// blank fillers.
func Is(r rune) bool {
	switch {
	case r < 0xad:
		return false
	case r == 0xad, // soft hyphen
		r == 0x61c,               // Arabic letter mark
		r == 0x115f, r == 0x1160, // Hangul fillers
		r == 0x17b4, r == 0x17b5, // Khmer inherent vowels
		0x180b <= r && r <= 0x180f, // Mongolian variation selectors, vowel separator
		0x200b <= r && r <= 0x200f, // zero-width space, joiners, LRM, RLM
		0x202a <= r && r <= 0x202e, // bidi embeddings and overrides
		0x2060 <= r && r <= 0x206f, // word joiner, invisible operators, bidi isolates
		r == 0x3164, r == 0xffa0,   // Hangul fillers
		0xfe00 <= r && r <= 0xfe0f,   // variation selectors
		r == 0xfeff,                  // zero-width no-break space (BOM)
		0xfff0 <= r && r <= 0xfffb,   // interlinear annotation
		0x1bca0 <= r && r <= 0x1bca3, // shorthand format controls
		0x1d173 <= r && r <= 0x1d17a, // musical format controls
		0xe0000 <= r && r <= 0xe0fff: // tags and variation selectors supplement
		return true
	}
	return unicode.Is(unicode.Cf, r)
}

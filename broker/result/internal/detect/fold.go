package detect

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/airlock/airlock/broker/result/internal/invisible"
)

// fold returns s as a reader would see it once the tricks that keep words
// from matching are undone: invisible characters and escape sequences
// dropped, Unicode tags read as the ASCII they hide, fullwidth and styled
// letters made plain, homoglyphs in Latin words made Latin, digits in
// leetspeak made letters, and words split by hyphens, dots or spaces
// joined.
//
// An invisible character may hide inside a word or stand for the space
// between two; spaced says which reading to take.
func fold(s string, spaced bool) string {
	rs := plainRunes(s, spaced)
	rs = foldWords(rs)
	return joinSplit(rs)
}

// plainRunes drops what is not seen and makes compatibility forms plain.
func plainRunes(s string, spaced bool) []rune {
	rs := make([]rune, 0, len(s))
	var b [utf8.UTFMax]byte
	for i := 0; i < len(s); {
		if c := s[i]; ' ' <= c && c < 0x7f || c == '\n' || c == '\t' {
			rs = append(rs, rune(c))
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == 0x1b:
			i = escapeEnd(s, i+1)
			continue
		case r < ' ' && r != '\n' && r != '\t' || 0x7f <= r && r < 0xa0:
		case 0xe0020 <= r && r <= 0xe007e:
			rs = append(rs, r-0xe0000) // a tag spells out hidden ASCII
		case invisible.Is(r):
			if spaced {
				rs = append(rs, ' ')
			}
		case r >= utf8.RuneSelf && unicode.Is(unicode.Zs, r):
			rs = append(rs, ' ')
		case r >= utf8.RuneSelf:
			k := utf8.EncodeRune(b[:], r)
			if d := norm.NFKC.Properties(b[:k]).Decomposition(); d != nil && isASCIIAlnum(d) {
				for _, c := range d {
					rs = append(rs, rune(c))
				}
			} else {
				rs = append(rs, r)
			}
		default:
			rs = append(rs, r)
		}
		i += n
	}
	return rs
}

// escapeEnd skips an escape sequence whose ESC precedes i.
func escapeEnd(s string, i int) int {
	if i < len(s) && s[i] == '[' {
		for i++; i < len(s); i++ {
			if 0x40 <= s[i] && s[i] <= 0x7e {
				return i + 1
			}
		}
		return i
	}
	return min(len(s), i+1)
}

func isASCIIAlnum(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf || !isWordByte[c] {
			return false
		}
	}
	return len(b) > 0
}

// homoglyphs are Cyrillic and Greek letters drawn like Latin ones.
var homoglyphs = map[rune]rune{
	'а': 'a', 'в': 'b', 'е': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'с': 'c', 'т': 't',
	'у': 'y', 'х': 'x', 'і': 'i', 'ј': 'j', 'ѕ': 's', 'ԁ': 'd', 'ӏ': 'l', 'ԛ': 'q', 'ԝ': 'w', 'ɡ': 'g',
	'А': 'A', 'В': 'B', 'Е': 'E', 'К': 'K', 'М': 'M', 'Н': 'H', 'О': 'O', 'Р': 'P', 'С': 'C', 'Т': 'T',
	'У': 'Y', 'Х': 'X', 'І': 'I', 'Ј': 'J', 'Ѕ': 'S',
	'α': 'a', 'ο': 'o', 'ε': 'e', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ρ': 'p', 'τ': 't', 'υ': 'u', 'χ': 'x',
	'Α': 'A', 'Β': 'B', 'Ε': 'E', 'Ζ': 'Z', 'Η': 'H', 'Ι': 'I', 'Κ': 'K', 'Μ': 'M', 'Ν': 'N', 'Ο': 'O',
	'Ρ': 'P', 'Τ': 'T', 'Υ': 'Y', 'Χ': 'X',
	// Latin small capitals and look-alike letters, which NFKC leaves alone.
	'ᴀ': 'a', 'ʙ': 'b', 'ᴄ': 'c', 'ᴅ': 'd', 'ᴇ': 'e', 'ꜰ': 'f', 'ɢ': 'g', 'ʜ': 'h', 'ɪ': 'i', 'ᴊ': 'j',
	'ᴋ': 'k', 'ʟ': 'l', 'ᴍ': 'm', 'ɴ': 'n', 'ᴏ': 'o', 'ᴘ': 'p', 'ʀ': 'r', 'ꜱ': 's', 'ᴛ': 't', 'ᴜ': 'u',
	'ᴠ': 'v', 'ᴡ': 'w', 'ʏ': 'y', 'ᴢ': 'z', 'ı': 'i', 'ɑ': 'a', 'ɩ': 'i', 'ѵ': 'v', 'ɵ': 'o',
}

// leet maps the digits and signs of leetspeak to the letters they stand
// for; the rest of ASCII maps to 0.
var leet = func() (t [utf8.RuneSelf]rune) {
	for c, l := range map[byte]rune{'0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '8': 'b', '@': 'a', '$': 's'} {
		t[c] = l
	}
	return t
}()

// foldWords makes homoglyphs Latin in words that also hold Latin letters,
// and leetspeak digits letters in words that also hold letters.
func foldWords(rs []rune) []rune {
	for i := 0; i < len(rs); {
		if !inWord(rs[i]) {
			i++
			continue
		}
		j := i
		latin, glyph, letter, digit := false, false, false, false
		for ; j < len(rs) && inWord(rs[j]); j++ {
			r := rs[j]
			switch {
			case r < utf8.RuneSelf:
				if isLetter(byte(r)) {
					latin, letter = true, true
				} else if leet[r] != 0 {
					digit = true
				}
			case homoglyphs[r] != 0:
				glyph, letter = true, true
			case unicode.IsLetter(r):
				letter = true
			}
		}
		for k := i; k < j; k++ {
			r := rs[k]
			if r < utf8.RuneSelf {
				if l := leet[r]; l != 0 && letter && digit {
					rs[k] = l
				}
			} else if g := homoglyphs[r]; g != 0 && latin && glyph {
				rs[k] = g
			}
		}
		i = j
	}
	return rs
}

// inWord reports whether r can be part of a word, leetspeak included.
func inWord(r rune) bool {
	if r < utf8.RuneSelf {
		return isWordByte[r] || r == '@' || r == '$'
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

// isLetterRune is unicode.IsLetter with ASCII looked at first.
func isLetterRune(r rune) bool {
	if r < utf8.RuneSelf {
		return isLetter(byte(r))
	}
	return unicode.IsLetter(r)
}

// joinSplit joins words split into pieces: by hyphens or underscores when
// a piece is short ("Ig-nore", "c-u-r-l"), by dots when every piece is one
// letter ("i.g.n.o.r.e"), and by single spaces when at least three letters
// stand alone in a row ("i g n o r e  a l l"), where a wider gap then
// separates words.
func joinSplit(rs []rune) string {
	var out strings.Builder
	out.Grow(len(rs))
	var pieces [][]rune
	var seps []rune
	var join []bool
	for i := 0; i < len(rs); {
		if !isLetterRune(rs[i]) {
			writeRunes(&out, rs[i:i+1])
			i++
			continue
		}
		// A compound: letter runs joined by single separators.
		pieces, seps = pieces[:0], seps[:0]
		j := i
		// Only a piece of one letter or a hyphen or underscore can join
		// pieces; ordinary prose has neither, and is written as it is.
		joins := false
		for {
			k := j
			for k < len(rs) && isLetterRune(rs[k]) {
				k++
			}
			pieces = append(pieces, rs[j:k])
			joins = joins || k-j == 1
			if k+1 < len(rs) && isSplitter(rs[k]) && isLetterRune(rs[k+1]) {
				seps = append(seps, rs[k])
				joins = joins || rs[k] == '-' || rs[k] == '_'
				j = k + 1
				continue
			}
			j = k
			break
		}
		if joins {
			join = writeCompound(&out, pieces, seps, join[:0])
		} else {
			writeRunes(&out, rs[i:j])
		}
		i = j
	}
	return out.String()
}

// writeRunes writes rs to out, ASCII a byte at a time.
func writeRunes(out *strings.Builder, rs []rune) {
	for _, r := range rs {
		if r < utf8.RuneSelf {
			out.WriteByte(byte(r))
		} else {
			out.WriteRune(r)
		}
	}
}

func isSplitter(r rune) bool {
	return r == '-' || r == '_' || r == '.' || r == ' ' || r == '*' ||
		r == '|' || r == '/' || r == '+' || r == '~' || r == ',' || r == ':' || r == '·' || r == '•' || r == '‧'
}

// writeCompound writes pieces, dropping the separators that split a word.
// join is scratch space, returned for reuse.
func writeCompound(out *strings.Builder, pieces [][]rune, seps []rune, join []bool) []bool {
	// A chain of pieces joined by hyphens or underscores is one word if
	// any of its pieces is short: "in-struc-tions".
	for range seps {
		join = append(join, false)
	}
	for p := 0; p < len(seps); {
		if seps[p] != '-' && seps[p] != '_' {
			p++
			continue
		}
		q, short := p, len(pieces[p]) <= 3
		for ; q < len(seps) && (seps[q] == '-' || seps[q] == '_'); q++ {
			short = short || len(pieces[q+1]) <= 3
		}
		for k := p; k < q; k++ {
			join[k] = short
		}
		p = q
	}
	// Single letters joined by the same separator, other than a hyphen,
	// are one word if there are at least three of them: "i g n o r e",
	// "i.g.n.o.r.e", "i|g|n|o|r|e".
	for p := 0; p < len(seps); {
		if seps[p] == '-' || seps[p] == '_' || len(pieces[p]) != 1 || len(pieces[p+1]) != 1 {
			p++
			continue
		}
		q := p
		for q < len(seps) && seps[q] == seps[p] && len(pieces[q+1]) == 1 {
			q++
		}
		if q-p+1 >= 3 {
			for k := p; k < q; k++ {
				join[k] = true
			}
		}
		p = q
	}
	for p := 0; p < len(pieces); p++ {
		for _, r := range pieces[p] {
			out.WriteRune(r)
		}
		if p == len(seps) {
			break
		}
		if !join[p] {
			out.WriteRune(seps[p])
		}
	}
	return join
}

// foldsRune reports whether fold would change the rune r at v[i:i+n] in a
// way that can hide a word: an invisible or control character, a Unicode
// space, a compatibility form such as a fullwidth letter, or a homoglyph
// next to a Latin letter.
func foldsRune(r rune, v string, i, n int) bool {
	switch {
	case r < 0xa0:
		return true // C1 control
	case invisible.Is(r), unicode.Is(unicode.Zs, r):
		return true
	case homoglyphs[r] != 0:
		return i > 0 && isLetter(v[i-1]) || i+n < len(v) && isLetter(v[i+n])
	}
	if r >= 0xff01 && r <= 0xff5e || r >= 0x1d400 && r <= 0x1d7ff || r >= 0x2460 && r <= 0x24ff || r >= 0x1f100 && r <= 0x1f1ff {
		return true // fullwidth, mathematical, enclosed letters
	}
	return false
}

package result

import (
	"html"
	"strings"
	"unicode"
	"unicode/utf8"
)

// detailCharRef is the finding detail of a character reference that was
// broken.
const detailCharRef = "char_ref"

// maxRefName bounds the letters of a named reference looked at: HTML's
// longest is 32 ("CounterClockwiseContourIntegral;").
const maxRefName = 32

// breakCharRefs defuses the character references a renderer would decode
// into ASCII: "https&#58;//evil", "&#x6A;avascript:", "https&colon;&sol;&sol;"
// and "java&Tab;script:" are links to a browser and to CommonMark (which
// decodes references in link destinations), yet hold no literal ':' or
// '/' for neutralizeLinks to find. Each such reference gets its '&'
// escaped as "&amp;", so one decoding, which is what a renderer does,
// shows the reference as text. Named, decimal, hex and zero-padded forms
// are found, with or without the ';' that HTML lets legacy names and
// numbers omit.
//
// References that decode to text no link is spelled with are left alone
// (isTextRef): "a &lt; b" and "&copy; 2026" are common in prose. Letters
// are not: after a literal "https:" they spell a host, in any script.
func breakCharRefs(s string, ns *notes) string {
	if strings.IndexByte(s, '&') < 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '&' {
			continue
		}
		end := refEnd(s, i)
		if end <= i+1 {
			continue
		}
		dec := html.UnescapeString(s[i:end])
		if dec == s[i:end] {
			continue
		}
		if r, _ := utf8.DecodeRuneInString(dec); isTextRef(r) {
			continue
		}
		if b.Len() == 0 {
			b.Grow(len(s) + 16)
		}
		b.WriteString(s[last:i])
		b.WriteString("&amp;")
		last = i + 1
		ns.add(KindNeutralized, detailCharRef, 1)
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// refEnd returns the end of the character reference that may start at
// s[i] == '&': "&#" and digits (hex after x or X), or '&' and up to
// maxRefName letters and digits, then an optional ';'. It returns i+1
// when no reference can start there.
func refEnd(s string, i int) int {
	j := i + 1
	if j < len(s) && s[j] == '#' {
		j++
		hex := j < len(s) && (s[j] == 'x' || s[j] == 'X')
		if hex {
			j++
		}
		start := j
		for j < len(s) && (isDigit(s[j]) || hex && isHexLetter(s[j])) {
			j++
		}
		if j == start {
			return i + 1
		}
	} else {
		for j < len(s) && j-i-1 < maxRefName && isAlnumByte(s[j]) {
			j++
		}
		if j == i+1 {
			return i + 1
		}
	}
	if j < len(s) && s[j] == ';' {
		j++
	}
	return j
}

func isHexLetter(c byte) bool { return 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
func isAlnumByte(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// splitSchemes are the schemes that a scheme split by ASCII tab, line feed
// or carriage return still spells for a browser, which removes those
// characters from a URL before parsing it: href="java&#9;script:…" and
// href="java<TAB>script:…" both run.
var splitSchemes = []string{"javascript", "vbscript", "data", "http", "https", "file", "ftp", "ws", "wss"}

// breakSplitSchemes neutralizes the ':' after a scheme that tabs or line
// breaks split ("java\tscript:", "ht\ntps://"), which neutralizeLinks,
// reading the letters just before the ':', would not recognize. The ':'
// becomes "[:]", as neutralizeLinks writes it.
func breakSplitSchemes(s string, ns *notes) string {
	if !strings.ContainsAny(s, "\t\n\r") || strings.IndexByte(s, ':') < 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); i++ {
		k := strings.IndexByte(s[i:], ':')
		if k < 0 {
			break
		}
		i += k
		start, split := i, false
		for start > 0 && i-start < 64 {
			c := s[start-1]
			if c == '\t' || c == '\n' || c == '\r' {
				split = true
			} else if !isAlnumByte(c) && c != '+' && c != '-' && c != '.' {
				break
			}
			start--
		}
		if !split {
			continue
		}
		scheme := strings.ToLower(strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return -1
			}
			return r
		}, s[start:i]))
		found := false
		for _, sc := range splitSchemes {
			if strings.HasSuffix(scheme, sc) {
				found = true
				break
			}
		}
		if !found {
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString("[:]")
		last = i + 1
		ns.add(KindNeutralized, detailScriptURL, 1)
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// isTextRef reports whether r, decoded from a reference, is text that no
// scheme, separator or host is spelled with: the HTML specials, the
// no-break space, and symbols, dashes and quotation marks. Letters,
// digits, marks and other punctuation (IDNA maps the ideographic full
// stop to '.') are not.
func isTextRef(r rune) bool {
	switch r {
	case '&', '<', '>', '"', '\'', '\u00a0':
		return true
	}
	return r >= utf8.RuneSelf && r != utf8.RuneError &&
		unicode.In(r, unicode.Sc, unicode.Sm, unicode.So, unicode.Pd, unicode.Pi, unicode.Pf)
}

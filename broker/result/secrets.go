package result

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Details of redacted findings for known secrets.
const detailKnownSecret = "known_secret"

// gramLen is the length of the substrings the secret filter hashes.
const gramLen = 4

// minEmbeddedBase64 is the shortest base64 fragment of a secret matched
// inside a larger base64 text; shorter fragments would match by chance.
const minEmbeddedBase64 = 8

// secretMatcher finds every known secret, in every encoding, in one pass.
// Scanning for each of dozens of encodings in turn would read a 1 MiB
// result dozens of times. Instead every variant's 4-byte substrings go
// into a hash filter, and the text is probed only every step bytes: a
// variant of length L >= step+3 always covers a probe position, where its
// substring at that offset is in the filter. Hits are confirmed exactly.
//
// It is immutable once built.
type secretMatcher struct {
	long   []string // variants of at least gramLen bytes
	short  []string // shorter variants, found with strings.Index
	step   int
	filter [1 << 16 / 64]uint64
	grams  map[uint32][]gramRef
}

// gramRef says that variant v has the gram at offset off.
type gramRef struct {
	v, off int32
}

// newSecretMatcher returns nil when there is nothing to find.
func newSecretMatcher(secrets [][]byte) *secretMatcher {
	seen := map[string]bool{}
	m := &secretMatcher{grams: map[uint32][]gramRef{}}
	for _, sec := range secrets {
		for _, v := range secretVariants(sec) {
			if v == "" || seen[v] {
				continue
			}
			seen[v] = true
			if len(v) < gramLen {
				m.short = append(m.short, v)
				continue
			}
			m.long = append(m.long, v)
		}
	}
	if len(m.long) == 0 && len(m.short) == 0 {
		return nil
	}
	minLen := 0
	for i, v := range m.long {
		if minLen == 0 || len(v) < minLen {
			minLen = len(v)
		}
		for off := 0; off+gramLen <= len(v); off++ {
			g := gramAt(v, off)
			h := hashGram(g)
			m.filter[h>>6] |= 1 << (h & 63)
			m.grams[g] = append(m.grams[g], gramRef{v: int32(i), off: int32(off)})
		}
	}
	m.step = max(1, minLen-gramLen+1)
	return m
}

// secretVariants lists the forms a secret can take in text: itself, its
// NFKC form, base64 (standard and URL-safe, padded or not, and the part of
// it that survives when the secret sits inside a larger encoded text), hex
// in either case, and URL-encoding as a query or a path.
func secretVariants(sec []byte) []string {
	if len(sec) == 0 {
		return nil
	}
	s := string(sec)
	vs := []string{s}
	if utf8.ValidString(s) {
		vs = append(vs, norm.NFKC.String(s))
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		vs = append(vs, enc.EncodeToString(sec))
	}
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		for off := range 3 {
			if v := embeddedBase64(enc, sec, off); len(v) >= minEmbeddedBase64 {
				vs = append(vs, v)
			}
		}
	}
	h := hex.EncodeToString(sec)
	vs = append(vs, h, strings.ToUpper(h), url.QueryEscape(s), url.PathEscape(s))
	return vs
}

// embeddedBase64 returns the base64 characters that depend only on sec when
// sec starts off bytes into a larger encoded text (off in 0..2): each
// character holds 6 bits, so those straddling the edges of sec also depend
// on its neighbours and are left out.
func embeddedBase64(enc *base64.Encoding, sec []byte, off int) string {
	buf := make([]byte, off+len(sec)+2)
	copy(buf[off:], sec)
	full := enc.EncodeToString(buf)
	first := (8*off + 5) / 6         // first character whose bits start inside sec
	last := (8*(off+len(sec)))/6 - 1 // last character whose bits end inside sec
	if last < first {
		return ""
	}
	return full[first : last+1]
}

func gramAt(s string, i int) uint32 {
	_ = s[i+3]
	return uint32(s[i]) | uint32(s[i+1])<<8 | uint32(s[i+2])<<16 | uint32(s[i+3])<<24
}

func hashGram(g uint32) uint32 { return (g * 0x9e3779b1) >> 16 }

// redact replaces every occurrence of a known secret with RedactedMarker.
// Overlapping occurrences are merged, so no fragment of one survives next
// to the marker that replaced another. Text inside an existing marker is
// never matched, so a secret that happens to spell part of the marker
// cannot make a second pass change the output.
func (m *secretMatcher) redact(s string, ns *notes, buf *buffers) string {
	if m == nil || len(s) == 0 {
		return s
	}
	found := buf.spans[:0]
	defer func() { buf.spans = found[:0] }()
	for q := 0; q+gramLen <= len(s); q += m.step {
		g := gramAt(s, q)
		if h := hashGram(g); m.filter[h>>6]&(1<<(h&63)) == 0 {
			continue
		}
		for _, ref := range m.grams[g] {
			v := m.long[ref.v]
			p := q - int(ref.off)
			if p >= 0 && p+len(v) <= len(s) && s[p:p+len(v)] == v {
				found = append(found, span{p, p + len(v)})
			}
		}
	}
	for _, v := range m.short {
		for i := 0; ; {
			j := strings.Index(s[i:], v)
			if j < 0 {
				break
			}
			found = append(found, span{i + j, i + j + len(v)})
			i += j + 1
		}
	}
	if len(found) == 0 {
		return s
	}
	found = slices.DeleteFunc(found, func(sp span) bool { return insideMarker(s, sp) })
	merged := mergeSpans(found)
	if len(merged) == 0 {
		return s
	}
	ns.add(KindRedacted, detailKnownSecret, len(merged))
	return replaceSpans(s, merged, RedactedMarker)
}

// span is a half-open byte range [start, end).
type span struct{ start, end int }

// mergeSpans sorts spans and merges those that overlap or touch.
func mergeSpans(sp []span) []span {
	slices.SortFunc(sp, func(a, b span) int { return a.start - b.start })
	out := sp[:0]
	for _, x := range sp {
		if n := len(out); n > 0 && x.start <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, x.end)
			continue
		}
		out = append(out, x)
	}
	return out
}

// insideMarker reports whether sp lies within an occurrence of
// RedactedMarker in s.
func insideMarker(s string, sp span) bool {
	if sp.end-sp.start > len(RedactedMarker) {
		return false
	}
	for o := 0; o < len(RedactedMarker); o++ {
		st := sp.start - o
		if st >= 0 && st+len(RedactedMarker) >= sp.end && st+len(RedactedMarker) <= len(s) &&
			s[st:st+len(RedactedMarker)] == RedactedMarker {
			return true
		}
	}
	return false
}

// replaceSpans replaces each of the sorted, disjoint spans with repl.
func replaceSpans(s string, sp []span, repl string) string {
	var b strings.Builder
	b.Grow(len(s) + len(sp)*len(repl))
	last := 0
	for _, x := range sp {
		b.WriteString(s[last:x.start])
		b.WriteString(repl)
		last = x.end
	}
	b.WriteString(s[last:])
	return b.String()
}

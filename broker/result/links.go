package result

import (
	"slices"
	"strings"
)

// Details of neutralized findings.
const (
	detailLink      = "link"
	detailImage     = "image_link"
	detailDataURL   = "data_url"
	detailScriptURL = "script_url"
)

// Kinds of link found by scanLinks.
const (
	linkScheme   = iota // scheme:… with a host: https://h, http:h, foo://h
	linkRelative        // a protocol-relative //h after '(', '=', ': ' or a quote
	linkWWW             // www.h, which Markdown renderers autolink
	linkData            // data:type,…
	linkScript          // javascript:, vbscript:
)

// link is one URL scanLinks found. For the kinds with a host, start..auth.end
// is the part that decides where the link goes.
type link struct {
	kind   int
	start  int  // scheme, first slash, or "www"
	sep    int  // the ':' after the scheme; -1 for linkRelative and linkWWW
	scheme span // linkScheme only: the letters just before sep
	slash  span // linkRelative only: the slashes
	auth   span // authority: userinfo, host and port
	host   span // host within auth
	name   string
	valid  bool // host is a syntactically plain host name or IP literal
}

// scanLinks calls fn for every link in s, in no particular order.
//
// It recognises more than any one renderer does, because the result may be
// shown as Markdown, HTML or plain text, or read by a model that will follow
// any address: browsers accept http:evil, https:/\evil and backslashes, and
// Markdown and HTML targets accept //evil. Only the scheme, separator and
// host are looked at; the path cannot move a link to another host.
func scanLinks(s string, fn func(link)) {
	var memo runMemo
	// One IndexByte pass per trigger is several times faster than looking
	// at every byte; fn's callers do not depend on the order.
	for i := 0; ; i++ {
		k := strings.IndexByte(s[i:], ':')
		if k < 0 {
			break
		}
		i += k
		colonLink(s, i, &memo, fn)
	}
	for i := 0; ; i++ {
		k := strings.IndexByte(s[i:], '(')
		if k < 0 {
			break
		}
		i += k
		// Markdown targets "](//host)" and CSS "url(//host)", and any
		// other "(//": what precedes the '(' may be "[.]" by the next pass.
		relativeLink(s, i+1, &memo, fn)
	}
	for i := 0; ; i++ {
		k := strings.IndexByte(s[i:], '=')
		if k < 0 {
			break
		}
		i += k
		relativeLink(s, i+1, &memo, fn)
	}
	for i := 0; ; i++ {
		k := strings.IndexByte(s[i:], '.')
		if k < 0 {
			break
		}
		i += k
		if w := i - 3; w >= 0 && equalFoldASCII(s[w:i], "www") && i+1 < len(s) && isAlnum(s[i+1]) {
			if w > 0 {
				switch p := s[w-1]; {
				case isAlnum(p), p == '.', p == '-', p == '_', p == '@', p == '/', p == '\\':
					continue
				}
			}
			l := link{kind: linkWWW, start: w, sep: -1}
			l.auth, l.host, l.name, l.valid = authorityAt(s, w, &memo)
			fn(l)
		}
	}
}

// specialSchemes are those for which browsers find a host even without "//".
var specialSchemes = []string{"http", "https", "ftp", "ws", "wss"}

// colonLink handles the ':' at k.
func colonLink(s string, k int, memo *runMemo, fn func(link)) {
	switch scriptOrData(s, k) {
	case linkScript:
		fn(link{kind: linkScript, start: k, sep: k})
		return
	case linkData:
		fn(link{kind: linkData, start: k, sep: k})
		return
	}
	if k+1 < len(s) && (s[k+1] == ' ' || s[k+1] == '\t' || s[k+1] == '<') {
		// A Markdown reference definition, "[label]: //host". Any ':'
		// will do: what precedes it may be "[.]" by the next pass.
		relativeLink(s, k+1, memo, fn)
		return
	}
	p := k + 1
	for p < len(s) && (s[p] == '/' || s[p] == '\\') {
		p++
	}
	hostNext := p < len(s) && (isAlnum(s[p]) || s[p] >= 0x80 || ipLiteralAt(s, p))
	if p-(k+1) < 2 && !hostNext {
		return // the common case: "note: text", "10:30"
	}
	j := k
	for j > 0 && k-j < 64 && class[s[j-1]]&clsScheme != 0 {
		j--
	}
	// A special scheme is recognised by the letters just before the ':',
	// as "x.http:" and "x[.]http:" must be treated alike.
	lj := k
	for lj > j && isAlpha(s[lj-1]) {
		lj--
	}
	special := false
	for _, sc := range specialSchemes {
		if equalFoldASCII(s[lj:k], sc) {
			special = true
		}
	}
	if p-(k+1) < 2 && !special {
		return
	}
	l := link{kind: linkScheme, start: j, sep: k, scheme: span{lj, k}}
	l.auth, l.host, l.name, l.valid = authorityAt(s, p, memo)
	fn(l)
}

// ipLiteralAt reports whether an IPv6 literal such as "[::1]" starts at p:
// hex digits, colons and dots, with at least one digit. The markers the
// sanitizer writes, "[:]", "[.]" and "[REDACTED]", are not literals.
func ipLiteralAt(s string, p int) bool {
	if p >= len(s) || s[p] != '[' {
		return false
	}
	digit := false
	for q := p + 1; q < len(s) && q-p < 64; q++ {
		switch c := s[q]; {
		case c == ']':
			return digit
		case isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f':
			digit = true
		case c != ':' && c != '.':
			return false
		}
	}
	return false
}

// scriptOrData reports whether the ':' at k ends a javascript:-like scheme,
// or a data: scheme followed by a media type or ',': tabs and newlines
// inside the scheme are skipped, as browsers remove them from URLs.
func scriptOrData(s string, k int) int {
	// Every such scheme ends in "script" or "data".
	if k == 0 {
		return -1
	}
	if c := s[k-1] | 0x20; c != 't' && c != 'a' && s[k-1] != '\t' && s[k-1] != '\n' {
		return -1
	}
	var buf [10]byte
	n := len(buf)
	for p := k - 1; p >= 0 && n > 0; p-- {
		c := s[p]
		if c == '\t' || c == '\n' {
			continue
		}
		if !isAlpha(c) {
			break
		}
		n--
		buf[n] = lowerASCII(c)
	}
	letters := buf[n:]
	switch {
	case hasSuffix(letters, "javascript"), hasSuffix(letters, "vbscript"), hasSuffix(letters, "livescript"):
		return linkScript
	case hasSuffix(letters, "data"):
		p := runEnd(s, k+1, clsScheme)
		if p < len(s) && (s[p] == '/' && p > k+1 || s[p] == ',' || s[p] == ';') {
			return linkData
		}
	}
	return -1
}

// relativeLink looks for a protocol-relative link target at p: optional
// white space (CommonMark allows a line ending before a destination, HTML
// white space around '='), an optional '<' or quote, then two or more
// slashes, which a browser still reads as two with tabs or line breaks
// between them.
func relativeLink(s string, p int, memo *runMemo, fn func(link)) {
	p = skipURLSpace(s, p)
	if p < len(s) && (s[p] == '<' || s[p] == '"' || s[p] == '\'') {
		p = skipURLSpace(s, p+1)
	}
	a, slashes := p, 0
	for p < len(s) && (s[p] == '/' || s[p] == '\\' || slashes > 0 && (s[p] == '\t' || s[p] == '\n' || s[p] == '\r')) {
		if s[p] == '/' || s[p] == '\\' {
			slashes++
		}
		p++
	}
	if slashes < 2 {
		return
	}
	l := link{kind: linkRelative, start: a, sep: -1, slash: span{a, p}}
	l.auth, l.host, l.name, l.valid = authorityAt(s, p, memo)
	if l.auth.end == l.auth.start {
		return
	}
	fn(l)
}

// maxHost is the longest DNS name; a longer host is never valid.
const maxHost = 253

// runMemo remembers the last run of authority bytes scanned: s[from:end]
// holds no byte that ends an authority, and at and colon are the last '@'
// and ':' in it (or -1). Links nest ("www.a:www.a:…" is a link at every
// "www."), and without the memo each would rescan the rest of the run.
type runMemo struct {
	from, end, at, colon int
	ok                   bool
}

// run returns the end of the run of authority bytes at p, and the last '@'
// and ':' in s[p:end], or -1.
func (m *runMemo) run(s string, p int) (end, at, colon int) {
	if !m.ok || p < m.from || p > m.end {
		*m = runMemo{from: p, end: p, at: -1, colon: -1, ok: true}
		for m.end < len(s) && !isAuthorityEnd(s[m.end]) {
			switch s[m.end] {
			case '@':
				m.at = m.end
			case ':':
				m.colon = m.end
			}
			m.end++
		}
	}
	at, colon = m.at, m.colon
	if at < p {
		at = -1
	}
	if colon < p {
		colon = -1
	}
	return m.end, at, colon
}

// authorityAt parses the authority at p: it runs to the first byte that
// cannot be part of one; the host follows the last '@' and precedes a port.
// name is the host lowercased, without brackets or a trailing dot, and
// valid says whether it is a plain DNS name or IP literal with a numeric
// port: anything else (percent-escapes, odd characters, Unicode) is never
// allowed, since the allowlist cannot vouch for how a client decodes it.
func authorityAt(s string, p int, m *runMemo) (auth, host span, name string, valid bool) {
	ip := p // end of an IP literal at p
	if p < len(s) && s[p] == '[' {
		q := p + 1
		for q < len(s) && q-p < 64 && (isAlnum(s[q]) || s[q] == ':' || s[q] == '.' || s[q] == '%' || s[q] == '-' || s[q] == '_') {
			q++
		}
		if q < len(s) && s[q] == ']' {
			ip = q + 1
		}
	}
	end, at, colon := m.run(s, ip)
	auth = span{p, end}
	hs, he := p, end
	if at >= 0 {
		hs = at + 1
	}
	port := ""
	switch {
	case hs == p && ip > p:
		he = ip
		port = s[he:end]
	case colon >= hs:
		he = colon
		port = s[he:end]
	}
	host = span{hs, he}
	name = s[hs:he]
	if len(name) > maxHost+2 || !validPort(port) {
		return auth, host, "", false
	}
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
		name = lowerString(name[1 : len(name)-1])
		valid = name != "" && allBytes(name, func(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || c == ':' || c == '.' })
	} else {
		name = strings.TrimSuffix(name, ".")
		valid = name != "" && allBytes(name, func(c byte) bool { return isAlnum(c) || c == '.' || c == '-' || c == '_' })
		if valid {
			name = lowerString(name)
		}
	}
	return auth, host, name, valid
}

// lowerString lowercases ASCII s, allocating only if it has upper case.
func lowerString(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// allBytes reports whether ok holds for every byte of s.
func allBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// hasSuffix reports whether b ends with suffix.
func hasSuffix(b []byte, suffix string) bool {
	return len(b) >= len(suffix) && string(b[len(b)-len(suffix):]) == suffix
}

// isAuthorityEnd reports whether c cannot be part of an authority. Besides
// the URL delimiters, brackets, commas and semicolons end it, so that
// "[https://a.example](…)" and "see https://a.example, then" find the host.
func isAuthorityEnd(c byte) bool {
	switch c {
	case '/', '\\', '?', '#', '"', '\'', '<', '>', '`', '(', ')', '{', '}', '[', ']', '|', '^', ',', ';':
		return true
	}
	return c <= ' ' || c == 0x7f
}

func validPort(port string) bool {
	if port == "" {
		return true
	}
	if port[0] != ':' || len(port) > 6 {
		return false
	}
	for i := 1; i < len(port); i++ {
		if !isDigit(port[i]) {
			return false
		}
	}
	return true
}

// edit replaces s[pos:pos+del] with what ins says.
// It holds no pointer, so that a text with a million links costs the
// collector nothing to scan.
type edit struct {
	pos int
	del int32
	ins editKind
}

// editKind says what an edit writes.
type editKind uint8

const (
	insColon      editKind = iota // [:]
	insDot                        // [.]
	insHXXP                       // hxxp
	insHXXPS                      // hxxps
	insSlashes                    // the replaced slashes, in brackets
	insImageOpen                  // "[image "
	insImageClose                 // "] ("
)

var insText = [...]string{insColon: "[:]", insDot: "[.]", insHXXP: "hxxp", insHXXPS: "hxxps", insImageOpen: "[image ", insImageClose: "] ("}

// neutralizeLinks makes links non-clickable: a link whose host the job may
// not reach (or, unless keep, any link) and every data: or script URL.
// The host stays readable, so the result keeps its meaning:
//
//	https://evil.example/p  ->  hxxps[:]//evil[.]example/p
//	//evil.example/p        ->  [//]evil[.]example/p
//	www.evil.example        ->  www[.]evil[.]example
//	javascript:alert(1)     ->  javascript[:]alert(1)
//	![alt](https://evil/x)  ->  [image alt] (hxxps[:]//evil/x)
//
// The output has no "://", no scheme followed by ':' and no dotted host
// left to find, so a second pass changes nothing.
func neutralizeLinks(s string, allowed func(string) bool, keep bool, ns *notes, buf *buffers) string {
	eds := buf.eds[:0]
	defer func() { buf.eds = eds[:0] }()
	hosts := buf.spans[:0]
	scanLinks(s, func(l link) {
		switch l.kind {
		case linkScript, linkData:
			eds = append(eds, edit{l.sep, 1, insColon})
			if l.kind == linkScript {
				ns.add(KindNeutralized, detailScriptURL, 1)
			} else {
				ns.add(KindNeutralized, detailDataURL, 1)
			}
			return
		}
		if keep || l.valid && allowed != nil && allowed(l.name) {
			return
		}
		switch l.kind {
		case linkScheme:
			switch {
			case equalFoldASCII(s[l.scheme.start:l.scheme.end], "http"):
				eds = append(eds, edit{l.scheme.start, 4, insHXXP})
			case equalFoldASCII(s[l.scheme.start:l.scheme.end], "https"):
				eds = append(eds, edit{l.scheme.start, 5, insHXXPS})
			}
			eds = append(eds, edit{l.sep, 1, insColon})
		case linkRelative:
			eds = append(eds, edit{l.slash.start, int32(l.slash.end - l.slash.start), insSlashes})
		}
		// Links can nest ("www.a:www.a:…"), so hosts are merged before
		// their dots are edited, once each.
		hosts = append(hosts, span{l.host.start, l.auth.end})
		ns.add(KindNeutralized, detailLink, 1)
	})
	for _, h := range mergeSpans(hosts) {
		for p := h.start; p < h.end; p++ {
			if s[p] == '.' {
				eds = append(eds, edit{p, 1, insDot})
			}
		}
	}
	buf.spans = hosts[:0]
	if len(eds) == 0 {
		return s
	}
	slices.SortFunc(eds, func(a, b edit) int { return a.pos - b.pos })
	eds = breakImages(s, eds, ns)
	var b strings.Builder
	b.Grow(len(s) + 3*len(eds))
	last := 0
	for _, e := range eds {
		if e.pos < last {
			continue // the same edit, found through a second link
		}
		b.WriteString(s[last:e.pos])
		end := e.pos + int(e.del)
		if e.ins == insSlashes {
			b.WriteByte('[')
			b.WriteString(s[e.pos:end])
			b.WriteByte(']')
		} else {
			b.WriteString(insText[e.ins])
		}
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

// maxAltText and maxImageTarget bound the parts of a Markdown image that
// breakImages looks at, so that "![a](" repeated stays linear to scan.
const (
	maxAltText     = 1024
	maxImageTarget = 4096
)

// breakImages turns each Markdown image whose target was neutralized into
// text, so that no renderer fetches it even from a relative path:
// "![alt](target)" becomes "[image alt] (target)". The replacement has no
// ':' or '=' that a second pass could read as the start of a link target.
// eds is sorted by
// position; the result is too.
func breakImages(s string, eds []edit, ns *notes) []edit {
	var more []edit
	for i := 0; ; {
		b := strings.Index(s[i:], "![")
		if b < 0 {
			break
		}
		b += i
		i = b + 2
		a := strings.IndexByte(s[b+2:min(len(s), b+2+maxAltText)], ']')
		if a < 0 {
			continue
		}
		a += b + 2
		if a+1 >= len(s) || s[a+1] != '(' {
			continue
		}
		ts := skipSpace(s, a+2)
		te := ts
		for te < len(s) && te-ts < maxImageTarget && s[te] != ')' && s[te] != ' ' && s[te] != '\n' && s[te] != '\t' {
			te++
		}
		k, _ := slices.BinarySearchFunc(eds, ts, func(e edit, pos int) int { return e.pos - pos })
		if k == len(eds) || eds[k].pos >= te {
			continue
		}
		more = append(more, edit{b, 2, insImageOpen}, edit{a, 2, insImageClose})
		ns.add(KindNeutralized, detailImage, 1)
		i = te // an image inside this one's alt text is now plain text
	}
	if len(more) == 0 {
		return eds
	}
	eds = append(eds, more...)
	slices.SortFunc(eds, func(a, b edit) int { return a.pos - b.pos })
	return eds
}

// skipURLSpace skips spaces, tabs and line breaks.
func skipURLSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

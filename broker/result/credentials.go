package result

import (
	"math/bits"
	"regexp"
	"strings"

	"github.com/airlock/airlock/broker/result/internal/swar"
)

// Details of redacted findings for credential shapes.
const (
	detailPrivateKey = "private_key"
	detailCloudKey   = "cloud_access_key"
	detailModelKey   = "model_provider_key"
	detailGitHub     = "github_token"
	detailSlack      = "slack_token"
	detailGoogle     = "google_api_key"
	detailAPIToken   = "api_token"
	detailJWT        = "jwt"
	detailBearer     = "bearer_token"
	detailAuthHeader = "authorization_header"
	detailAssignment = "credential_assignment"
	detailCustom     = "custom_pattern"
)

// keyShape is a credential recognised by a fixed, case-sensitive prefix
// followed by at least minRest bytes of class cls. The match runs as far as
// the class does, with no condition on what follows, so that cutting text
// short can never create a match that the whole text did not have.
type keyShape struct {
	prefix  string
	minRest int
	cls     uint8
	detail  string
}

var keyShapes = []keyShape{
	// AWS access key IDs, temporary ones and other IAM unique IDs.
	{"AKIA", 16, clsUpperDigit, detailCloudKey},
	{"ASIA", 16, clsUpperDigit, detailCloudKey},
	{"AGPA", 16, clsUpperDigit, detailCloudKey},
	{"AIDA", 16, clsUpperDigit, detailCloudKey},
	{"AROA", 16, clsUpperDigit, detailCloudKey},
	{"ANPA", 16, clsUpperDigit, detailCloudKey},
	{"ANVA", 16, clsUpperDigit, detailCloudKey},
	{"AIPA", 16, clsUpperDigit, detailCloudKey},
	{"ABIA", 16, clsUpperDigit, detailCloudKey},
	{"ACCA", 16, clsUpperDigit, detailCloudKey},
	{"AIza", 30, clsB64URL, detailGoogle},
	{"ya29.", 20, clsB64URL, detailGoogle},
	// OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), OpenRouter (sk-or-) and
	// the many providers that copied the shape.
	{"sk-", 20, clsB64URL, detailModelKey},
	{"hf_", 30, clsAlnum, detailModelKey},
	{"sk_live_", 16, clsAlnum, detailAPIToken},
	{"sk_test_", 16, clsAlnum, detailAPIToken},
	{"rk_live_", 16, clsAlnum, detailAPIToken},
	{"rk_test_", 16, clsAlnum, detailAPIToken},
	{"npm_", 30, clsAlnum, detailAPIToken},
	{"glpat-", 20, clsB64URL, detailAPIToken},
	{"ghp_", 30, clsAlnum, detailGitHub},
	{"gho_", 30, clsAlnum, detailGitHub},
	{"ghs_", 30, clsAlnum, detailGitHub},
	{"ghu_", 30, clsAlnum, detailGitHub},
	{"ghr_", 30, clsAlnum, detailGitHub},
	{"github_pat_", 20, clsAlnumUnder, detailGitHub},
	{"xoxa-", 10, clsAlnumDash, detailSlack},
	{"xoxb-", 10, clsAlnumDash, detailSlack},
	{"xoxe-", 10, clsAlnumDash, detailSlack},
	{"xoxp-", 10, clsAlnumDash, detailSlack},
	{"xoxr-", 10, clsAlnumDash, detailSlack},
	{"xoxs-", 10, clsAlnumDash, detailSlack},
	{"xapp-", 10, clsAlnumDash, detailSlack},
}

// shapesByFirst indexes keyShapes by their first byte.
var shapesByFirst = func() (t [256][]keyShape) {
	for _, k := range keyShapes {
		t[k.prefix[0]] = append(t[k.prefix[0]], k)
	}
	return t
}()

// assignmentKeys end the names of settings whose value is a credential,
// as in PASSWORD=…, "api_key": "…" or DB_PASSWORD: ….
var assignmentKeys = []string{
	"password", "passwd", "secret", "secret_key", "client_secret", "api_key", "apikey",
	"api-key", "access_key", "access_token", "refresh_token", "auth_token", "token",
	"private_key", "session_token", "secret_access_key", "credentials",
}

// authSchemes are the HTTP authentication schemes whose credential follows
// them after a space.
var authSchemes = []string{"bearer", "basic", "token", "apikey", "negotiate", "ntlm", "sso-key", "key"}

// paramAuthSchemes carry their credential as parameters to the end of the line.
var paramAuthSchemes = []string{"digest", "hoba", "mutual", "aws4-hmac-sha256", "oauth"}

// redaction is a span of text to replace with RedactedMarker.
type redaction struct {
	span
	detail string
}

// credentials redacts credential shapes in one pass over the words of s. It
// runs after known secrets are redacted.
func credentials(s string, ns *notes, buf *buffers) string {
	red := buf.red[:0]
	defer func() { buf.red = red[:0] }()
	// done is where the last redaction ended. Whatever follows it is read
	// as it will be next to RedactedMarker: a word starts there, and no
	// setting's name reaches back past it.
	n, done := len(s), 0
	// jwtMiss is where the base64url run of the last "eyJ" that was not a
	// JWT ended; a later "eyJ" inside it cannot be one either, and checking
	// each again would take quadratic time on "eyJa-eyJa-…".
	jwtMiss := 0
	for i := 0; i < n; {
		c := s[i]
		if class[c]&clsAlnum != 0 {
			// A word starts here: the loop only ever stops at the first
			// byte of a word, at a byte that is not part of one, or where
			// a redaction ended.
			ws := i
			i = alnumEnd(s, i+1)
			if !mayMatter(s, ws, i) {
				continue
			}
			if sp, detail := wordAt(s, ws, i, &jwtMiss); sp.end > sp.start {
				red = append(red, redaction{sp, detail})
				i, done = sp.end, sp.end
			}
			continue
		}
		if !scanSpecial[c] {
			i++
			continue
		}
		switch c {
		case ':', '=':
			if sp := assignmentValue(s, done, i); sp.end > sp.start {
				red = append(red, redaction{sp, detailAssignment})
				i, done = sp.end, sp.end
				continue
			}
		case '-':
			if end := privateKeyEnd(s, i); end > i {
				red = append(red, redaction{span{i, end}, detailPrivateKey})
				i, done = end, end
				continue
			}
		}
		i++
	}
	if len(red) == 0 {
		return s
	}
	sp := buf.spans[:0]
	for _, r := range red {
		sp = append(sp, r.span)
		ns.add(KindRedacted, r.detail, 1)
	}
	buf.spans = sp[:0]
	return replaceSpans(s, sp, RedactedMarker)
}

// scanSpecial marks the bytes other than word bytes that credentials
// looks at.
var scanSpecial = [256]bool{':': true, '=': true, '-': true}

// wordAt looks at the word s[i:we], which starts at a word boundary. It
// returns the span of a credential that the word is or introduces and the
// kind of credential, or an empty span.
func wordAt(s string, i, we int, jwtMiss *int) (span, string) {
	for _, k := range shapesByFirst[s[i]] {
		if strings.HasPrefix(s[i:], k.prefix) {
			rest := i + len(k.prefix)
			if end := runEnd(s, rest, k.cls); end-rest >= k.minRest {
				return span{i, end}, k.detail
			}
		}
	}
	// Each keyword below has one length, so most words are let go after
	// two comparisons.
	word := s[i:we]
	switch s[i] | 0x20 {
	case 'e':
		if word[1] == 'y' && i >= *jwtMiss {
			if end := jwtEnd(s, i); end > i {
				return span{i, end}, detailJWT
			}
			*jwtMiss = runEnd(s, i, clsB64URL)
		}
	case 'b':
		if len(word) == 6 && equalFoldASCII(word, "bearer") {
			if v := bearerValue(s, we); v.end > v.start {
				return v, detailBearer
			}
		}
	case 'a':
		if len(word) == 13 && equalFoldASCII(word, "authorization") {
			if v := authorizationValue(s, we); v.end > v.start {
				return v, detailAuthHeader
			}
		}
	}
	return span{}, ""
}

// wordLengths has, for each byte, bit n set if a credential shape or a
// flagged keyword can start with a word of n ASCII letters and digits that
// begins with that byte (bit 31: 31 or more), so that most words are
// dismissed with one lookup.
var wordLengths = func() (t [256]uint32) {
	from := func(n int) uint32 { return ^uint32(0) << min(n, 31) }
	for _, k := range keyShapes {
		if n := runEnd(k.prefix, 0, clsAlnum); n == len(k.prefix) {
			t[k.prefix[0]] |= from(n) // the word can run on past the prefix
		} else {
			t[k.prefix[0]] |= 1 << n
		}
	}
	t['e'] |= from(3) // eyJ…, whose first segment may hold '-' or '_'
	for _, kw := range keywords {
		c := kw.word[0]
		t[c] |= 1 << len(kw.word)
		t[c-'a'+'A'] |= 1 << len(kw.word)
	}
	return t
}()

// keywords are the words, in any case, at which wordAt looks for
// something other than a key shape.
var keywords = []struct{ word string }{
	{"bearer"}, {"authorization"},
}

// wordPairs has bit c1 of wordPairs[c0] set if a shape or keyword starts
// with the bytes c0 c1.
var wordPairs = func() (t [256][4]uint64) {
	set := func(a, b byte) { t[a][b>>6] |= 1 << (b & 63) }
	for _, k := range keyShapes {
		set(k.prefix[0], k.prefix[1])
	}
	set('e', 'y')
	for _, w := range keywords {
		for _, a := range []byte{w.word[0], w.word[0] - 'a' + 'A'} {
			for _, b := range []byte{w.word[1], w.word[1] - 'a' + 'A'} {
				set(a, b)
			}
		}
	}
	return t
}()

// alnumEnd returns where the run of ASCII letters and digits from i ends,
// reading eight bytes at a time.
func alnumEnd(s string, i int) int {
	for ; i+8 <= len(s); i += 8 {
		if m := ^swar.Alnum(swar.Word(s[i:i+8])) & swar.High; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for i < len(s) && class[s[i]]&clsAlnum != 0 {
		i++
	}
	return i
}

// mayMatter reports whether wordAt could do anything with the word
// s[i:we], from its first two bytes and its length.
func mayMatter(s string, i, we int) bool {
	return we-i >= 2 && wordLengths[s[i]]&(1<<min(we-i, 31)) != 0 &&
		wordPairs[s[i]][s[i+1]>>6]&(1<<(s[i+1]&63)) != 0
}

// jwtEnd matches a JWT at i: a base64url JSON header ("eyJ…"), a payload,
// and optionally a signature (empty for alg "none") and the further parts
// of a JWE.
func jwtEnd(s string, i int) int {
	if !strings.HasPrefix(s[i:], "eyJ") {
		return 0
	}
	j := runEnd(s, i, clsB64URL)
	if j-i < 10 || j+1 >= len(s) || s[j] != '.' {
		return 0
	}
	k := runEnd(s, j+1, clsB64URL)
	if k-(j+1) < 2 {
		return 0
	}
	if k < len(s) && s[k] == '.' {
		k = runEnd(s, k+1, clsB64URL)
	}
	for k+1 < len(s) && s[k] == '.' && class[s[k+1]]&clsB64URL != 0 {
		k = runEnd(s, k+1, clsB64URL)
	}
	return k
}

// bearerValue returns the span of the token after "Bearer" at i (which
// points just past the word). Prose such as "bearer bonds" is left alone:
// a token has a digit or is long.
func bearerValue(s string, i int) span {
	j := skipBlanks(s, i)
	if j == i {
		return span{}
	}
	end := runEnd(s, j, clsToken)
	for end > j && (s[end-1] == '.' || s[end-1] == ',') {
		end--
	}
	if v := s[j:end]; len(v) >= 8 && (hasDigit(v) || len(v) >= 32) {
		return span{j, end}
	}
	return span{}
}

// authorizationValue matches the rest of an Authorization header or
// setting after the word that ends at i: a separator, then a scheme and its
// credential, or a bare credential. It returns the credential's span.
func authorizationValue(s string, i int) span {
	j := i
	if j < len(s) && (s[j] == '"' || s[j] == '\'') {
		j++
	}
	j = skipBlanks(s, j)
	if j >= len(s) || s[j] != ':' && s[j] != '=' {
		return span{}
	}
	j = skipBlanks(s, j+1)
	var quote byte
	if j < len(s) && (s[j] == '"' || s[j] == '\'') {
		quote = s[j]
		j++
	}
	we := runEnd(s, j, clsAlnumDash)
	scheme := s[j:we]
	for _, p := range paramAuthSchemes {
		if equalFoldASCII(scheme, p) {
			v := skipBlanks(s, we)
			end := v
			for end < len(s) && s[end] != '\n' && s[end] != quote {
				end++
			}
			if s[v:end] == RedactedMarker {
				return span{}
			}
			return span{v, end}
		}
	}
	for _, a := range authSchemes {
		if equalFoldASCII(scheme, a) {
			v := skipBlanks(s, we)
			if v == we {
				break
			}
			return span{v, valueEnd(s, v)}
		}
	}
	if end := valueEnd(s, j); looksLikeCredential(s[j:end], false) {
		return span{j, end}
	}
	return span{}
}

// maxKeyLen bounds how far back assignmentValue looks for a setting's name.
const maxKeyLen = 128

// assignmentValue matches, at the ':' or '=' at k, a setting whose name
// ends in one of assignmentKeys and whose value looks like a credential. It
// returns the value's span. The name starts at from or later.
func assignmentValue(s string, from, k int) span {
	ke := k
	for ke > from && (s[ke-1] == ' ' || s[ke-1] == '\t') {
		ke--
	}
	if ke > from && (s[ke-1] == '"' || s[ke-1] == '\'') {
		ke--
	}
	ks := ke
	for ks > from && ke-ks < maxKeyLen && class[s[ks-1]]&clsB64URL != 0 {
		ks--
	}
	if ks == ke {
		return span{}
	}
	sep := s[k]
	j := k
	key := s[ks:ke]
	matched := false
	for _, k := range assignmentKeys {
		if len(key) >= len(k) && equalFoldASCII(key[len(key)-len(k):], k) &&
			(len(key) == len(k) || class[key[len(key)-len(k)-1]]&clsAlnum == 0) {
			matched = true
			break
		}
	}
	if !matched {
		return span{}
	}
	j++
	if j < len(s) && s[j] == '>' { // =>
		j++
	}
	j = skipBlanks(s, j)
	if j < len(s) && (s[j] == '"' || s[j] == '\'') {
		j++
	}
	end := valueEnd(s, j)
	if looksLikeCredential(s[j:end], sep == '=') {
		return span{j, end}
	}
	return span{}
}

// valueEnd returns the end of a credential value at i: everything up to
// whitespace, a quote or a delimiter, without a trailing full stop.
// Brackets end it too, so a value that is already RedactedMarker is not
// redacted again.
func valueEnd(s string, i int) int {
	j := i
	for j < len(s) {
		switch s[j] {
		case ' ', '\t', '\n', '"', '\'', '`', ',', ';', '<', '>', '(', ')', '[', ']', '{', '}':
			goto done
		}
		j++
	}
done:
	for j > i && s[j-1] == '.' {
		j--
	}
	return j
}

// looksLikeCredential tells a secret from a word: it has a digit, or is too
// long for a word. After '=' (configuration, not prose) any value of six
// or more bytes counts.
func looksLikeCredential(v string, assigned bool) bool {
	switch {
	case assigned:
		return len(v) >= 6
	case len(v) >= 24:
		return true
	}
	return len(v) >= 8 && hasDigit(v)
}

// privateKeyEnd matches a PEM (or OpenSSH, or PGP) private key block at i,
// from "-----BEGIN … PRIVATE KEY" through the END line. A block with no END
// line runs to the end of the text: what follows BEGIN is key material.
func privateKeyEnd(s string, i int) int {
	const begin = "-----BEGIN "
	if !strings.HasPrefix(s[i:], begin) {
		return 0
	}
	j := i + len(begin)
	le := j
	for le < len(s) && le-j < 64 && ('A' <= s[le] && s[le] <= 'Z' || isDigit(s[le]) || s[le] == ' ') {
		le++
	}
	if !strings.Contains(s[j:le], "PRIVATE KEY") {
		return 0
	}
	e := strings.Index(s[le:], "-----END ")
	if e < 0 {
		return len(s)
	}
	end := le + e + len("-----END ")
	for label := end; end < len(s) && end-label < 64 && ('A' <= s[end] && s[end] <= 'Z' || isDigit(s[end]) || s[end] == ' '); {
		end++
	}
	for end < len(s) && s[end] == '-' {
		end++
	}
	return end
}

// extraPatterns redacts every match of the configured patterns. Matching
// only between existing markers keeps a pattern from eating into, or
// matching, RedactedMarker itself.
func extraPatterns(s string, pats []*regexp.Regexp, ns *notes) string {
	if len(pats) == 0 || s == "" {
		return s
	}
	for _, re := range pats {
		var b strings.Builder
		n := 0
		rest := s
		for {
			m := strings.Index(rest, RedactedMarker)
			gap := rest
			if m >= 0 {
				gap = rest[:m]
			}
			last := 0
			for _, loc := range re.FindAllStringIndex(gap, -1) {
				if loc[1] == loc[0] {
					continue
				}
				if n == 0 && b.Len() == 0 {
					b.Grow(len(s))
					b.WriteString(s[:len(s)-len(rest)])
				}
				b.WriteString(gap[last:loc[0]])
				b.WriteString(RedactedMarker)
				last = loc[1]
				n++
			}
			if n > 0 {
				b.WriteString(gap[last:])
			}
			if m < 0 {
				break
			}
			if n > 0 {
				b.WriteString(RedactedMarker)
			}
			rest = rest[m+len(RedactedMarker):]
		}
		if n > 0 {
			ns.add(KindRedacted, detailCustom, n)
			s = b.String()
		}
	}
	return s
}

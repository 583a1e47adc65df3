package result

import (
	"encoding/json"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/airlock/airlock/broker/result/internal/detect"
)

// Kinds of Finding.
const (
	// KindStripped: control characters, escape sequences, invisible
	// characters or invalid UTF-8 were removed.
	KindStripped = "stripped"
	// KindNormalized: NFKC normalization changed the text.
	KindNormalized = "normalized"
	// KindRedacted: a known secret or a credential was replaced by RedactedMarker.
	KindRedacted = "redacted"
	// KindNeutralized: a link was made non-clickable.
	KindNeutralized = "neutralized"
	// KindRemoved: chat-template tokens, or a member or value that could not be kept, were dropped.
	KindRemoved = "removed"
	// KindTruncated: the string was cut to SanitizeOptions.MaxStringLength.
	KindTruncated = "truncated"
	// KindFlagged: the text is unchanged but looks like instructions to a
	// model; the reader should treat it strictly as data. Detail names the
	// categories, from FlagDetails.
	KindFlagged = "flagged"
)

// kindOrder sorts the findings at one path.
var kindOrder = []string{KindStripped, KindNormalized, KindRemoved, KindRedacted, KindNeutralized, KindTruncated, KindFlagged}

// FlagDetails are the details of flagged findings for injected
// instructions, one per category: override, role_marker, fake_delimiter,
// prompt_leak, command, exfiltration, encoded, obfuscated and tool_call.
// chat_template_token is flagged too, when such a token was removed.
// Flags are advice: they never change the data, and text without them is
// not thereby safe to obey.
var FlagDetails = detect.All.Names()

// RedactedMarker replaces every redacted secret or credential.
const RedactedMarker = "[REDACTED]"

// DefaultMaxStringLength is the cap on a string, in runes, when
// SanitizeOptions.MaxStringLength is zero.
const DefaultMaxStringLength = 16384

// Details of removed and truncated findings.
const (
	detailKeyCollision = "key_collides_after_sanitizing"
	detailTooDeep      = "nested_too_deeply"
	detailBadNumber    = "invalid_number"
	detailBadType      = "unsupported_type"
	detailInKey        = " in key"
)

// SanitizeOptions says what Sanitize keeps. The zero value is the strictest:
// it redacts only credential shapes (there are no known secrets), and
// neutralizes every link.
type SanitizeOptions struct {
	// Secrets are values the broker holds and must never return: its token,
	// service credentials, configured secrets. Each is redacted as is, NFKC
	// normalized, in base64 (standard and URL-safe, padded or not, also
	// inside a larger base64 text), in hex (lower or upper case) and
	// URL-encoded. Empty entries are ignored. A secret is matched however
	// short, so a short one also redacts ordinary text; one containing
	// '[' or ']' may overlap RedactedMarker and make a second Sanitize
	// change the output again.
	Secrets [][]byte
	// AllowedHosts reports whether a link to host may stay clickable,
	// typically the job's egress allowlist. host is lowercase, without port,
	// brackets or trailing dot; hosts that are not plain DNS names or IP
	// literals are never offered. Nil allows no host.
	AllowedHosts func(host string) bool
	// KeepLinks leaves every link intact, allowed or not. data: and
	// javascript: URLs are neutralized regardless.
	KeepLinks bool
	// MaxStringLength caps every string and object key, in runes. Zero or
	// less means DefaultMaxStringLength.
	MaxStringLength int
	// ExtraPatterns are redacted like the built-in credential shapes, after
	// them. They are never matched across or inside RedactedMarker. To keep
	// Sanitize idempotent, a pattern should not depend on what surrounds a
	// match (no \b, ^ or $ at its edges), since redacting or truncating
	// changes the surroundings.
	ExtraPatterns []*regexp.Regexp
}

// Finding is one line of the sanitizer's report: what happened, at one
// JSON path, how many times. Detail lists the rules that fired, from a
// fixed vocabulary (for example "known_secret, jwt" or
// "chat_template_token"), so it never repeats what was removed; a rule
// that fired on an object key ends in " in key". Path uses the sanitized
// keys for the same reason.
type Finding struct {
	Path   string
	Kind   string
	Detail string
	Count  int
}

// Sanitize returns a copy of v, as returned by Parse, in which every string
// and object key has been cleaned, and a report of every change and flag,
// sorted by path and aggregated per path and kind. v is not modified.
//
// Each string goes through these steps, in an order chosen so that the
// output is a fixed point (Sanitize of it changes nothing): redact known
// secrets as they came; strip escape sequences, controls and invisible
// characters; NFKC-normalize; remove
// chat-template tokens; redact known secrets, then credential shapes, then
// ExtraPatterns; neutralize links; cap the length. Text that reads like
// injected instructions is flagged, not changed: the string as it came is
// scanned, so that the flags also name what cleaning undid (obfuscated).
//
// When sanitizing makes two keys of an object equal, the member whose key
// was already clean wins, then the one whose original key sorts first; the
// others are removed and reported. Values Parse never returns (numbers
// that are not JSON, non-finite floats, other Go types, nesting beyond
// MaxDepth) become null and are reported as removed.
func Sanitize(v any, opts SanitizeOptions) (any, []Finding) {
	z := newSanitizer(opts)
	z.flag = flagging
	if z.flag {
		z.flags = startFlags(v)
	}
	out := z.value(v)
	z.reportFlags()
	return out, z.report.findings()
}

// flagging runs the injection detector in Sanitize; a benchmark turns it
// off to measure what the detector costs against the same cleaning.
var flagging = true

// SanitizeText cleans one string as Sanitize cleans each string in a
// result, for text that is not JSON, such as a sandbox's stdout and stderr
// on their way to the audit log. Invalid UTF-8 becomes U+FFFD.
func SanitizeText(s string, opts SanitizeOptions) string {
	z := newSanitizer(opts)
	var ns notes
	return z.text(s, &ns)
}

// sanitizer holds the per-call state of Sanitize. The options are read
// only; path and scratch are reused as the walk goes.
type sanitizer struct {
	opts    SanitizeOptions
	maxLen  int
	secrets *secretMatcher
	path    []step
	scratch notes
	buf     buffers
	report  collector
	// flag runs the injection detector; SanitizeText, whose report
	// nobody reads, leaves it off. flags, when set, is the detector
	// running beside the walk, and pending the strings waiting for it.
	flag    bool
	flags   *flagSet
	pending []pendingFlag
}

// buffers are scratch slices the string rules reuse from one string to the
// next, so that the work per string allocates only its output.
type buffers struct {
	eds   []edit
	red   []redaction
	spans []span
}

func newSanitizer(opts SanitizeOptions) *sanitizer {
	z := &sanitizer{opts: opts, maxLen: opts.MaxStringLength, secrets: newSecretMatcher(opts.Secrets)}
	if z.maxLen <= 0 {
		z.maxLen = DefaultMaxStringLength
	}
	return z
}

// text runs every string rule over s, noting what fired in ns.
func (z *sanitizer) text(s string, ns *notes) string {
	if z.flag && z.flags == nil {
		for _, name := range detect.Scan(s).Names() {
			ns.add(KindFlagged, name, 1)
		}
	}
	// Known secrets are redacted as they came as well as once cleaned:
	// stripping an escape sequence can take a secret's first character
	// with it ("\x1b" + "sk-..." loses the "s"), and what is left would
	// match no more.
	s = z.secrets.redact(s, ns, &z.buf)
	s = clean(s, ns)
	if t := removeTemplateTokens(s, ns); t != s {
		// Removing a token can put a letter next to a combining mark.
		s = t
		if !isNFKC(s) {
			s = norm.NFKC.String(s)
		}
	}
	s = z.secrets.redact(s, ns, &z.buf)
	s = credentials(s, ns, &z.buf)
	s = extraPatterns(s, z.opts.ExtraPatterns, ns)
	if !z.opts.KeepLinks {
		// Links a renderer would assemble by decoding: references and
		// schemes split by whitespace a browser removes.
		s = breakCharRefs(s, ns)
		s = breakSplitSchemes(s, ns)
	}
	s = neutralizeLinks(s, z.opts.AllowedHosts, z.opts.KeepLinks, ns, &z.buf)
	return truncateText(s, z.maxLen, ns)
}

// truncateText cuts s to at most maxRunes runes. The cut moves back to where NFKC
// would not join the halves, and out of the scheme or host of a link, since
// cutting "https://docs.example.com" to "https://docs.exa" would make an
// allowed link into one a second pass must neutralize.
func truncateText(s string, maxRunes int, ns *notes) string {
	if len(s) <= maxRunes {
		return s
	}
	n, c := 0, len(s)
	for i := range s {
		if n == maxRunes {
			c = i
			break
		}
		n++
	}
	if c == len(s) {
		return s
	}
	if !norm.NFKC.PropertiesString(s[c:]).BoundaryBefore() {
		// What follows could combine with what precedes the cut.
		if b := norm.NFKC.LastBoundary([]byte(s[:c])); b >= 0 {
			c = b
		} else {
			c = 0
		}
	}
	for steps := 0; !norm.NFKC.IsNormalString(s[:c]); steps++ {
		// Not expected for NFKC text; step back a rune until it holds,
		// or give up on the string.
		if steps == 32 {
			c = 0
			break
		}
		_, w := utf8.DecodeLastRuneInString(s[:c])
		c -= w
	}
	var links []span
	scanLinks(s, func(l link) {
		if l.kind != linkScript && l.kind != linkData {
			links = append(links, span{l.start, l.auth.end})
		}
	})
	for moved := true; moved; {
		moved = false
		for _, l := range links {
			if l.start < c && c < l.end {
				c, moved = l.start, true
			}
		}
	}
	ns.add(KindTruncated, "longer_than_"+strconv.Itoa(maxRunes)+"_characters", 1)
	return s[:c]
}

// value sanitizes one JSON value at z.path.
func (z *sanitizer) value(orig any) any {
	switch v := orig.(type) {
	case nil, bool:
		return v
	case string:
		z.scratch = z.scratch[:0]
		out := z.text(v, &z.scratch)
		z.record(z.scratch, "")
		z.flagLater(v, "")
		if out == v {
			return orig // no new interface value to allocate
		}
		return out
	case json.Number:
		if !validNumber(string(v)) {
			z.removed(detailBadNumber)
			return nil
		}
		return orig
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			z.removed(detailBadNumber)
			return nil
		}
		return v
	case map[string]any:
		if len(z.path) >= MaxDepth {
			z.removed(detailTooDeep)
			return nil
		}
		return z.object(v)
	case []any:
		if len(z.path) >= MaxDepth {
			z.removed(detailTooDeep)
			return nil
		}
		out := make([]any, len(v))
		for i, e := range v {
			z.path = append(z.path, step{index: i, isIndex: true})
			out[i] = z.value(e)
			z.path = z.path[:len(z.path)-1]
		}
		return out
	}
	z.removed(detailBadType)
	return nil
}

// object sanitizes keys first, to settle collisions, then values.
func (z *sanitizer) object(m map[string]any) map[string]any {
	type member struct {
		orig, key string
		notes     notes
	}
	members := make([]member, 0, len(m))
	for k := range m {
		members = append(members, member{orig: k})
	}
	slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.orig, b.orig) })
	for i := range members {
		z.scratch = z.scratch[:0]
		members[i].key = z.text(members[i].orig, &z.scratch)
		if len(z.scratch) > 0 {
			members[i].notes = slices.Clone(z.scratch)
		}
	}
	// A key that needed no change keeps its member; the rest claim their
	// sanitized key in order of the original key.
	owner := make(map[string]int, len(members))
	for i, mb := range members {
		if mb.key == mb.orig {
			owner[mb.key] = i
		}
	}
	collided := map[string]int{}
	for i, mb := range members {
		if _, taken := owner[mb.key]; !taken {
			owner[mb.key] = i
		} else if owner[mb.key] != i {
			collided[mb.key]++
		}
	}
	out := make(map[string]any, len(owner))
	for i, mb := range members {
		if owner[mb.key] != i {
			continue
		}
		z.path = append(z.path, step{key: mb.key})
		z.record(mb.notes, detailInKey)
		z.flagLater(mb.orig, detailInKey)
		if n := collided[mb.key]; n > 0 {
			z.record(notes{{KindRemoved, detailKeyCollision, n}}, "")
		}
		out[mb.key] = z.value(m[mb.orig])
		z.path = z.path[:len(z.path)-1]
	}
	return out
}

func (z *sanitizer) removed(detail string) {
	z.record(notes{{KindRemoved, detail, 1}}, "")
}

// record adds ns to the report at the current path.
func (z *sanitizer) record(ns notes, suffix string) {
	if len(ns) == 0 {
		return
	}
	path := formatPath(z.path)
	for _, n := range ns {
		z.report.add(z.path, path, n.kind, n.detail+suffix, n.count)
	}
}

// validNumber reports whether s is a JSON number that fits a float64.
func validNumber(s string) bool {
	v, err := Parse([]byte(s))
	if err != nil {
		return false
	}
	_, ok := v.(json.Number)
	return ok
}

// note counts how often one rule fired on one string.
type note struct {
	kind, detail string
	count        int
}

// notes collects what fired on one string; a string rarely has more than a
// few, so a slice beats a map.
type notes []note

func (ns *notes) add(kind, detail string, n int) {
	if n == 0 {
		return
	}
	for i := range *ns {
		if (*ns)[i].kind == kind && (*ns)[i].detail == detail {
			(*ns)[i].count += n
			return
		}
	}
	*ns = append(*ns, note{kind, detail, n})
}

// collector aggregates notes into findings per (path, kind).
type collector struct {
	index map[aggregateKey]int
	aggs  []aggregate
}

type aggregateKey struct{ path, kind string }

type aggregate struct {
	steps   []step
	path    string
	kind    string
	details []string
	count   int
}

func (c *collector) add(steps []step, path, kind, detail string, n int) {
	key := aggregateKey{path, kind}
	if c.index == nil {
		c.index = map[aggregateKey]int{}
	}
	i, ok := c.index[key]
	if !ok {
		i = len(c.aggs)
		c.index[key] = i
		c.aggs = append(c.aggs, aggregate{steps: slices.Clone(steps), path: path, kind: kind})
	}
	a := &c.aggs[i]
	a.count += n
	if !slices.Contains(a.details, detail) {
		a.details = append(a.details, detail)
	}
}

// findings returns the report sorted by path (array indices numerically),
// then kind.
func (c *collector) findings() []Finding {
	slices.SortFunc(c.aggs, func(a, b aggregate) int {
		if d := compareSteps(a.steps, b.steps); d != 0 {
			return d
		}
		return slices.Index(kindOrder, a.kind) - slices.Index(kindOrder, b.kind)
	})
	out := make([]Finding, 0, len(c.aggs))
	for _, a := range c.aggs {
		slices.Sort(a.details)
		out = append(out, Finding{Path: a.path, Kind: a.kind, Detail: strings.Join(a.details, ", "), Count: a.count})
	}
	return out
}

func compareSteps(a, b []step) int {
	for i := range min(len(a), len(b)) {
		x, y := a[i], b[i]
		switch {
		case x.isIndex && y.isIndex:
			if x.index != y.index {
				return x.index - y.index
			}
		case x.isIndex != y.isIndex:
			if x.isIndex {
				return -1
			}
			return 1
		default:
			if d := strings.Compare(x.key, y.key); d != 0 {
				return d
			}
		}
	}
	return len(a) - len(b)
}

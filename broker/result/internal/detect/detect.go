// Package detect flags text that reads like instructions to a model: the
// shapes prompt injection takes in pages, documents and tool output, in
// the languages it comes in, plain, encoded or obfuscated.
//
// A flag is advice for whoever reads the text next. Detection never
// changes the text, and no detector of natural language is complete: a
// string without flags is not thereby safe to obey.
//
// Scan is linear in the length of its input. Rules start at anchor words
// and other rare bytes; each runs an anchored regular expression over a
// bounded window, decided first by a lazy DFA built from it, so most text
// costs one table lookup per word and one per byte of a window tried.
package detect

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/airlock/airlock/broker/result/internal/invisible"
)

// Category is a set of kinds of injected instruction.
type Category uint16

// The categories. Each is reported as its own flag.
const (
	// Override: an order to drop earlier instructions or take on a new
	// task or persona ("ignore previous instructions", "you are now DAN"),
	// or an aside addressed to an AI reader.
	Override Category = 1 << iota
	// RoleMarker: a chat role or turn marker anywhere in the text
	// ("SYSTEM:", "[system]", "<assistant>", "### Instruction:").
	RoleMarker
	// FakeDelimiter: a tag or banner that pretends the data has ended
	// ("</untrusted><system>", "=== END OF EXTERNAL CONTENT ===").
	FakeDelimiter
	// PromptLeak: a request to reveal the reader's prompt or instructions.
	PromptLeak
	// Command: a shell pipeline to the network, a destructive command, or
	// an order to run a tool that deletes, executes or sends.
	Command
	// Exfiltration: a link, image or host built to carry data out, or an
	// order to send private data somewhere.
	Exfiltration
	// Encoded: base64, hex, percent-encoding or ROT13 that decodes to
	// text in one of the categories above.
	Encoded
	// Obfuscated: text in one of the categories above that only reads as
	// such after folding homoglyphs, leetspeak, fullwidth or styled
	// letters, invisible characters, or letters split by spaces, dots or
	// hyphens.
	Obfuscated
	// ToolCall: the JSON or tag shape of a model's tool call.
	ToolCall

	numCategories = iota
)

// instructions are the categories that encoding or obfuscation can hide.
const instructions = Override | RoleMarker | FakeDelimiter | PromptLeak | Command | Exfiltration | ToolCall

var names = [numCategories]string{
	"override", "role_marker", "fake_delimiter", "prompt_leak",
	"command", "exfiltration", "encoded", "obfuscated", "tool_call",
}

// Names lists the categories of c by name, in a fixed order.
func (c Category) Names() []string {
	var out []string
	for i, n := range names {
		if c&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// String joins Names with ", ".
func (c Category) String() string { return strings.Join(c.Names(), ", ") }

// All is every category.
const All Category = 1<<numCategories - 1

// maxDepth bounds how many layers of encoding are unwrapped.
const maxDepth = 2

// Scan returns the categories of injected instruction found in s.
func Scan(s string) Category {
	return scan(s, 0)
}

func scan(s string, depth int) Category {
	sc := scanner{depth: depth, index: index()}
	found := sc.view(s)
	if len(sc.spots) > 0 {
		if o := scanObfuscated(s, sc.spots); o&^found&instructions != 0 {
			found |= o | Obfuscated
		}
	}
	return found
}

// scanObfuscated scans the folded view of the parts of s around spots,
// without looking for encodings again: an encoding found there was found
// in s.
func scanObfuscated(s string, spots []span) Category {
	var found Category
	for _, sp := range spots {
		a, b := sp.start, min(len(s), sp.end)
		for a > 0 && !utf8.RuneStart(s[a]) {
			a--
		}
		for b < len(s) && !utf8.RuneStart(s[b]) {
			b++
		}
		part := s[a:b]
		for _, spaced := range []bool{false, true} {
			if f := fold(part, spaced); f != part {
				sc := scanner{depth: maxDepth, folded: true, index: index()}
				found |= sc.view(f)
			}
			if !hasInvisible(part) {
				break
			}
		}
	}
	return found
}

// span is a part of the text, from start to end.
type span struct{ start, end int }

// mark notes that fold would change the text at p, so that the folded view
// of the text around p is scanned too.
func (sc *scanner) mark(p int) {
	if n := len(sc.spots); n > 0 && p-window <= sc.spots[n-1].end {
		sc.spots[n-1].end = max(sc.spots[n-1].end, p+window)
		return
	}
	sc.spots = append(sc.spots, span{max(0, p-window), p + window})
}

// hasInvisible reports whether s holds a character fold drops.
func hasInvisible(s string) bool {
	return strings.IndexFunc(s, invisible.Is) >= 0
}

// scanner holds the state of one pass over a view of the text.
type scanner struct {
	found  Category
	depth  int
	index  *anchorIndex
	folded bool // this view is the folded one
	// spots are the parts of the text fold would change; nil in the
	// folded view itself.
	spots []span
	// encodedEnd is where the last encoded run looked at ended, so that
	// no byte is decoded twice.
	encodedEnd int
}

// view runs every rule over v.
func (sc *scanner) view(v string) Category {
	if len(v) > 0 && startsJSONBreakout(v) {
		sc.found |= FakeDelimiter
	}
	prevSingle, singles := -1, 0
	for i := 0; i < len(v); {
		if usePlainRun {
			if i = sc.index.plainRun(v, i); i >= len(v) {
				break
			}
		}
		c := v[i]
		switch {
		case c < utf8.RuneSelf && isWordByte[c]:
			we := i + 1
			kinds := byteKind[c]
			for we < len(v) {
				k := byteKind[v[we]]
				if k == 0 {
					break
				}
				kinds |= k
				we++
			}
			digits, letters := kinds&kindDigit != 0, kinds&kindLetter != 0
			if we < len(v) && v[we] >= utf8.RuneSelf {
				// A word that runs on into other scripts is looked at whole.
				we = sc.wideWord(v, i, we)
			} else if we-i <= maxAnchor {
				if h := hashWord(v, i, we); sc.index.mayHold(h) {
					sc.asciiWord(v, i, we, h)
				}
			}
			if !sc.folded {
				if digits && letters || we < len(v) && (v[we] == '-' || v[we] == '_') && hyphenSplit(v, i, we) {
					sc.mark(i)
				}
				if we-i == 1 && letters {
					// Letters spelt out one by one: "i g n o r e".
					if prevSingle == i-2 {
						singles++
					} else {
						singles = 1
					}
					prevSingle = i
					if singles >= 3 {
						sc.mark(i)
					}
				}
			}
			if sc.depth < maxDepth && i >= sc.encodedEnd {
				switch {
				case we-i == 2 && isHex(c) && isHex(v[i+1]) && we < len(v) && v[we] == ' ':
					sc.spacedHex(v, i)
				case digits && letters || we-i >= minEncoded || we < len(v) && encodedJoin[v[we]]:
					sc.encodedRun(v, i)
				}
			}
			i = we
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(v[i:])
			if !sc.folded && foldsRune(r, v, i, n) {
				sc.mark(i)
			}
			if unicode.IsLetter(r) {
				i = sc.wideWord(v, i, i)
				continue
			}
			i += n
		default:
			if p := punctRules[c]; p != nil {
				if g := punctGates[c]; g == nil || g(v, i) {
					p(sc, v, i)
				}
			} else if c < ' ' && c != '\n' && c != '\t' && c != '\r' && !sc.folded {
				sc.mark(i) // an escape sequence or control inside text
			}
			i++
		}
	}
	return sc.found
}

// isWordByte marks ASCII letters and digits. The underscore splits words,
// so that delete_file is seen as delete and file.
// It has a slot for every byte, so that any byte of the text indexes it.
var isWordByte = func() (t [256]bool) {
	for c := range t {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
	}
	return t
}()

// byteKind tells ASCII letters and digits apart in one lookup; every
// other byte is 0.
var byteKind = func() (t [256]uint8) {
	for c := range t {
		switch {
		case '0' <= c && c <= '9':
			t[c] = kindDigit
		case isWordByte[c]:
			t[c] = kindLetter
		}
	}
	return t
}()

const (
	kindDigit = 1 << iota
	kindLetter
)

// encodedJoin marks the bytes that join the pieces of a base64 or
// URL-safe run, or pad it, after a word.
var encodedJoin = func() (t [256]bool) {
	for _, c := range []byte("+/-_=") {
		t[c] = true
	}
	return t
}()

// maxAnchor is the longest anchor word, in bytes.
const maxAnchor = 24

// asciiWord runs the rules anchored at the ASCII word v[i:we], whose
// hash is h.
func (sc *scanner) asciiWord(v string, i, we int, h uint32) {
	e := sc.index.lookup(v, i, we, h)
	if e == nil {
		return
	}
	sc.runEntry(e, v, i, we)
}

// runEntry runs the rules of e at the word v[i:we] whose next words let
// them.
func (sc *scanner) runEntry(e *entry, v string, i, we int) {
	var f follow
	read := false
	for k, r := range e.rules {
		if set := e.nexts[k]; set != nil {
			if !read {
				f, read = followOf(v, we), true
			}
			if !f.in(set) {
				continue
			}
		}
		sc.tryWith(r, e.dfas[k], v, i)
	}
}

// wideWord runs the rules anchored at the word that starts at i and holds
// letters of any script; ascii is where its ASCII start ends. It returns
// where the word ends.
func (sc *scanner) wideWord(v string, i, ascii int) int {
	we := ascii
	for we < len(v) {
		if v[we] < utf8.RuneSelf {
			if !isWordByte[v[we]] {
				break
			}
			we++
			continue
		}
		r, n := utf8.DecodeRuneInString(v[we:])
		if r == utf8.RuneError && n <= 1 || !(unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)) {
			break
		}
		if !sc.folded && foldsRune(r, v, we, n) {
			sc.mark(we)
		}
		if isIdeograph(r) {
			// Scripts without spaces: every character may start a rule.
			if we > i {
				break
			}
			for _, rl := range runeAnchors[r] {
				sc.try(rl, v, i)
			}
			return i + n
		}
		we += n
	}
	if we == i {
		_, n := utf8.DecodeRuneInString(v[i:])
		return i + n
	}
	if we == ascii {
		sc.asciiWord(v, i, we, wordHash(v[i:we]))
		return we
	}
	if we-i <= 4*maxAnchor {
		word := strings.ToLower(v[i:we])
		if e := sc.index.wide[word]; e != nil {
			sc.runEntry(e, v, i, we)
		}
	}
	return we
}

// isIdeograph reports whether r belongs to a script written without
// spaces between words, which rules match character by character.
func isIdeograph(r rune) bool {
	return unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hiragana, r) ||
		unicode.Is(unicode.Katakana, r) || unicode.Is(unicode.Hangul, r)
}

// window is how far after its anchor a rule's match may end.
const window = 320

// try runs r at v[i:] unless its category was already found.
func (sc *scanner) try(r *rule, v string, i int) { sc.tryWith(r, nil, v, i) }

// tryWith is try with r's dfa at hand in lz, when the caller has it.
func (sc *scanner) tryWith(r *rule, lz *lazyDFA, v string, i int) {
	if sc.found&r.cat != 0 {
		return
	}
	if r.fn != nil {
		if r.fn(sc, v, i) {
			sc.found |= r.cat
		}
		return
	}
	if r.colon && !colonAhead(v, i) || r.pre != nil && !r.pre(v, i) {
		return
	}
	w := v[i:min(len(v), i+window)]
	var d *dfa
	if lz != nil {
		d = lz.get()
	} else {
		d = dfaOf(r.re)
	}
	if d != nil && useDFA {
		if !d.matches(w) {
			return
		}
		if r.after == nil {
			sc.found |= r.cat
			return
		}
	}
	loc := r.re.FindStringIndex(w)
	if loc == nil {
		return
	}
	// What surrounds the match is looked at last: the regular expression
	// rejects most anchors at their next word.
	if r.after != nil && !r.after(v, i, i+loc[1]) {
		return
	}
	sc.found |= r.cat
}

// colonAhead reports whether a colon follows i closely, as it must in a
// role marker ("System:", "**Assistant**:", "SYSTEM PROMPT:").
func colonAhead(v string, i int) bool {
	w := v[i:min(len(v), i+40)]
	return strings.IndexByte(w, ':') >= 0 || strings.Contains(w, "：")
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hyphenSplit reports whether the word v[i:we] is joined to the next by a
// hyphen or underscore with a short piece on either side ("Ig-nore",
// "c-u-r-l"), which fold joins.
func hyphenSplit(v string, i, we int) bool {
	if we+1 >= len(v) || (v[we] != '-' && v[we] != '_') || !isLetter(v[we+1]) {
		return false
	}
	ne := we + 1
	for ne < len(v) && isLetter(v[ne]) {
		ne++
	}
	return we-i <= 3 || ne-we-1 <= 3
}

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

// startsJSONBreakout reports whether v opens by closing a JSON string and
// its object ("\"}]} …"): text that tries to end the data it sits in.
func startsJSONBreakout(v string) bool {
	v = strings.TrimLeft(v, " \t\r\n")
	if len(v) < 2 || (v[0] != '"' && v[0] != '\'') {
		return false
	}
	rest := strings.TrimLeft(v[1:], " \t")
	return len(rest) > 0 && (rest[0] == '}' || rest[0] == ']')
}

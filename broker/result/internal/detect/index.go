package detect

import (
	"math/bits"
	"regexp"
	"sync"
	"unicode/utf8"

	"github.com/airlock/airlock/broker/result/internal/swar"
)

// Every ASCII word of a text is looked up as a possible anchor, so the
// lookup is a hash of the word taken eight bytes at a time, checked
// against a bit set and then an open-addressed table, with no string made;
// the words a rule needs next are hashed sets too.

// hashWord hashes v[i:we], a word of ASCII letters and digits, in lower
// case. It takes the word eight bytes at a time, so that a word costs a
// multiply or two rather than one per letter: the scan hashes most words
// of a text.
func hashWord(v string, i, we int) uint32 {
	h := uint64(we - i)
	for ; i < we; i += 8 {
		h = mixBlock(h, swar.At(v, i), we-i)
	}
	return uint32(h)
}

// mixBlock mixes into h the first n (up to eight) bytes of x, which hold
// ASCII letters and digits, in lower case. A letter's lower case is the
// letter with 0x20 set, and a digit has it set already.
func mixBlock(h, x uint64, n int) uint64 {
	x |= 0x20 * swar.Low
	if n < 8 {
		x &= 1<<(8*n) - 1
	}
	h = (h ^ x) * 0x9e3779b97f4a7c15
	return h ^ h>>32
}

// letterRun returns how many ASCII letters start v[i:], or minEncoded
// when there are at least that many. (The first eight, in plainRun,
// are counted there.)
func letterRun(v string, i int) int {
	for n := 0; n < minEncoded; n += 8 {
		if m := ^swar.Letters(swar.At(v, i+n)) & swar.High; m != 0 {
			return n + bits.TrailingZeros64(m)/8
		}
	}
	return minEncoded
}

// lowerByte maps each byte to its ASCII lower case.
var lowerByte = func() (t [256]byte) {
	for c := range t {
		t[c] = lower(byte(c))
	}
	return t
}()

// entry is an anchor word and the rules that start at it, each with the
// hashes of the words one of which must follow it (nil: any).
type entry struct {
	word  string
	hash  uint32
	rules []*rule
	nexts []*hashSet
	dfas  []*lazyDFA // nil for a rule without an expression
}

// lazyDFA is the dfa of a rule's expression, made when first needed.
type lazyDFA struct {
	once sync.Once
	re   *regexp.Regexp
	d    *dfa
}

func (l *lazyDFA) get() *dfa {
	l.once.Do(func() { l.d = dfaOf(l.re) })
	return l.d
}

// anchorIndex finds the entry of an ASCII word by its hash.
type anchorIndex struct {
	bloom [bloomBits / 64]uint64
	slots []*entry // open addressing, a power of two long
	// wide holds the anchors in other scripts, by their lower case.
	wide map[string]*entry
	// plainSep marks the bytes between words that no rule starts at and
	// nothing else looks at.
	plainSep [256]bool
}

// index is built from the registered rules when a text is first scanned.
var index = sync.OnceValue(func() *anchorIndex {
	x := &anchorIndex{wide: map[string]*entry{}}
	for c := range byte(utf8.RuneSelf) {
		x.plainSep[c] = !isWordByte[c] && punctRules[c] == nil && (c >= ' ' || c == '\n' || c == '\t' || c == '\r')
	}
	var es []*entry
	for w, rs := range anchors {
		e := &entry{word: w, hash: wordHash(w), rules: rs}
		for _, r := range rs {
			var set *hashSet
			if r.next != nil && r.next[w] != nil {
				set = &hashSet{m: map[uint32]bool{}}
				for n := range r.next[w] {
					set.add(wordHash(n))
				}
			}
			e.nexts = append(e.nexts, set)
			var lz *lazyDFA
			if r.re != nil {
				lz = &lazyDFA{re: r.re}
			}
			e.dfas = append(e.dfas, lz)
		}
		if len(w) > maxAnchor || !isASCIIWord(w) {
			x.wide[w] = e
			continue
		}
		es = append(es, e)
	}
	size := 1
	for size < 4*len(es) {
		size *= 2
	}
	x.slots = make([]*entry, size)
	for _, e := range es {
		h := e.hash & (bloomBits - 1)
		x.bloom[h>>6] |= 1 << (h & 63)
		for k := e.hash & uint32(size-1); ; k = (k + 1) & uint32(size-1) {
			if x.slots[k] == nil {
				x.slots[k] = e
				break
			}
		}
	}
	return x
})

func wordHash(w string) uint32 { return hashWord(w, 0, len(w)) }

func isASCIIWord(w string) bool {
	for i := 0; i < len(w); i++ {
		if w[i] >= utf8.RuneSelf || !isWordByte[w[i]] {
			return false
		}
	}
	return w != ""
}

// usePlainRun lets the scan skip plain words in a loop of their own; tests
// turn it off to check that it changes no result.
var usePlainRun = true

// plainRun skips, from i, what the scan would look at and find nothing
// in: the plain separators, and the words of letters only that are
// neither anchors, single letters, hex pairs nor long enough to be
// encoded, and that end where no other piece joins them. It returns where
// the scan must look closely. Most of a text is such words, and a loop
// that makes no call keeps its state in registers.
func (x *anchorIndex) plainRun(v string, i int) int {
	for i < len(v) {
		c := v[i]
		if x.plainSep[c] {
			i++
			continue
		}
		if byteKind[c] != kindLetter {
			return i
		}
		// The word's first eight bytes, read at once, give its length
		// and, when it is no longer, its hash.
		var b uint64
		if i+8 <= len(v) {
			b = swar.Word(v[i : i+8])
		} else {
			b = swar.At(v, i)
		}
		var we int
		var h uint32
		if m := ^swar.Letters(b) & swar.High; m != 0 {
			n := bits.TrailingZeros64(m) / 8
			we = i + n
			h = uint32(mixBlock(uint64(n), b, n))
		} else {
			we = i + 8 + letterRun(v, i+8)
			h = hashWord(v, i, we)
		}
		if n := we - i; n < 2 || n >= minEncoded || x.mayHold(h) {
			return i
		}
		if we < len(v) {
			d := v[we]
			if d >= utf8.RuneSelf || byteKind[d] != 0 || encodedJoin[d] ||
				we-i == 2 && d == ' ' && isHex(c) && isHex(v[i+1]) {
				return i
			}
		}
		i = we
	}
	return i
}

// mayHold reports whether a word whose hash is h may be an anchor; it
// is small enough to be inlined where every word is looked at.
func (x *anchorIndex) mayHold(h uint32) bool {
	b := h & (bloomBits - 1)
	return x.bloom[b>>6]&(1<<(b&63)) != 0
}

// lookup returns the entry of the word v[i:we], whose hash is h.
func (x *anchorIndex) lookup(v string, i, we int, h uint32) *entry {
	if !x.mayHold(h) || we-i > maxAnchor {
		return nil
	}
	mask := uint32(len(x.slots) - 1)
	for k := h & mask; ; k = (k + 1) & mask {
		e := x.slots[k]
		if e == nil {
			return nil
		}
		if e.hash == h && equalFoldASCII(v[i:we], e.word) {
			return e
		}
	}
}

// equalFoldASCII reports whether s in lower case is word.
func equalFoldASCII(s, word string) bool {
	if len(s) != len(word) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lowerByte[s[i]] != word[i] {
			return false
		}
	}
	return true
}

// follow is what comes after an anchor, as the rules' next-word tests see
// it: the hashes of the next two words, or that one of them cannot be
// told apart from any word (it runs into another script).
type follow struct {
	hashes [2]uint32
	n      int
	any    bool
}

// followOf reads the two words after we. A word is letters only, after at
// most eight bytes of ASCII other than letters and newlines.
func followOf(v string, we int) follow {
	var f follow
	j := we
	for range 2 {
		for k := 0; j < len(v) && k < 8 && !isLetter(v[j]) && v[j] < utf8.RuneSelf && v[j] != '\n'; k++ {
			j++
		}
		if j >= len(v) || !isLetter(v[j]) {
			f.any = j < len(v) && v[j] >= utf8.RuneSelf
			return f
		}
		start := j
		for j < len(v) && isLetter(v[j]) {
			j++
		}
		n := j - start
		if j < len(v) && v[j] >= utf8.RuneSelf {
			f.any = true
			return f
		}
		if n <= maxAnchor {
			f.hashes[f.n] = hashWord(v, start, j)
			f.n++
		}
	}
	return f
}

// in reports whether one of the words is in set. A hash shared by
// another word lets the rule run, and its expression decides.
func (f *follow) in(set *hashSet) bool {
	if f.any {
		return true
	}
	for _, h := range f.hashes[:f.n] {
		if set.has(h) {
			return true
		}
	}
	return false
}

// hashSet is a set of word hashes. Most words that follow an anchor in
// ordinary prose are not in its rules' sets, and a bitmask in front of the
// map turns them away without a lookup.
type hashSet struct {
	mask [2]uint64
	m    map[uint32]bool
}

// maskBit spreads a hash over the bits of a hashSet's mask.
func maskBit(h uint32) uint32 { return (h * 0x9e3779b1) >> 25 }

func (s *hashSet) add(h uint32) {
	b := maskBit(h)
	s.mask[b>>6] |= 1 << (b & 63)
	s.m[h] = true
}

func (s *hashSet) has(h uint32) bool {
	b := maskBit(h)
	return s.mask[b>>6]&(1<<(b&63)) != 0 && s.m[h]
}

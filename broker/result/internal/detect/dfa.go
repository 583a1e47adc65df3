package detect

import (
	"regexp"
	"regexp/syntax"
	"slices"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// A rule's expression is tried at thousands of anchors in a long text, and
// nearly every try fails within a word or two. Go's regexp pays for each
// try in proportion to the size of the expression (its backtracker clears
// a bitmap of program × window; larger programs run on its NFA), which
// made the detector spend microseconds per anchor. A lazy DFA built from
// the same program decides whether there is a match at all in a table
// lookup per byte, and the regexp runs only where there is one and a rule
// needs to know where it ends. Both read the same compiled program, so
// they agree on every input; the tests check that they do.

// dfa decides whether its program matches at the start of a window. Its
// states are made as inputs first need them and kept, within a bound on
// memory past which they are dropped and made again. A dfa is safe for
// use by concurrent goroutines.
type dfa struct {
	prog *syntax.Prog
	// class maps an ASCII byte to its class: bytes of a class match the
	// same instructions and look the same to \b and line anchors.
	class    [utf8.RuneSelf]uint8
	nclasses int

	// mu guards making states and the scratch below; a match that
	// finds its transitions made takes no lock.
	mu     sync.Mutex
	states map[string]*dstate
	start  atomic.Pointer[dstate]
	stack  []uint32 // scratch for closures
	seen   []bool
	// visited lists the instructions seen marks, to clear them.
	visited []uint32
	// size is about how many bytes the states take.
	size int64
}

// dstate is a set of instructions waiting for the next rune, and what the
// rune before was.
type dstate struct {
	pcs  []uint32
	prev rune // -1 at the start; else '\n', 'a' for a word rune, or ' '
	// next holds the state after each class of ASCII byte; nil is not
	// yet made. done marks a match already certain before the next rune;
	// dead marks a state no input can lead to a match from.
	next       []atomic.Pointer[dstate]
	done, dead bool
	// atEnd is whether a match ends if the text ends here: 0 not yet
	// known, 1 yes, 2 no.
	atEnd atomic.Int32
	// wide holds transitions on runes outside ASCII, under the dfa's mu.
	wide map[rune]*dstate
}

// A hostile text can make every rule's dfa grow, so their memory is
// bounded each and all together: past a bound, a dfa drops its states and
// makes them again as needed, which costs time, never memory.
var (
	maxDFABytes    int64 = 2 << 20
	maxAllDFABytes int64 = 32 << 20
)

// maxWide bounds the transitions on runes outside ASCII a state keeps,
// each about wideBytes.
const (
	maxWide   = 256
	wideBytes = 32
)

// dfaBytes is about how many bytes the states of all dfas take.
var dfaBytes atomic.Int64

// dfas caches the dfa of each expression; nil when there is none.
var dfas sync.Map // *regexp.Regexp → *dfa

// dfaOf returns the dfa for re, or nil if re cannot have one.
func dfaOf(re *regexp.Regexp) *dfa {
	if d, ok := dfas.Load(re); ok {
		return d.(*dfa)
	}
	d := newDFA(re.String())
	d2, _ := dfas.LoadOrStore(re, d)
	return d2.(*dfa)
}

func newDFA(src string) *dfa {
	p, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return nil
	}
	prog, err := syntax.Compile(p.Simplify())
	if err != nil {
		return nil
	}
	d := &dfa{prog: prog, seen: make([]bool, len(prog.Inst))}
	d.classify()
	d.reset()
	return d
}

// classify groups the ASCII bytes by which rune instructions they match
// and how empty-width assertions see them.
func (d *dfa) classify() {
	ids := map[string]uint8{}
	sig := make([]byte, 0, len(d.prog.Inst)+2)
	for c := rune(0); c < utf8.RuneSelf; c++ {
		sig = sig[:0]
		sig = append(sig, byte(kindOf(c)))
		for i := range d.prog.Inst {
			in := &d.prog.Inst[i]
			m := byte(0)
			if isRuneInst(in.Op) && in.MatchRune(c) {
				m = 1
			}
			sig = append(sig, m)
		}
		id, ok := ids[string(sig)]
		if !ok {
			id = uint8(len(ids))
			ids[string(sig)] = id
		}
		d.class[c] = id
	}
	d.nclasses = len(ids)
}

func isRuneInst(op syntax.InstOp) bool {
	return op == syntax.InstRune || op == syntax.InstRune1 || op == syntax.InstRuneAny || op == syntax.InstRuneAnyNotNL
}

// kindOf is the stand-in for r that empty-width assertions see the same
// way as r.
func kindOf(r rune) rune {
	switch {
	case r == '\n':
		return '\n'
	case syntax.IsWordChar(r):
		return 'a'
	}
	return ' '
}

func (d *dfa) reset() {
	dfaBytes.Add(-d.size)
	d.size = 0
	d.states = map[string]*dstate{}
	d.start.Store(d.state([]uint32{uint32(d.prog.Start)}, -1))
}

// state returns the state of pcs after the rune prev, making it if new.
func (d *dfa) state(pcs []uint32, prev rune) *dstate {
	key := make([]byte, 0, 4*len(pcs)+4)
	key = utf8.AppendRune(key, prev+1)
	for _, pc := range pcs {
		key = append(key, byte(pc), byte(pc>>8), byte(pc>>16), byte(pc>>24))
	}
	if s, ok := d.states[string(key)]; ok {
		return s
	}
	s := &dstate{pcs: pcs, prev: prev, next: make([]atomic.Pointer[dstate], d.nclasses), dead: len(pcs) == 0}
	d.states[string(key)] = s
	n := int64(2*len(key) + 8*d.nclasses + 128)
	d.size += n
	dfaBytes.Add(n)
	return s
}

// closure follows from pcs every instruction that consumes no input, with
// the empty-width assertions that hold between the runes before and
// after, and returns the rune instructions reached and whether a match
// is.
func (d *dfa) closure(pcs []uint32, before, after rune) ([]uint32, bool) {
	ctx := syntax.EmptyOpContext(before, after)
	var out []uint32
	matched := false
	stack := append(d.stack[:0], pcs...)
	visited := append(d.visited[:0], pcs...)
	for _, pc := range pcs {
		d.seen[pc] = true
	}
	for len(stack) > 0 {
		pc := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		in := &d.prog.Inst[pc]
		push := func(next uint32) {
			if !d.seen[next] {
				d.seen[next] = true
				stack = append(stack, next)
				visited = append(visited, next)
			}
		}
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			push(in.Out)
			push(in.Arg)
		case syntax.InstCapture, syntax.InstNop:
			push(in.Out)
		case syntax.InstEmptyWidth:
			if syntax.EmptyOp(in.Arg)&^ctx == 0 {
				push(in.Out)
			}
		case syntax.InstMatch:
			matched = true
		case syntax.InstFail:
		default:
			out = append(out, pc)
		}
	}
	d.stack = stack
	for _, pc := range visited {
		d.seen[pc] = false
	}
	d.visited = visited
	return out, matched
}

// step returns the state after rune r from s: doneState if a match ended
// before r.
func (d *dfa) step(s *dstate, r rune) *dstate {
	pcs, matched := d.closure(s.pcs, s.prev, r)
	if matched {
		return doneState
	}
	var next []uint32
	for _, pc := range pcs {
		if in := &d.prog.Inst[pc]; in.MatchRune(r) {
			next = append(next, in.Out)
		}
	}
	slices.Sort(next)
	next = slices.Compact(next)
	if d.size > maxDFABytes || dfaBytes.Load() > maxAllDFABytes {
		d.reset()
	}
	return d.state(next, kindOf(r))
}

// useDFA turns the dfa on; tests turn it off to check that it changes no
// result.
var useDFA = true

// doneState stands for "a match is certain".
var doneState = &dstate{done: true}

// matches reports whether the program matches at the start of w, as
// regexp's FindStringIndex(w) != nil would. States already made are read
// without the lock: a state, once published, changes only by gaining
// transitions, each stored atomically.
func (d *dfa) matches(w string) bool {
	s := d.start.Load()
	for i := 0; i < len(w); {
		var t *dstate
		if c := w[i]; c < utf8.RuneSelf {
			k := d.class[c]
			if t = s.next[k].Load(); t == nil {
				d.mu.Lock()
				if t = s.next[k].Load(); t == nil {
					t = d.step(s, rune(c))
					s.next[k].Store(t)
				}
				d.mu.Unlock()
			}
			i++
		} else {
			r, n := utf8.DecodeRuneInString(w[i:])
			d.mu.Lock()
			if t = s.wide[r]; t == nil {
				t = d.step(s, r)
				if s.wide == nil {
					s.wide = map[rune]*dstate{}
				}
				if len(s.wide) < maxWide {
					s.wide[r] = t
					d.size += wideBytes
					dfaBytes.Add(wideBytes)
				}
			}
			d.mu.Unlock()
			i += n
		}
		if t.done {
			return true
		}
		if t.dead {
			return false
		}
		s = t
	}
	switch s.atEnd.Load() {
	case 1:
		return true
	case 2:
		return false
	}
	d.mu.Lock()
	_, matched := d.closure(s.pcs, s.prev, -1)
	d.mu.Unlock()
	if matched {
		s.atEnd.Store(1)
	} else {
		s.atEnd.Store(2)
	}
	return matched
}

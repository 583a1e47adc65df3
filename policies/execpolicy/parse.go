// Package execpolicy decides whether a command a sandboxed agent asks to run
// matches a profile's exec.allowedPatterns, with OpenClaw's semantics: a
// command line is split into segments on &&, ||, ; and |, every segment must
// match a pattern, and anything a shell would expand or redirect is refused
// rather than guessed at. It is pure: no I/O, no exec, no state.
package execpolicy

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. A command line that fails to parse never matches.
var (
	// ErrSyntax means the command line is not well formed: an unterminated
	// quote, an empty segment, a control character.
	ErrSyntax = errors.New("malformed command line")
	// ErrUnsupported means the command line uses shell features whose
	// effect the matcher cannot see: command substitution, expansion,
	// redirection, background jobs, subshells, comments, keywords.
	ErrUnsupported = errors.New("shell construct not allowed")
)

// Bounds on what Parse and Match look at, so a hostile request cannot make
// matching slow.
const (
	// MaxCommandBytes caps a command line, or the total size of an argv.
	MaxCommandBytes = 16 << 10
	// MaxSegments caps the commands in one chain.
	MaxSegments = 64
	// MaxArgs caps the arguments of one command.
	MaxArgs = 1024
)

// Operator joins a segment to the one before it.
type Operator string

// The chain operators. The first segment has OpNone.
const (
	OpNone Operator = ""
	OpAnd  Operator = "&&"
	OpOr   Operator = "||"
	OpSeq  Operator = ";"
	OpPipe Operator = "|"
)

// Segment is one simple command of a chain.
type Segment struct {
	// Op joins this segment to the previous one; OpNone for the first.
	Op Operator
	// Argv is the command as words, quotes and escapes removed.
	Argv []string
}

// keywords are shell reserved words. In command position they would make
// the line a compound command whose control flow the matcher cannot follow.
var keywords = map[string]bool{
	"!": true, "case": true, "do": true, "done": true, "elif": true, "else": true, "esac": true,
	"fi": true, "for": true, "function": true, "if": true, "in": true, "select": true,
	"then": true, "time": true, "until": true, "while": true, "[[": true, "]]": true,
	"{": true, "}": true, "coproc": true,
}

// Parse splits a shell-like command line into segments. It understands
// single and double quotes and backslash escapes, and the operators &&, ||,
// ; and | (a newline is a ;). Everything else that a shell would give a
// meaning to is ErrUnsupported, never passed on literally, so that what is
// matched is what a shell would have run.
func Parse(cmdline string) ([]Segment, error) {
	if len(cmdline) > MaxCommandBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrSyntax, MaxCommandBytes)
	}
	p := parser{in: cmdline}
	if err := p.run(); err != nil {
		return nil, err
	}
	return p.segs, nil
}

// ParseChain is Parse for a runner that runs the segments itself, one after
// another and without a shell: it refuses a pipe, which would need a shell
// to connect one command's output to the next.
func ParseChain(cmdline string) ([]Segment, error) {
	segs, err := Parse(cmdline)
	if err != nil {
		return nil, err
	}
	for _, s := range segs {
		if s.Op == OpPipe {
			return nil, fmt.Errorf("%w: pipe |; commands joined by &&, || and ; are run one after another, never connected", ErrUnsupported)
		}
	}
	return segs, nil
}

type parser struct {
	in   string
	i    int
	segs []Segment
	cur  Segment
	word strings.Builder
	// inWord is set once the current word has begun, so that '' is an
	// empty argument rather than nothing.
	inWord bool
}

func (p *parser) run() error {
	for p.i < len(p.in) {
		c := p.in[p.i]
		switch {
		case c == ' ' || c == '\t':
			p.endWord()
			p.i++
		case c == '\n':
			if err := p.endSegment(OpSeq, true); err != nil {
				return err
			}
			p.i++
		case c == '\'':
			if err := p.singleQuoted(); err != nil {
				return err
			}
		case c == '"':
			if err := p.doubleQuoted(); err != nil {
				return err
			}
		case c == '\\':
			if p.i+1 >= len(p.in) {
				return fmt.Errorf("%w: trailing backslash", ErrSyntax)
			}
			if p.in[p.i+1] == '\n' {
				// A line continuation joins the lines and adds nothing.
				p.i += 2
				continue
			}
			if err := checkChar(p.in[p.i+1]); err != nil {
				return err
			}
			p.word.WriteByte(p.in[p.i+1])
			p.inWord = true
			p.i += 2
		case c == '&':
			if p.peek(1) == '&' {
				if err := p.endSegment(OpAnd, false); err != nil {
					return err
				}
				p.i += 2
				continue
			}
			if p.peek(1) == '>' {
				return fmt.Errorf("%w: redirection &>", ErrUnsupported)
			}
			return fmt.Errorf("%w: background job &", ErrUnsupported)
		case c == '|':
			if p.peek(1) == '|' {
				if err := p.endSegment(OpOr, false); err != nil {
					return err
				}
				p.i += 2
				continue
			}
			if p.peek(1) == '&' {
				return fmt.Errorf("%w: |& redirects stderr", ErrUnsupported)
			}
			if err := p.endSegment(OpPipe, false); err != nil {
				return err
			}
			p.i++
		case c == ';':
			if p.peek(1) == ';' {
				return fmt.Errorf("%w: ;; belongs to case", ErrUnsupported)
			}
			if err := p.endSegment(OpSeq, false); err != nil {
				return err
			}
			p.i++
		case c == '<' || c == '>':
			return fmt.Errorf("%w: redirection %c", ErrUnsupported, c)
		case c == '(' || c == ')':
			return fmt.Errorf("%w: subshell or grouping %c", ErrUnsupported, c)
		case c == '`':
			return fmt.Errorf("%w: command substitution `", ErrUnsupported)
		case c == '$':
			if err := p.dollar(); err != nil {
				return err
			}
		case c == '*' || c == '?' || c == '[' || c == '{':
			// A shell would expand these into file names or words; quote
			// them to mean the character.
			return fmt.Errorf("%w: unquoted %c would be expanded by a shell; quote it", ErrUnsupported, c)
		case (c == '~' || c == '#') && !p.inWord:
			if c == '#' {
				return fmt.Errorf("%w: comment", ErrUnsupported)
			}
			return fmt.Errorf("%w: unquoted ~ would be expanded by a shell; quote it", ErrUnsupported)
		case c == '!':
			return fmt.Errorf("%w: unquoted ! (negation or history expansion)", ErrUnsupported)
		default:
			if err := checkChar(c); err != nil {
				return err
			}
			p.word.WriteByte(c)
			p.inWord = true
			p.i++
		}
	}
	return p.finish()
}

func (p *parser) peek(n int) byte {
	if p.i+n < len(p.in) {
		return p.in[p.i+n]
	}
	return 0
}

// dollar refuses every expansion. A $ that a shell keeps literal (before a
// blank, a quote or at the end) is kept.
func (p *parser) dollar() error {
	switch n := p.peek(1); {
	case n == '(':
		return fmt.Errorf("%w: command substitution $(", ErrUnsupported)
	case n == 0 || n == ' ' || n == '\t' || n == '\n':
		p.word.WriteByte('$')
		p.inWord = true
		p.i++
		return nil
	default:
		return fmt.Errorf("%w: expansion %s", ErrUnsupported, quoteWord("$"+string([]byte{n})))
	}
}

func (p *parser) singleQuoted() error {
	end := strings.IndexByte(p.in[p.i+1:], '\'')
	if end < 0 {
		return fmt.Errorf("%w: unterminated single quote", ErrSyntax)
	}
	s := p.in[p.i+1 : p.i+1+end]
	for j := 0; j < len(s); j++ {
		if err := checkChar(s[j]); err != nil && s[j] != '\n' {
			return err
		}
	}
	p.word.WriteString(s)
	p.inWord = true
	p.i += end + 2
	return nil
}

// doubleQuoted keeps everything literal but \ before $ ` " \ and newline,
// and refuses $ and ` as a shell would expand them there too.
func (p *parser) doubleQuoted() error {
	p.i++
	p.inWord = true
	for p.i < len(p.in) {
		c := p.in[p.i]
		switch c {
		case '"':
			p.i++
			return nil
		case '\\':
			switch n := p.peek(1); n {
			case '$', '`', '"', '\\':
				p.word.WriteByte(n)
				p.i += 2
			case '\n':
				p.i += 2
			default:
				p.word.WriteByte('\\')
				p.i++
			}
		case '`':
			return fmt.Errorf("%w: command substitution ` in double quotes", ErrUnsupported)
		case '$':
			if n := p.peek(1); n == '"' || n == ' ' || n == '\t' || n == '\n' {
				p.word.WriteByte('$')
				p.i++
				continue
			}
			if p.peek(1) == '(' {
				return fmt.Errorf("%w: command substitution $( in double quotes", ErrUnsupported)
			}
			return fmt.Errorf("%w: expansion %s in double quotes", ErrUnsupported, quoteWord("$"+string([]byte{p.peek(1)})))
		default:
			if err := checkChar(c); err != nil && c != '\n' {
				return err
			}
			p.word.WriteByte(c)
			p.i++
		}
	}
	return fmt.Errorf("%w: unterminated double quote", ErrSyntax)
}

func (p *parser) endWord() {
	if !p.inWord {
		return
	}
	p.cur.Argv = append(p.cur.Argv, p.word.String())
	p.word.Reset()
	p.inWord = false
}

// endSegment closes the current segment; op joins the next one to it. A
// newline may end an empty segment (a blank line, or a line that ends in
// an operator and continues below), as in a shell; ; may not.
func (p *parser) endSegment(op Operator, newline bool) error {
	p.endWord()
	if len(p.cur.Argv) == 0 {
		if newline {
			return nil
		}
		return fmt.Errorf("%w: %s has no command before it", ErrSyntax, opName(op))
	}
	if err := checkSegment(p.cur.Argv); err != nil {
		return err
	}
	p.segs = append(p.segs, p.cur)
	if len(p.segs) > MaxSegments {
		return fmt.Errorf("%w: more than %d commands", ErrSyntax, MaxSegments)
	}
	p.cur = Segment{Op: op}
	return nil
}

func (p *parser) finish() error {
	p.endWord()
	if len(p.cur.Argv) == 0 {
		switch p.cur.Op {
		case OpNone:
			if len(p.segs) == 0 {
				return fmt.Errorf("%w: no command", ErrSyntax)
			}
			return nil
		case OpSeq:
			// A trailing ; or newline ends the last command, as in a shell.
			return nil
		default:
			return fmt.Errorf("%w: %s has no command after it", ErrSyntax, opName(p.cur.Op))
		}
	}
	if err := checkSegment(p.cur.Argv); err != nil {
		return err
	}
	p.segs = append(p.segs, p.cur)
	if len(p.segs) > MaxSegments {
		return fmt.Errorf("%w: more than %d commands", ErrSyntax, MaxSegments)
	}
	return nil
}

// checkSegment refuses what a shell reads in command position but the
// matcher would take for a program name: keywords and variable assignments.
func checkSegment(argv []string) error {
	if len(argv) > MaxArgs {
		return fmt.Errorf("%w: more than %d arguments", ErrSyntax, MaxArgs)
	}
	if keywords[argv[0]] {
		return fmt.Errorf("%w: shell keyword %q", ErrUnsupported, argv[0])
	}
	if name, _, ok := strings.Cut(argv[0], "="); ok && name != "" && !strings.Contains(name, "/") {
		return fmt.Errorf("%w: variable assignment %s in command position", ErrUnsupported, quoteWord(name+"="))
	}
	return nil
}

// checkChar refuses NUL and control characters other than tab: a command
// line is text, and a program cannot receive a NUL in its arguments.
func checkChar(c byte) error {
	if c == '\t' {
		return nil
	}
	if c < 0x20 || c == 0x7f {
		return fmt.Errorf("%w: control character %#02x", ErrSyntax, c)
	}
	return nil
}

func opName(op Operator) string {
	if op == OpNone {
		return "the line"
	}
	return string(op)
}

package execpolicy

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// BinDir is the only directory a bare command name resolves against: the
// tools image keeps its applets there and nowhere else.
const BinDir = "/bin"

// ErrNotResolvable means argv[0] names no program the matcher can place:
// empty, relative with a slash (./cat), or an unclean absolute path
// (/bin/../tmp/cat).
var ErrNotResolvable = errors.New("command cannot be resolved")

// Decision is the matcher's answer for one command line or argv.
type Decision struct {
	// Allowed is true when every segment matched a pattern.
	Allowed bool
	// Segments are the parsed commands, each with the pattern it matched.
	Segments []Checked
	// Reason says, for a person, why the command did or did not match.
	Reason string
}

// Checked is one segment and what the matcher found for it.
type Checked struct {
	Segment
	// Path is the resolved binary; empty when argv[0] did not resolve.
	Path string
	// Pattern is the pattern that matched, or empty for none.
	Pattern string
}

// Resolve returns the absolute binary path argv[0] stands for. A bare name
// is BinDir/name. An absolute path must be clean, so that /bin/../tmp/cat
// cannot pass for /bin/cat. A relative path with a slash has no fixed
// meaning (it depends on the cwd) and does not resolve.
func Resolve(argv0 string) (string, error) {
	switch {
	case argv0 == "" || argv0 == "." || argv0 == "..":
		return "", fmt.Errorf("%w: %s", ErrNotResolvable, quoteWord(argv0))
	case strings.ContainsRune(argv0, 0):
		return "", fmt.Errorf("%w: NUL in command name", ErrNotResolvable)
	case !strings.Contains(argv0, "/"):
		return BinDir + "/" + argv0, nil
	case !strings.HasPrefix(argv0, "/"):
		return "", fmt.Errorf("%w: relative path %s; name the program or give its absolute path", ErrNotResolvable, quoteWord(argv0))
	case path.Clean(argv0) != argv0:
		return "", fmt.Errorf("%w: %s is not a clean path", ErrNotResolvable, quoteWord(argv0))
	}
	return argv0, nil
}

// maxQuotedBytes caps how much of one word a reason quotes.
const maxQuotedBytes = 64

// quoteWord is a word of a command as a reason shows it: bare when it is
// short and plain (a path, a flag), otherwise quoted in ASCII, with every
// control, format and non-ASCII character escaped, and cut to
// maxQuotedBytes with a marker. A reason reaches the caller and the audit
// log, and the word is the job's.
func quoteWord(s string) string {
	if s != "" && len(s) <= maxQuotedBytes && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+,:=@%", r))
	}) < 0 {
		return s
	}
	more := ""
	if len(s) > maxQuotedBytes {
		s, more = s[:maxQuotedBytes], fmt.Sprintf("... (%d bytes)", len(s))
	}
	return strconv.QuoteToASCII(s) + more
}

// Match reports whether every segment of cmdline matches one of patterns.
// A command line that does not parse, or uses a construct Parse refuses, is
// an error and is never allowed.
//
// A pattern is a binary followed, optionally, by argument globs:
//   - a binary with a slash is a glob on the resolved path (/bin/cat,
//     /bin/*); a bare one is a glob on the command name ("cat", "gre?") and
//     matches only commands that resolve into BinDir;
//   - with no argument globs any arguments match; otherwise each glob
//     matches exactly one argument, except that a last glob of "*" alone
//     matches all remaining arguments, none included ("/bin/grep -c *");
//   - in a glob, * and ? match within one path element, ** across them.
func Match(patterns []string, cmdline string) (Decision, error) {
	segs, err := Parse(cmdline)
	if err != nil {
		return Decision{Reason: err.Error()}, err
	}
	return matchSegments(patterns, segs)
}

// MatchArgv is Match for one command given as argv, which is run without a
// shell: no word of it has a shell meaning, so only its size is checked.
func MatchArgv(patterns []string, argv []string) (Decision, error) {
	if len(argv) == 0 {
		return Decision{Reason: "empty argv"}, fmt.Errorf("%w: empty argv", ErrSyntax)
	}
	if len(argv) > MaxArgs {
		return Decision{Reason: "too many arguments"}, fmt.Errorf("%w: more than %d arguments", ErrSyntax, MaxArgs)
	}
	size := 0
	for _, a := range argv {
		size += len(a) + 1
		if strings.ContainsRune(a, 0) {
			return Decision{Reason: "NUL in an argument"}, fmt.Errorf("%w: NUL in an argument", ErrSyntax)
		}
	}
	if size > MaxCommandBytes {
		return Decision{Reason: "argv too long"}, fmt.Errorf("%w: argv longer than %d bytes", ErrSyntax, MaxCommandBytes)
	}
	return matchSegments(patterns, []Segment{{Argv: argv}})
}

// matchSegments matches each segment. A segment in a writing form
// (CheckWrites) is an error, whatever the patterns say: it is never
// allowed, and nobody is asked about it.
func matchSegments(patterns []string, segs []Segment) (Decision, error) {
	d := Decision{Allowed: true}
	var misses []string
	for i, s := range segs {
		c := Checked{Segment: s}
		p, err := Resolve(s.Argv[0])
		if err != nil {
			misses = append(misses, err.Error())
			d.Allowed = false
			d.Segments = append(d.Segments, c)
			continue
		}
		if err := CheckWrites(append([]string{p}, s.Argv[1:]...)); err != nil {
			if len(segs) > 1 {
				err = fmt.Errorf("command %d of the line: %w", i+1, err)
			}
			return Decision{Reason: err.Error()}, err
		}
		c.Path = p
		for _, pat := range patterns {
			if matchPattern(pat, p, s.Argv[1:]) {
				c.Pattern = pat
				break
			}
		}
		if c.Pattern == "" {
			misses = append(misses, quoteWord(p)+" matches no allowed pattern")
			d.Allowed = false
		}
		d.Segments = append(d.Segments, c)
	}
	if d.Allowed {
		d.Reason = "every command matches an allowed pattern"
	} else {
		d.Reason = strings.Join(misses, "; ")
	}
	return d, nil
}

// matchPattern matches one pattern against a resolved binary and its
// arguments.
func matchPattern(pattern, bin string, args []string) bool {
	words := strings.Fields(pattern)
	if len(words) == 0 {
		return false
	}
	binGlob := words[0]
	switch {
	case strings.HasPrefix(binGlob, "/"):
		if !glob(binGlob, bin) {
			return false
		}
	case strings.Contains(binGlob, "/"):
		// A relative path pattern cannot name a fixed binary.
		return false
	default:
		if path.Dir(bin) != BinDir || !glob(binGlob, path.Base(bin)) {
			return false
		}
	}
	argGlobs := words[1:]
	if len(argGlobs) == 0 {
		return true
	}
	if last := len(argGlobs) - 1; argGlobs[last] == "*" {
		if len(args) < last {
			return false
		}
		return matchArgs(argGlobs[:last], args[:last])
	}
	return len(args) == len(argGlobs) && matchArgs(argGlobs, args)
}

func matchArgs(globs, args []string) bool {
	for i, g := range globs {
		if !glob(g, args[i]) {
			return false
		}
	}
	return true
}

// glob matches s against pattern, where * and ? stand for any run of
// characters, or any one character, other than '/', and ** for any run of
// characters at all. Every other byte matches itself. It runs in
// O(len(pattern) * len(s)) time and O(len(s)) space, whatever the input.
func glob(pattern, s string) bool {
	type tok struct {
		kind byte // 'c' literal, '?' one, '*' star, 'S' double star
		c    byte
	}
	toks := make([]tok, 0, len(pattern))
	for i := 0; i < len(pattern); i++ {
		switch {
		case pattern[i] == '*' && i+1 < len(pattern) && pattern[i+1] == '*':
			toks = append(toks, tok{kind: 'S'})
			for i+1 < len(pattern) && pattern[i+1] == '*' {
				i++
			}
		case pattern[i] == '*':
			toks = append(toks, tok{kind: '*'})
		case pattern[i] == '?':
			toks = append(toks, tok{kind: '?'})
		default:
			toks = append(toks, tok{kind: 'c', c: pattern[i]})
		}
	}
	// prev[j] is whether the tokens so far match s[:j].
	prev := make([]bool, len(s)+1)
	cur := make([]bool, len(s)+1)
	prev[0] = true
	for _, t := range toks {
		switch t.kind {
		case '*', 'S':
			cur[0] = prev[0]
			for j := 1; j <= len(s); j++ {
				cur[j] = prev[j] || (cur[j-1] && (t.kind == 'S' || s[j-1] != '/'))
			}
		default:
			cur[0] = false
			for j := 1; j <= len(s); j++ {
				ok := t.kind == '?' && s[j-1] != '/' || t.kind == 'c' && s[j-1] == t.c
				cur[j] = prev[j-1] && ok
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(s)]
}

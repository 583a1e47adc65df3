package execpolicy

import (
	"errors"
	"slices"
	"testing"
)

// vanilla is the vanilla profile's allowlist.
var vanilla = []string{"/bin/cat", "/bin/cut", "/bin/grep", "/bin/head", "/bin/sort", "/bin/tail", "/bin/tr", "/bin/uniq", "/bin/wc"}

func TestMatch_FollowsOpenClawSemantics(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		cmdline  string
		allowed  bool
		err      error
	}{
		// Single commands.
		{"absolute path on the allowlist", vanilla, "/bin/cat /input/content/0", true, nil},
		{"bare name resolves into /bin", vanilla, "cat /input/content/0", true, nil},
		{"command not on the allowlist", vanilla, "id", false, nil},
		{"shell is not on the allowlist", vanilla, "sh -c id", false, nil},
		{"busybox itself is not on the allowlist", vanilla, "busybox sh", false, nil},
		{"pattern without arguments allows any", vanilla, "grep -r -i secret /input", true, nil},
		{"bare-name pattern", []string{"cat"}, "cat x", true, nil},
		{"bare-name pattern matches the absolute /bin path", []string{"cat"}, "/bin/cat x", true, nil},
		{"glob on the path", []string{"/bin/*"}, "wc -l", true, nil},
		{"single star stays within one directory", []string{"/*"}, "/bin/wc", false, nil},
		{"double star crosses directories", []string{"/**/wc"}, "/bin/wc", true, nil},
		{"question mark is one character", []string{"/bin/gre?"}, "grep x", true, nil},
		{"no patterns allow nothing", nil, "cat x", false, nil},
		{"empty pattern matches nothing", []string{""}, "cat x", false, nil},
		{"relative pattern matches nothing", []string{"bin/cat"}, "/bin/cat", false, nil},

		// Argument globs.
		{"argument glob matches", []string{"/bin/grep -c *"}, "grep -c needle /input/content/0", true, nil},
		{"argument glob with no further arguments", []string{"/bin/grep -c *"}, "grep -c", true, nil},
		{"argument glob mismatch", []string{"/bin/grep -c *"}, "grep -v needle", false, nil},
		{"exact arguments", []string{"/bin/wc -c /input/content/0"}, "wc -c /input/content/0", true, nil},
		{"exact arguments, one more", []string{"/bin/wc -c /input/content/0"}, "wc -c /input/content/0 /input/job.json", false, nil},
		{"argument star stays within a directory", []string{"/bin/cat /input/content/*"}, "cat /input/content/../../etc/passwd", false, nil},
		{"argument star within a directory", []string{"/bin/cat /input/content/*"}, "cat /input/content/0", true, nil},

		// Paths that only look like an allowed binary.
		{"lookalike in /tmp", vanilla, "/tmp/cat x", false, nil},
		{"lookalike through ..", vanilla, "/bin/../tmp/cat x", false, nil},
		{"dot-dot back into /bin", vanilla, "/tmp/../bin/cat x", false, nil},
		{"relative path", vanilla, "./cat x", false, nil},
		{"relative path into bin", vanilla, "bin/cat x", false, nil},
		{"double slash", vanilla, "//bin/cat x", false, nil},
		{"trailing slash", vanilla, "/bin/cat/ x", false, nil},
		{"bare-name pattern does not match another directory", []string{"cat"}, "/tmp/cat", false, nil},
		{"bare-name pattern does not match /usr/bin", []string{"cat"}, "/usr/bin/cat", false, nil},

		// Chains: every segment must match.
		{"and chain, both allowed", vanilla, "cat a && wc -l b", true, nil},
		{"and chain, second denied", vanilla, "cat a && id", false, nil},
		{"or chain, second denied", vanilla, "cat a || id", false, nil},
		{"sequence, second denied", vanilla, "cat a; id", false, nil},
		{"sequence without spaces", vanilla, "cat a;id", false, nil},
		{"newline is a sequence", vanilla, "cat a\nid", false, nil},
		{"pipe, both allowed", vanilla, "cat a | wc -l", true, nil},
		{"pipe into a shell", vanilla, "cat a | sh", false, nil},
		{"trailing semicolon", vanilla, "cat a;", true, nil},
		{"line continuation after &&", vanilla, "cat a &&\nwc b", true, nil},

		// Quoting: operators inside quotes are arguments.
		{"quoted and", vanilla, "grep 'a && id' x", true, nil},
		{"double-quoted semicolon", vanilla, `grep "a; id" x`, true, nil},
		{"escaped semicolon", vanilla, `grep a\;id x`, true, nil},
		{"quoted redirection", vanilla, "grep '>' x", true, nil},
		{"quoted dollar paren in single quotes", vanilla, "grep '$(id)' x", true, nil},
		{"escaped dollar in double quotes", vanilla, `grep "\$(id)" x`, true, nil},
		{"quoted glob", vanilla, "grep 'a*' x", true, nil},
		{"empty quoted argument", vanilla, "grep '' x", true, nil},
		{"quoted command name", vanilla, "'cat' x", true, nil},
		{"quotes make a lookalike path", vanilla, "'/bin/../tmp/cat' x", false, nil},

		// Command substitution and expansion.
		{"dollar paren", vanilla, "cat $(id)", false, ErrUnsupported},
		{"backticks", vanilla, "cat `id`", false, ErrUnsupported},
		{"dollar paren in double quotes", vanilla, `cat "$(id)"`, false, ErrUnsupported},
		{"backticks in double quotes", vanilla, "cat \"`id`\"", false, ErrUnsupported},
		{"variable", vanilla, "cat $HOME", false, ErrUnsupported},
		{"braced variable", vanilla, "cat ${HOME}", false, ErrUnsupported},
		{"variable in double quotes", vanilla, `cat "$HOME"`, false, ErrUnsupported},
		{"arithmetic", vanilla, "cat $((1+1))", false, ErrUnsupported},
		{"unquoted glob", vanilla, "cat /input/*", false, ErrUnsupported},
		{"brace expansion", vanilla, "cat /input/{a,b}", false, ErrUnsupported},
		{"tilde", vanilla, "cat ~/x", false, ErrUnsupported},

		// Redirections.
		{"output redirection", vanilla, "cat a > /output/x", false, ErrUnsupported},
		{"append", vanilla, "cat a >> /output/x", false, ErrUnsupported},
		{"input redirection", vanilla, "cat < /input/job.json", false, ErrUnsupported},
		{"stderr redirection", vanilla, "cat a 2> /dev/null", false, ErrUnsupported},
		{"both redirection", vanilla, "cat a &> /dev/null", false, ErrUnsupported},
		{"here string", vanilla, "cat <<< x", false, ErrUnsupported},
		{"redirection glued to a word", vanilla, "cat a>b", false, ErrUnsupported},
		{"pipe with stderr", vanilla, "cat a |& wc", false, ErrUnsupported},

		// Other shell constructs.
		{"background", vanilla, "cat a & id", false, ErrUnsupported},
		{"trailing background", vanilla, "cat a &", false, ErrUnsupported},
		{"subshell", vanilla, "(id)", false, ErrUnsupported},
		{"subshell after and", vanilla, "cat a && (id)", false, ErrUnsupported},
		{"comment", vanilla, "cat a #; id", false, ErrUnsupported},
		{"negation", vanilla, "! cat a", false, ErrUnsupported},
		{"keyword", vanilla, "if cat a; then id; fi", false, ErrUnsupported},
		{"brace group", []string{"*"}, "{ id; }", false, ErrUnsupported},
		{"assignment prefix", vanilla, "PATH=/tmp cat a", false, ErrUnsupported},
		{"case terminator", vanilla, "cat a;; id", false, ErrUnsupported},

		// Malformed lines.
		{"empty", vanilla, "", false, ErrSyntax},
		{"blank", vanilla, "   ", false, ErrSyntax},
		{"unterminated single quote", vanilla, "cat 'a", false, ErrSyntax},
		{"unterminated double quote", vanilla, `cat "a`, false, ErrSyntax},
		{"trailing backslash", vanilla, `cat a\`, false, ErrSyntax},
		{"and with nothing before", vanilla, "&& cat a", false, ErrSyntax},
		{"and with nothing after", vanilla, "cat a &&", false, ErrSyntax},
		{"pipe with nothing after", vanilla, "cat a |", false, ErrSyntax},
		{"leading semicolon", vanilla, "; cat a", false, ErrSyntax},
		{"NUL", vanilla, "cat a\x00b", false, ErrSyntax},
		{"escape character", vanilla, "cat \x1b[31m", false, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Match(tt.patterns, tt.cmdline)
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("Match(%q) error = %v, want %v", tt.cmdline, err, tt.err)
			}
			if d.Allowed != tt.allowed {
				t.Fatalf("Match(%q) allowed = %v, want %v (reason: %s)", tt.cmdline, d.Allowed, tt.allowed, d.Reason)
			}
			if d.Reason == "" {
				t.Fatalf("Match(%q) gave no reason", tt.cmdline)
			}
		})
	}
}

func TestParse_SplitsChainsAndRemovesQuotes(t *testing.T) {
	segs, err := Parse(`cat 'a b' "c\"d" e\ f && wc -l||grep x;sort | uniq`)
	if err != nil {
		t.Fatal(err)
	}
	want := []Segment{
		{Op: OpNone, Argv: []string{"cat", "a b", `c"d`, "e f"}},
		{Op: OpAnd, Argv: []string{"wc", "-l"}},
		{Op: OpOr, Argv: []string{"grep", "x"}},
		{Op: OpSeq, Argv: []string{"sort"}},
		{Op: OpPipe, Argv: []string{"uniq"}},
	}
	if len(segs) != len(want) {
		t.Fatalf("got %d segments %q, want %d", len(segs), segs, len(want))
	}
	for i := range want {
		if segs[i].Op != want[i].Op || !slices.Equal(segs[i].Argv, want[i].Argv) {
			t.Errorf("segment %d = %q %q, want %q %q", i, segs[i].Op, segs[i].Argv, want[i].Op, want[i].Argv)
		}
	}
}

func TestMatch_NamesThePatternEachSegmentMatched(t *testing.T) {
	d, err := Match([]string{"cat", "/bin/wc -l *"}, "cat a && /bin/wc -l b && id")
	if err != nil {
		t.Fatal(err)
	}
	got := []string{d.Segments[0].Pattern, d.Segments[1].Pattern, d.Segments[2].Pattern}
	if !slices.Equal(got, []string{"cat", "/bin/wc -l *", ""}) {
		t.Fatalf("patterns = %q", got)
	}
	if d.Segments[2].Path != "/bin/id" {
		t.Fatalf("id resolved to %q, want /bin/id", d.Segments[2].Path)
	}
}

func TestMatchArgv_TakesWordsLiterally(t *testing.T) {
	tests := []struct {
		name    string
		argv    []string
		allowed bool
		err     error
	}{
		{"allowed command", []string{"wc", "-c", "/input/content/0"}, true, nil},
		{"shell syntax is just an argument", []string{"cat", "$(id)", ">", "/output/x", "&&", "id"}, true, nil},
		{"denied command", []string{"sh", "-c", "id"}, false, nil},
		{"busybox directly", []string{"/bin/busybox", "sh"}, false, nil},
		{"lookalike", []string{"/bin/../tmp/cat"}, false, nil},
		{"relative", []string{"./cat"}, false, nil},
		{"empty argv", nil, false, ErrSyntax},
		{"empty command", []string{""}, false, nil},
		{"NUL", []string{"cat", "a\x00"}, false, ErrSyntax},
		{"too many arguments", make([]string, MaxArgs+1), false, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := MatchArgv(vanilla, tt.argv)
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			if d.Allowed != tt.allowed {
				t.Fatalf("allowed = %v, want %v (%s)", d.Allowed, tt.allowed, d.Reason)
			}
		})
	}
}

func TestGlob_IsLinearInItsInputs(t *testing.T) {
	// A classic backtracking matcher takes exponential time on this.
	pat := "/**a**a**a**a**a**a**a**a**a**a**b"
	s := "/" + string(make([]byte, 0)) + repeat("a", 4000)
	if glob(pat, s) {
		t.Fatal("matched a string without b")
	}
}

func repeat(s string, n int) string {
	b := make([]byte, 0, len(s)*n)
	for range n {
		b = append(b, s...)
	}
	return string(b)
}

func TestParseChain_RefusesPipesAndWhatParseRefuses(t *testing.T) {
	tests := []struct {
		cmdline string
		ops     []Operator
		err     error
	}{
		{"cat a && wc -l b || head c; tail d", []Operator{OpNone, OpAnd, OpOr, OpSeq}, nil},
		{"cat a\nwc b", []Operator{OpNone, OpSeq}, nil},
		{"cat a | wc -l", nil, ErrUnsupported},
		{"cat a && wc b | head", nil, ErrUnsupported},
		{"cat '|' && wc", []Operator{OpNone, OpAnd}, nil},
		{"cat $(id)", nil, ErrUnsupported},
		{"cat `id`", nil, ErrUnsupported},
		{"cat a > /tmp/x", nil, ErrUnsupported},
		{"cat a &&", nil, ErrSyntax},
	}
	for _, tt := range tests {
		segs, err := ParseChain(tt.cmdline)
		if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("ParseChain(%q): %v, want %v", tt.cmdline, err, tt.err)
			continue
		}
		var ops []Operator
		for _, s := range segs {
			ops = append(ops, s.Op)
		}
		if !slices.Equal(ops, tt.ops) {
			t.Errorf("ParseChain(%q) operators = %q, want %q", tt.cmdline, ops, tt.ops)
		}
	}
}

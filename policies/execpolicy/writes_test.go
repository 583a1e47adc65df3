package execpolicy

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckWrites_RefusesEveryWritingFormOfTheShippedApplets(t *testing.T) {
	tests := []struct {
		name   string
		argv   []string
		writes bool
	}{
		{"sort to stdout", []string{"sort", "-u", "/input/a"}, false},
		{"sort -o FILE", []string{"sort", "-o", "/tmp/x", "/input/a"}, true},
		{"sort -o after the operands, as getopt permutes", []string{"sort", "/input/a", "-o", "/tmp/x"}, true},
		{"sort -oFILE", []string{"sort", "-o/tmp/x", "/input/a"}, true},
		{"sort -o in a cluster", []string{"sort", "-uo", "/tmp/x", "/input/a"}, true},
		{"sort -o with its file in a cluster", []string{"sort", "-rnuo/tmp/x"}, true},
		{"sort -o after a key", []string{"sort", "-k1,1", "-o", "/tmp/x"}, true},
		{"sort by its absolute path", []string{"/bin/sort", "-o", "/tmp/x"}, true},
		{"sort lookalike elsewhere is judged the same", []string{"/usr/bin/sort", "-o", "/tmp/x"}, true},
		{"sort --output=FILE", []string{"sort", "--output=/tmp/x"}, true},
		{"sort --output FILE", []string{"sort", "--output", "/tmp/x"}, true},
		{"sort --o abbreviation", []string{"sort", "--o", "/tmp/x"}, true},
		{"sort option the matcher does not know", []string{"sort", "-X", "/tmp/x"}, true},
		{"sort -t o is a separator, not -o", []string{"sort", "-to", "/input/a"}, false},
		{"sort -t then a separate o separator", []string{"sort", "-t", "o", "/input/a"}, false},
		{"sort -k takes -o as its argument", []string{"sort", "-k", "-o", "/input/a"}, false},
		{"sort -T and -S take an argument and write nothing", []string{"sort", "-T", "/tmp", "-S", "1", "/input/a"}, false},
		{"sort -T swallows a word that looks like -o", []string{"sort", "-T", "-o", "/input/a"}, false},
		{"sort -- -o is a file to read", []string{"sort", "--", "-o", "/input/a"}, false},
		{"sort - reads stdin", []string{"sort", "-", "/input/a"}, false},
		{"sort -t separator then -o", []string{"sort", "-t", ",", "-o", "/tmp/x"}, true},
		{"uniq to stdout", []string{"uniq", "-c", "/input/a"}, false},
		{"uniq reading stdin", []string{"uniq"}, false},
		{"uniq IN OUT", []string{"uniq", "/input/a", "/tmp/x"}, true},
		{"uniq IN OUT with options between", []string{"uniq", "/input/a", "-c", "/tmp/x"}, true},
		{"uniq - OUT", []string{"uniq", "-", "/tmp/x"}, true},
		{"uniq -- IN OUT", []string{"uniq", "--", "/input/a", "/tmp/x"}, true},
		{"uniq IN -- OUT", []string{"uniq", "/input/a", "--", "/tmp/x"}, true},
		{"uniq -f N IN", []string{"uniq", "-f", "1", "/input/a"}, false},
		{"uniq -fN IN OUT", []string{"uniq", "-f1", "/input/a", "/tmp/x"}, true},
		{"uniq -w takes a number, not a file", []string{"uniq", "-w", "3", "/input/a"}, false},
		{"uniq long option", []string{"uniq", "--count", "/input/a"}, true},
		{"uniq unknown option", []string{"uniq", "-D", "/input/a"}, true},
		{"cat reads only", []string{"cat", "-A", "/input/a", "/tmp/x"}, false},
		{"grep -f reads a pattern file", []string{"grep", "-f", "/input/p", "/input/a"}, false},
		{"tail -f only follows", []string{"tail", "-f", "/input/a"}, false},
		{"head, cut, tr, wc read only", []string{"wc", "-l", "/input/a", "/input/b"}, false},
		{"not an applet", []string{"id"}, false},
		{"empty argv", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckWrites(tt.argv)
			if got := err != nil; got != tt.writes {
				t.Fatalf("CheckWrites(%q) = %v, want writes=%v", tt.argv, err, tt.writes)
			}
			if err != nil && !errors.Is(err, ErrWrites) {
				t.Errorf("err = %v, want ErrWrites", err)
			}
		})
	}
}

func TestMatch_RefusesWritingFormsWhateverThePatternsSay(t *testing.T) {
	patterns := append([]string{"/bin/sort -o *", "/bin/uniq *", "/bin/*"}, vanilla...)
	for _, line := range []string{
		"sort -o /tmp/x /input/a",
		"sort /input/a -o/tmp/x",
		"cat /input/a && sort -uo /tmp/x /input/a",
		"cat /input/a; uniq /input/a /tmp/x",
		"cat /input/a" + strings.Repeat(" ", 1100) + "; sort -o /tmp/x /input/a",
	} {
		d, err := Match(patterns, line)
		if !errors.Is(err, ErrWrites) || d.Allowed || d.Reason == "" {
			t.Errorf("Match(%.60q) = %+v, %v; want ErrWrites", line, d, err)
		}
	}
	d, err := MatchArgv(patterns, []string{"/bin/sort", "-o", "/tmp/x"})
	if !errors.Is(err, ErrWrites) || d.Allowed {
		t.Errorf("MatchArgv(sort -o) = %+v, %v; want ErrWrites", d, err)
	}
	if d, err := MatchArgv(vanilla, []string{"sort", "-u", "/input/a"}); err != nil || !d.Allowed {
		t.Errorf("MatchArgv(sort -u) = %+v, %v; want allowed", d, err)
	}
}

func TestAudited_CoversTheReadOnlyToolsAndNoWriter(t *testing.T) {
	for _, name := range []string{"cat", "cut", "grep", "head", "sort", "tail", "tr", "uniq", "wc"} {
		if !Audited(name) {
			t.Errorf("%s is not audited", name)
		}
	}
	for _, name := range []string{"tee", "sed", "awk", "find", "xargs", "cp", "mv", "dd", "split", "patch", "gzip", "tar", "sh"} {
		if Audited(name) {
			t.Errorf("%s is audited as a tool the image may carry", name)
		}
	}
}

// hostileWords are what a job could put in a command to reach the caller
// through a reason: escapes, a bidi override, a template token, a
// newline, a megabyte.
var hostileWords = []string{
	"\x1b[2J", "\x1b]8;;https://evil.example/\x07x\x1b]8;;\x07", "a\u202egpj", "<|im_start|>system", "a\nb", strings.Repeat("A", 1<<20),
}

func TestReasons_QuoteTheJobsWordsInBoundedASCII(t *testing.T) {
	for _, w := range hostileWords {
		var reasons []string
		for _, argv := range [][]string{{w}, {"/bin/" + w}, {"./" + w}, {"/bin/../" + w}, {"sort", "-" + w}, {"sort", "--" + w}} {
			d, _ := MatchArgv(vanilla, argv)
			reasons = append(reasons, d.Reason)
		}
		for _, line := range []string{"'" + w + "'", "X" + "='" + w + "' cat", "cat $\x1b", `cat "$` + "\x1b\"", "uniq a '" + w + "'"} {
			d, _ := Match(vanilla, line)
			reasons = append(reasons, d.Reason)
		}
		for _, r := range reasons {
			if len(r) > 1024 {
				t.Errorf("reason of %d bytes: %.80q...", len(r), r)
			}
			for _, c := range []byte(r) {
				if c < ' ' || c > '~' {
					t.Errorf("reason holds byte %#02x: %.200q", c, r)
					break
				}
			}
		}
	}
}

package execpolicy

import (
	"bufio"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// corpusFile holds command lines, one Go-quoted string per line, that seed
// FuzzMatch and that TestMatch_CorpusHoldsInvariants checks on every run.
const corpusFile = "testdata/cmdlines.txt"

func readCorpus(t testing.TB) []string {
	t.Helper()
	f, err := os.Open(corpusFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := strconv.Unquote(line)
		if err != nil {
			t.Fatalf("%s:%d: %v", corpusFile, n, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkMatch asserts what must hold for any command line.
func checkMatch(t *testing.T, cmdline string) {
	t.Helper()
	d, err := Match(vanilla, cmdline)
	if d.Reason == "" {
		t.Fatalf("%q: no reason", cmdline)
	}
	// A reason reaches the caller: the job's words in it are quoted in
	// ASCII, so it holds no control, format or non-ASCII character.
	if i := strings.IndexFunc(d.Reason, func(r rune) bool { return r < ' ' || r > '~' }); i >= 0 {
		t.Fatalf("%q: reason %q holds %q", cmdline, d.Reason, d.Reason[i:])
	}
	if err != nil {
		if d.Allowed {
			t.Fatalf("%q: allowed despite %v", cmdline, err)
		}
		return
	}
	if len(d.Segments) == 0 {
		t.Fatalf("%q: parsed into no segments", cmdline)
	}
	for _, s := range d.Segments {
		if len(s.Argv) == 0 {
			t.Fatalf("%q: empty segment", cmdline)
		}
		if !d.Allowed {
			continue
		}
		if !slices.Contains(vanilla, s.Path) || path.Clean(s.Path) != s.Path || s.Pattern == "" {
			t.Fatalf("%q: allowed segment %q resolves to %q by pattern %q", cmdline, s.Argv, s.Path, s.Pattern)
		}
		if err := CheckWrites(s.Argv); err != nil {
			t.Fatalf("%q: allowed segment %q writes: %v", cmdline, s.Argv, err)
		}
	}
	// Quoting every word and rejoining must give back the same segments:
	// what Parse found is exactly what the words say, and nothing a shell
	// would read differently was let through.
	var b strings.Builder
	for i, s := range d.Segments {
		if i > 0 {
			b.WriteString(" " + string(s.Op) + " ")
		}
		for j, w := range s.Argv {
			if j > 0 {
				b.WriteByte(' ')
			}
			b.WriteString("'" + strings.ReplaceAll(w, "'", `'\''`) + "'")
		}
	}
	again, err := Parse(b.String())
	if err != nil {
		t.Fatalf("%q: requoted %q does not parse: %v", cmdline, b.String(), err)
	}
	if len(again) != len(d.Segments) {
		t.Fatalf("%q: requoted gives %d segments, want %d", cmdline, len(again), len(d.Segments))
	}
	for i := range again {
		if again[i].Op != d.Segments[i].Op || !slices.Equal(again[i].Argv, d.Segments[i].Argv) {
			t.Fatalf("%q: requoted segment %d = %q, want %q", cmdline, i, again[i].Argv, d.Segments[i].Argv)
		}
	}
}

func TestMatch_CorpusHoldsInvariants(t *testing.T) {
	for _, c := range readCorpus(t) {
		checkMatch(t, c)
	}
}

func FuzzMatch(f *testing.F) {
	for _, c := range readCorpus(f) {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, cmdline string) {
		checkMatch(t, cmdline)
	})
}

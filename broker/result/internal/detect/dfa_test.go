package detect

import (
	"regexp"
	"testing"
)

// The dfa decides as the regexp it is built from does: at every anchor of
// every corpus text, for every rule.
func TestDFA_AgreesWithRegexp(t *testing.T) {
	texts := append(corpusTexts(t, "injected*.jsonl"), corpusTexts(t, "benign*.jsonl")...)
	var res []*regexp.Regexp
	seen := map[*regexp.Regexp]bool{}
	add := func(rs []*rule) {
		for _, r := range rs {
			if r.re != nil && !seen[r.re] {
				seen[r.re] = true
				res = append(res, r.re)
			}
		}
	}
	for _, rs := range anchors {
		add(rs)
	}
	for _, rs := range runeAnchors {
		add(rs)
	}
	checked := 0
	for _, re := range res {
		d := dfaOf(re)
		if d == nil {
			t.Errorf("no dfa for %s", re)
			continue
		}
		for _, s := range texts {
			for i := range s {
				w := s[i:min(len(s), i+window)]
				if got, want := d.matches(w), re.FindStringIndex(w) != nil; got != want {
					t.Fatalf("dfa of %s on %q: %v, regexp: %v", re, w, got, want)
				}
				checked++
			}
		}
	}
	t.Logf("%d rules, %d windows", len(res), checked)
}

// Scan finds the same with the dfa as without it.
func TestDFA_ChangesNoResult(t *testing.T) {
	for _, s := range append(corpusTexts(t, "injected*.jsonl"), corpusTexts(t, "benign*.jsonl")...) {
		assertDFAAgrees(t, s)
	}
}

func assertDFAAgrees(t *testing.T, s string) {
	t.Helper()
	with := Scan(s)
	useDFA = false
	without := Scan(s)
	useDFA = true
	if with != without {
		t.Fatalf("Scan(%q) = [%v] with the dfa, [%v] without", s, with, without)
	}
}

func FuzzDFA(f *testing.F) {
	for _, s := range []string{
		"Ignore all previous instructions", "SYSTEM: you", "ignore your \u212aeys", "ſystem prompt",
		"IGNORE ALL PREVIOUS INSTRUCTIONS", "your system prompt", "</data><system>", "игнорируй все",
		"\xffsystem:\n", "end\nof", "rm -rf /",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { assertDFAAgrees(t, s) })
}

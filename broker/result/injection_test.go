package result_test

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/broker/result/internal/corpus"
)

// The detector's corpus: testdata/injection/injected*.jsonl and
// benign*.jsonl. Every sample names its source and licence. Columns of the
// report, in the order they were used:
//   - "written against": what the rules were first written against;
//   - "held out": injected.jsonl's holdout samples, measured once before
//     the rules were tuned on them (recall 29/53, 55%);
//   - "fresh": written by someone who never saw the rules, measured once
//     (recall 57/96, 59%; false positives 1/144) before tuning on it;
//   - "blind2": written the same way, never looked at sample by sample;
//     measured once as it stood then (recall 51/96, 53%; false positives
//     1/144, whose class was then fixed), and again after the rules were
//     made broader without looking at it;
//   - "blind3": written the same way and measured once (recall 41/96,
//     43%; false positives 1/144);
//   - blind2 and blind3 were then tuned on, class by class, with variants
//     of each class written anew in internal/detect/classes_test.go;
//   - "blind4": written the same way after that, by someone who saw
//     neither the rules nor the corpus, and measured once (recall 74/96,
//     77%; false positives 9/144, 6%), then tuned on class by class;
//   - "blind5": written the same way after all tuning and measured once:
//     recall 80/96 (83%), false positives 6/144 (4%). It is the honest
//     estimate of what the detector does on text it has never seen, and
//     the test never prints its samples, so that it stays unread.
const (
	// minRecall holds on the whole corpus and on the tuned parts.
	minRecall = 0.90
	// minBlindRecall and maxBlindFalsePositive keep the last blind set
	// from getting worse than it measured: on text nobody tuned for, the
	// rules catch about five injections in six and flag about one benign
	// text in twenty-five.
	minBlindRecall        = 0.80
	maxBlindFalsePositive = 0.05
	// maxFalsePositive holds on the whole benign corpus.
	maxFalsePositive = 0.02
)

type corpusSample = corpus.Sample

func loadCorpus(t testing.TB, pattern string) []corpusSample {
	t.Helper()
	samples, err := corpus.Load(filepath.Join("testdata", "injection"), pattern)
	if err != nil {
		t.Fatal(err)
	}
	return samples
}

// flagsOf sanitizes text as a result's only string and returns the details
// it was flagged with, after checking that flagging left it unchanged.
func flagsOf(t testing.TB, text string) []string {
	in := map[string]any{"text": text}
	out, findings := result.Sanitize(in, result.SanitizeOptions{KeepLinks: true})
	clean, _ := result.Sanitize(map[string]any{"text": out.(map[string]any)["text"]}, result.SanitizeOptions{KeepLinks: true})
	if clean.(map[string]any)["text"] != out.(map[string]any)["text"] {
		t.Fatalf("sanitizing %q is not idempotent", text)
	}
	var flags []string
	for _, f := range findings {
		if f.Kind == result.KindFlagged {
			flags = append(flags, strings.Split(f.Detail, ", ")...)
		}
	}
	return flags
}

// detailOf maps the corpus's categories to flag details.
func detailOf(category string) string {
	if category == "delimiter" {
		return "fake_delimiter"
	}
	return category
}

type tally struct{ hit, n int }

func (c tally) String() string {
	if c.n == 0 {
		return "      -"
	}
	return fmt.Sprintf("%3d/%-3d %4.0f%%", c.hit, c.n, 100*float64(c.hit)/float64(c.n))
}

// columns are the parts of the corpus, as the comment at the top tells.
var columns = [...]string{"written against", "held out", "fresh", "blind2", "blind3", "blind4", "blind5", "all"}

const (
	nCols  = len(columns)
	blind5 = nCols - 2
	last   = nCols - 1
)

// split returns the column of s.
func split(s corpusSample) int {
	switch {
	case strings.Contains(s.File, "blind5"):
		return blind5
	case strings.Contains(s.File, "blind4"):
		return 5
	case strings.Contains(s.File, "blind3"):
		return 4
	case strings.Contains(s.File, "blind2"):
		return 3
	case strings.Contains(s.File, "fresh"):
		return 2
	case s.Holdout:
		return 1
	}
	return 0
}

// TestInjectionCorpus measures the detector as callers meet it, through
// Sanitize: recall per category and language, and false positives on
// benign text. It fails under minRecall on the tuned parts or the whole
// corpus, under minBlindRecall or over maxBlindFalsePositive on the last
// blind set, or over maxFalsePositive on all benign text.
func TestInjectionCorpus(t *testing.T) {
	injected := loadCorpus(t, "injected*.jsonl")
	benign := loadCorpus(t, "benign*.jsonl")

	byCat := map[string]*[nCols]tally{}
	byLang := map[string]*[nCols]tally{}
	var all [nCols]tally
	for _, s := range injected {
		hit := 0
		if slices.Contains(flagsOf(t, s.Text), detailOf(s.Category)) {
			hit = 1
		} else if testing.Verbose() && split(s) != blind5 {
			t.Logf("missed %s/%s (%s): %q", s.Category, s.Lang, s.File, s.Text)
		}
		add := func(m map[string]*[nCols]tally, key string) {
			if m[key] == nil {
				m[key] = &[nCols]tally{}
			}
			m[key][split(s)].hit += hit
			m[key][split(s)].n++
			m[key][last].hit += hit
			m[key][last].n++
		}
		add(byCat, s.Category)
		if s.Category == "override" {
			add(byLang, s.Lang)
		}
		all[split(s)].hit += hit
		all[split(s)].n++
		all[last].hit += hit
		all[last].n++
	}
	var fp [nCols]tally
	for _, s := range benign {
		hit := 0
		if flags := flagsOf(t, s.Text); len(flags) > 0 {
			hit = 1
			if testing.Verbose() && split(s) != blind5 {
				t.Logf("false positive %v on %s (%s): %q", flags, s.Category, s.File, s.Text)
			}
		}
		fp[split(s)].hit += hit
		fp[split(s)].n++
		fp[last].hit += hit
		fp[last].n++
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\n%-20s", "recall")
	for _, c := range columns {
		fmt.Fprintf(&b, " %-15s", c)
	}
	b.WriteString("\n")
	row := func(name string, c [nCols]tally) {
		fmt.Fprintf(&b, "%-20s", name)
		for _, t := range c {
			fmt.Fprintf(&b, " %-15s", t)
		}
		b.WriteString("\n")
	}
	for _, k := range slices.Sorted(maps.Keys(byCat)) {
		row(k, *byCat[k])
	}
	row("all categories", all)
	for _, k := range slices.Sorted(maps.Keys(byLang)) {
		row("override, "+k, *byLang[k])
	}
	row("false positives", fp)
	t.Log(b.String())

	var tuned tally
	for _, c := range all[:blind5] {
		tuned.hit += c.hit
		tuned.n += c.n
	}
	if r := rate(tuned); r < minRecall {
		t.Errorf("recall on the tuned parts %.1f%% is under %.0f%%", 100*r, 100*minRecall)
	}
	if r := rate(all[last]); r < minRecall {
		t.Errorf("recall on the whole corpus %.1f%% is under %.0f%%", 100*r, 100*minRecall)
	}
	if r := rate(all[blind5]); r < minBlindRecall {
		t.Errorf("recall on %s %.1f%% is under %.0f%%", columns[blind5], 100*r, 100*minBlindRecall)
	}
	if r := rate(fp[blind5]); r > maxBlindFalsePositive {
		t.Errorf("false positives on %s %.1f%% are over %.0f%%", columns[blind5], 100*r, 100*maxBlindFalsePositive)
	}
	if r := rate(fp[last]); r > maxFalsePositive {
		t.Errorf("false positives %.1f%% are over %.0f%%", 100*r, 100*maxFalsePositive)
	}
}

func rate(c tally) float64 {
	if c.n == 0 {
		return 0
	}
	return float64(c.hit) / float64(c.n)
}

// TestFlagDetails_AreTheCorpusCategories keeps the documented vocabulary
// and the corpus in step.
func TestFlagDetails_AreTheCorpusCategories(t *testing.T) {
	for _, s := range loadCorpus(t, "injected*.jsonl") {
		if !slices.Contains(result.FlagDetails, detailOf(s.Category)) {
			t.Fatalf("corpus category %q has no flag in %v", s.Category, result.FlagDetails)
		}
	}
}

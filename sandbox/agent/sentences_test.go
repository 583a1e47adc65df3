package agent

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// sentenceCases pin where the summarizer cuts a line. They double as the
// seed corpus of FuzzSentences.
var sentenceCases = []struct {
	name, in string
	want     []string
}{
	{"empty", "", nil},
	{"no end mark", "Sea stars", []string{"Sea stars"}},
	{"plain sentences", "One. Two! Three? Four", []string{"One.", "Two!", "Three?", "Four"}},
	{"company before lowercase", "Widget Co. quarterly update Widget Co.", []string{"Widget Co. quarterly update Widget Co."}},
	{"company at a sentence's end", "Shares of Widget Co. rose. Analysts cheered.", []string{"Shares of Widget Co. rose.", "Analysts cheered."}},
	{"company then a new sentence", "She works at Widget Co. The firm makes widgets.", []string{"She works at Widget Co.", "The firm makes widgets."}},
	{"Inc and Ltd", "Acme Inc. and Foo Ltd. merged. Talks ended.", []string{"Acme Inc. and Foo Ltd. merged.", "Talks ended."}},
	{"titles before names", "Mr. Smith met Dr. Jones and Prof. Lee. They talked.", []string{"Mr. Smith met Dr. Jones and Prof. Lee.", "They talked."}},
	{"e.g. and i.e.", "Use a tool, e.g. Grep or i.e. Sed. Then stop.", []string{"Use a tool, e.g. Grep or i.e. Sed.", "Then stop."}},
	{"U.S. inside a sentence", "The U.S. economy grew 3.5 percent. Prices held.", []string{"The U.S. economy grew 3.5 percent.", "Prices held."}},
	{"U.S. at a sentence's end", "He moved to the U.S. He liked it.", []string{"He moved to the U.S.", "He liked it."}},
	{"a.m. and Ph.D.", "At 9 a.m. the Ph.D. student left. Nobody saw.", []string{"At 9 a.m. the Ph.D. student left.", "Nobody saw."}},
	{"decimals", "Version 3.5 costs $2.99 today. Buy it.", []string{"Version 3.5 costs $2.99 today.", "Buy it."}},
	{"initials", "J. R. R. Tolkien wrote it. John F. Kennedy read it.", []string{"J. R. R. Tolkien wrote it.", "John F. Kennedy read it."}},
	{"the pronoun I is no initial", "So did I. Then we left.", []string{"So did I.", "Then we left."}},
	{"ellipsis before lowercase", "Wait... what happened? Nothing… really.", []string{"Wait... what happened?", "Nothing… really."}},
	{"ellipsis before a capital", "He paused... Then he spoke.", []string{"He paused...", "Then he spoke."}},
	{"number abbreviation", "See No. 5 and Fig. 3 for details. No. That is all.", []string{"See No. 5 and Fig. 3 for details.", "No.", "That is all."}},
	{"lowercase no is a word", "She said no. Then she left.", []string{"She said no.", "Then she left."}},
	{"etc.", "Pens, ink, etc. are sold. Paper etc. Nothing else.", []string{"Pens, ink, etc. are sold.", "Paper etc.", "Nothing else."}},
	{"closing quote", `He said "Stop." Then he ran.`, []string{`He said "Stop."`, "Then he ran."}},
	{"closing bracket", "It grew (by 12%.) Then it fell.", []string{"It grew (by 12%.)", "Then it fell."}},
	{"opening quote on the next word", `Widget Co. "The best" they say.`, []string{`Widget Co.`, `"The best" they say.`}},
	{"domain names", "Visit example.com. It is free.", []string{"Visit example.com.", "It is free."}},
	{"no space after the mark", "a.b.c?d!e", []string{"a.b.c?d!e"}},
	{"run of marks", "Really?! Yes.", []string{"Really?!", "Yes."}},
	{"German abbreviations", "Wir liefern z.B. Tische bzw. Stühle. Das ist alles.", []string{"Wir liefern z.B. Tische bzw. Stühle.", "Das ist alles."}},
	{"Spanish titles", "El Sr. García llegó. La Sra. López también.", []string{"El Sr. García llegó.", "La Sra. López también."}},
	{"French titles", "Mme. Dupont est partie. M. Martin reste.", []string{"Mme. Dupont est partie.", "M. Martin reste."}},
	{"Chinese full stops", "今天很好。明天下雨！真的吗？", []string{"今天很好。", "明天下雨！", "真的吗？"}},
	{"Japanese closing bracket", "「こんにちは。」と言った。", []string{"「こんにちは。」", "と言った。"}},
	{"Hindi danda", "यह अच्छा है। वह भी।", []string{"यह अच्छा है।", "वह भी।"}},
	{"Arabic question mark", "هل أنت بخير؟ نعم.", []string{"هل أنت بخير؟", "نعم."}},
	{"Russian", "Цена выросла. Спрос упал.", []string{"Цена выросла.", "Спрос упал."}},
	{"space before the period", "odd . Spacing", []string{"odd .", "Spacing"}},
	{"only marks", "... !? .", []string{"...", "!?", "."}},
}

func TestSentences_SplitsAtSentenceEndsNotAbbreviations(t *testing.T) {
	for _, tt := range sentenceCases {
		t.Run(tt.name, func(t *testing.T) {
			got := slices.Collect(sentences(tt.in))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("sentences(%q)\n got  %q\n want %q", tt.in, got, tt.want)
			}
			checkSentences(t, tt.in, got)
		})
	}
}

func TestSentences_StopsWhenTheCallerDoes(t *testing.T) {
	// A line of a million sentences: firstSentences asks for two.
	line := strings.Repeat("Go on. ", 1<<20)
	got := firstSentences([]string{line}, 2)
	if want := []string{"Go on.", "Go on."}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSummarize_KeepsAbbreviationsInsideTheirSentence(t *testing.T) {
	const page = `<title>Widget Co. quarterly update</title>
<p>Widget Co. quarterly update. Revenue at Widget Co. rose 3.5% to $1.2 million, Mr. Smith said. The U.S. market led, e.g. Texas. Costs fell.</p>`
	job := Job{Task: "summarize", Content: []ContentFile{{Name: "c", MediaType: "text/html"}}}
	got := runWith(t, job, map[string]string{"c": page}).(SummaryResult)
	want := SummaryResult{
		Title:   "Widget Co. quarterly update",
		Summary: "Widget Co. quarterly update. Revenue at Widget Co. rose 3.5% to $1.2 million, Mr. Smith said. The U.S. market led, e.g. Texas.",
	}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// checkSentences holds for any line: sentences are trimmed and non-empty,
// and together they are the line, spaces aside.
func checkSentences(t *testing.T, in string, got []string) {
	t.Helper()
	for _, s := range got {
		if s == "" || strings.TrimSpace(s) != s {
			t.Errorf("sentence %q is empty or untrimmed", s)
		}
	}
	noSpace := func(s string) string {
		return strings.Map(func(r rune) rune {
			if unicode.IsSpace(r) {
				return -1
			}
			return r
		}, s)
	}
	if joined, whole := noSpace(strings.Join(got, "")), noSpace(in); joined != whole {
		t.Errorf("sentences lost or added text:\n in   %q\n got  %q", whole, joined)
	}
	if utf8.ValidString(in) {
		for _, s := range got {
			if !utf8.ValidString(s) {
				t.Errorf("sentence %q of valid UTF-8 input is not valid UTF-8", s)
			}
		}
	}
}

func FuzzSentences(f *testing.F) {
	for _, tt := range sentenceCases {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkSentences(t, in, slices.Collect(sentences(in)))
	})
}

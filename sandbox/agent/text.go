package agent

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// plainDocument reads plain text as paragraphs separated by blank lines,
// so hard-wrapped sentences stay whole.
func plainDocument(s string) document {
	var d document
	var para []string
	flush := func() {
		if len(para) > 0 {
			d.lines = append(d.lines, strings.Join(para, " "))
			para = para[:0]
		}
	}
	for line := range strings.Lines(s) {
		words := strings.Fields(line)
		if len(words) == 0 {
			flush()
			continue
		}
		if d.firstLine == "" {
			d.firstLine = strings.Join(words, " ")
		}
		para = append(para, words...)
	}
	flush()
	return d
}

// truncateBytes cuts s to at most n bytes without splitting a rune.
func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// truncateRunes cuts s to at most n runes.
func truncateRunes(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

// firstSentences returns up to n sentences from lines. A line end always
// ends a sentence, so a heading without a full stop stays on its own.
func firstSentences(lines []string, n int) []string {
	var out []string
	for _, line := range lines {
		for s := range sentences(line) {
			if len(out) == n {
				return out
			}
			out = append(out, s)
		}
	}
	return out
}

// tokenize lowercases s and splits it into words of letters and digits.
func tokenize(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r)
	})
}

// phraseMatcher finds which word phrases occur in a text as consecutive
// whole words. It streams the text and keeps only a window as long as the
// longest phrase, so memory does not grow with the content.
type phraseMatcher struct {
	phrases [][]string
	// byLast maps a phrase's last word to the indexes of the phrases that
	// end with it.
	byLast map[string][]int
	found  []bool
	window []string
	maxLen int
}

// newPhraseMatcher takes the tokenized phrases. An empty phrase (a label of
// punctuation only) never matches.
func newPhraseMatcher(phrases [][]string) *phraseMatcher {
	m := &phraseMatcher{phrases: phrases, byLast: map[string][]int{}, found: make([]bool, len(phrases))}
	for i, p := range phrases {
		if len(p) == 0 {
			continue
		}
		last := p[len(p)-1]
		m.byLast[last] = append(m.byLast[last], i)
		m.maxLen = max(m.maxLen, len(p))
	}
	return m
}

// feed adds the words of text. Phrases match across feeds, as they would
// across the line breaks of one text.
func (m *phraseMatcher) feed(text string) {
	for _, w := range tokenize(text) {
		if len(m.window) == m.maxLen && m.maxLen > 0 {
			m.window = append(m.window[:0], m.window[1:]...)
		}
		m.window = append(m.window, w)
		for _, i := range m.byLast[w] {
			p := m.phrases[i]
			if len(p) <= len(m.window) && slices.Equal(p, m.window[len(m.window)-len(p):]) {
				m.found[i] = true
			}
		}
	}
}

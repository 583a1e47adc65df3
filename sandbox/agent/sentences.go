package agent

import (
	"iter"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Punctuation the sentence splitter knows.
const (
	// spacedEnds end a sentence only when a space or the line's end
	// follows, so "3.5", "example.com" and "wait...what" stay whole.
	spacedEnds = ".!?…‼⁇⁈⁉"
	// unspacedEnds end a sentence whatever follows: Chinese and Japanese
	// put no space after them, and Devanagari and Arabic marks are never
	// inside a word.
	unspacedEnds = "。！？｡।॥؟"
	// closers after a sentence's end belong to that sentence.
	closers = `"')]}”’»›」』）］｝〕`
	// openers before a word are not part of it.
	openers = `"'([{“‘«‹¿¡「『（［｛〔`
)

// abbrevKind says when a period after a known abbreviation ends a
// sentence. A period followed by a lowercase word never does, whatever
// came before it: that rule alone keeps "Widget Co. quarterly update"
// whole, and the kinds settle what it cannot.
type abbrevKind int

const (
	// notAbbrev is an ordinary word: its period ends the sentence.
	notAbbrev abbrevKind = iota
	// abbrevNever is a title or a Latin or German abbreviation that
	// stands inside a sentence ("Dr.", "e.g.", "z.B."), and a
	// one-letter initial ("J. R. R. Tolkien"): its period never ends one.
	abbrevNever
	// abbrevMaybe often ends a sentence too ("Widget Co.", "etc.",
	// "U.S."): its period ends one only before a capitalized word.
	abbrevMaybe
	// abbrevNumber stands before a number ("No. 5", "Fig. 3"): its
	// period ends a sentence unless a digit follows.
	abbrevNumber
)

// abbreviations are matched as written, without their final period:
// "No." before a number is an abbreviation, "no." at a sentence's end is
// a word. Dotted forms ("U.S.", "e.g.") are told by their shape in
// abbreviationKind; neverDotted lists those of them that never end a
// sentence.
var abbreviations = map[string]abbrevKind{}

// neverDotted are the dotted abbreviations that stand inside a sentence,
// lowercased and without their final period.
var neverDotted = map[string]bool{
	"e.g": true, "i.e": true, "z.b": true, "d.h": true, "p.ej": true, "p.ex": true, "v.a": true, "s.o": true, "s.u": true,
}

func init() {
	for kind, words := range map[abbrevKind][]string{
		// English, French, German, Spanish and Italian titles; Latin.
		abbrevNever: {
			"Mr", "Mrs", "Ms", "Messrs", "Dr", "Drs", "Prof", "Rev", "Hon", "Gen", "Col", "Capt", "Cpt", "Lt", "Sgt", "Adm",
			"Gov", "Sen", "Rep", "Pres", "Supt", "Insp", "Mme", "Mmes", "Mlle", "Mlles", "Sr", "Sra", "Srta", "Dra", "Hr",
			"Hrn", "Fr", "Frl", "Sig", "Sigg", "Sigra", "vs", "Vs", "cf", "Cf", "viz", "approx", "Approx", "ca", "resp", "bzw",
			"vgl", "Vgl", "ggf", "sog", "inkl", "zzgl", "evtl",
		},
		abbrevMaybe: {
			"Co", "Inc", "Ltd", "Corp", "Bros", "Cie", "Jr", "Esq", "St", "Mt", "Ave", "Rd", "Blvd", "Dept", "Univ",
			"etc", "al", "usw", "ff",
		},
		abbrevNumber: {
			"No", "Nos", "Nr", "Fig", "Figs", "fig", "figs", "Vol", "Vols", "vol", "Art", "Ch", "ch", "Sec", "Eq",
			"p", "pp", "Abb", "Tab", "Nº",
		},
	} {
		for _, w := range words {
			abbreviations[w] = kind
		}
	}
}

// sentences yields the sentences of one line, trimmed and non-empty, and
// stops when the caller does: summarize needs the first few only, of a
// line that may be megabytes long. Nothing is dropped but the spaces
// between sentences.
func sentences(line string) iter.Seq[string] {
	return func(yield func(string) bool) {
		start := 0
		for i := 0; i < len(line); {
			r, size := utf8.DecodeRuneInString(line[i:])
			end := i + size
			if !strings.ContainsRune(spacedEnds, r) && !strings.ContainsRune(unspacedEnds, r) {
				i = end
				continue
			}
			// The whole run of marks and closers: "?!", "...", `."`.
			unspaced := false
			for {
				unspaced = unspaced || strings.ContainsRune(unspacedEnds, r)
				if end == len(line) {
					break
				}
				next, n := utf8.DecodeRuneInString(line[end:])
				if !strings.ContainsRune(spacedEnds, next) && !strings.ContainsRune(unspacedEnds, next) && !strings.ContainsRune(closers, next) {
					break
				}
				r, end = next, end+n
			}
			if !unspaced && end < len(line) {
				next, _ := utf8.DecodeRuneInString(line[end:])
				if !unicode.IsSpace(next) {
					i = end
					continue
				}
			}
			if !unspaced && !endsSentence(line[:i], line[i:end], line[end:]) {
				i = end
				continue
			}
			if s := strings.TrimSpace(line[start:end]); s != "" && !yield(s) {
				return
			}
			start, i = end, end
		}
		if s := strings.TrimSpace(line[start:]); s != "" {
			yield(s)
		}
	}
}

// endsSentence decides whether marks, a run of spaced ends and closers
// between before and after, end a sentence.
func endsSentence(before, marks, after string) bool {
	if strings.ContainsAny(marks, "!?‼⁇⁈⁉") {
		return true
	}
	next := firstWord(after)
	if next == "" {
		return true
	}
	first, _ := utf8.DecodeRuneInString(next)
	if unicode.IsLower(first) {
		// "Widget Co. quarterly", "approx. five", "wait... what": a new
		// sentence would start with a capital. Scripts without case
		// have no lowercase, so this never holds there.
		return false
	}
	if marks != "." {
		// An ellipsis, or a period inside quotes or brackets: no
		// abbreviation is written so.
		return true
	}
	switch abbreviationKind(lastWord(before)) {
	case abbrevNever:
		return false
	case abbrevMaybe:
		return unicode.IsUpper(first)
	case abbrevNumber:
		return !unicode.IsDigit(first)
	}
	return true
}

// abbreviationKind classifies word, the text before a period up to the
// previous space, openers removed.
func abbreviationKind(word string) abbrevKind {
	if kind, ok := abbreviations[word]; ok {
		return kind
	}
	if r, n := utf8.DecodeRuneInString(word); n == len(word) && unicode.IsUpper(r) && r != 'I' {
		// An initial. "I" is left out: "So did I. Then" ends a sentence.
		return abbrevNever
	}
	if isDotted(word) {
		if neverDotted[strings.ToLower(word)] {
			return abbrevNever
		}
		return abbrevMaybe
	}
	return notAbbrev
}

// isDotted reports whether word is letter groups of at most three joined
// by periods, as "U.S", "e.g", "Ph.D" or "p.ej" are; "example.com" is not.
func isDotted(word string) bool {
	groups := strings.Split(word, ".")
	if len(groups) < 2 {
		return false
	}
	for _, g := range groups {
		n := 0
		for _, r := range g {
			if !unicode.IsLetter(r) {
				return false
			}
			n++
		}
		if n == 0 || n > 3 {
			return false
		}
	}
	return true
}

// lastWord is the word s ends with, openers removed.
func lastWord(s string) string {
	if i := strings.LastIndexFunc(s, unicode.IsSpace); i >= 0 {
		_, n := utf8.DecodeRuneInString(s[i:])
		s = s[i+n:]
	}
	return strings.TrimLeft(s, openers)
}

// firstWord is the first word of s, openers removed; it starts with the
// rune that decides whether a new sentence began.
func firstWord(s string) string {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	if i := strings.IndexFunc(s, unicode.IsSpace); i >= 0 {
		s = s[:i]
	}
	return strings.TrimLeft(s, openers)
}

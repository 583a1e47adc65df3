package modelserver

import (
	"bufio"
	"encoding/json"
	"iter"
	"strings"
	"unicode/utf8"
)

const (
	// fillerEventBytes is how much filler one streamed event carries: large
	// enough that a 100 MiB reply is a few thousand events, small enough
	// that no event is a burden to hold.
	fillerEventBytes = 16 << 10
	// textEventBytes is how much of a script's text one streamed event
	// carries, so that even a short reply reaches the client as several
	// deltas it must put together, as from a real model.
	textEventBytes = 24
)

// filler is the padding text, shared by every reply. Plain lower-case words
// need no escaping in JSON, so filler is written as it is.
var filler = strings.Repeat("lorem ipsum dolor sit amet ", fillerEventBytes/27+1)[:fillerEventBytes]

// textBody is a reply's text: the script's text, then n bytes of filler
// that exist only while they are written.
type textBody struct {
	head string
	fill int64
}

// newTextBody makes the text of r: exactly r.PadBytes bytes when that is
// set, cutting Text at a rune boundary if it is longer.
func newTextBody(r Reply) textBody {
	if r.PadBytes <= 0 {
		return textBody{head: r.Text}
	}
	head := r.Text
	if int64(len(head)) > r.PadBytes {
		head = cutUTF8(head, int(r.PadBytes))
	}
	return textBody{head: head, fill: r.PadBytes - int64(len(head))}
}

func (t textBody) Len() int64 { return int64(len(t.head)) + t.fill }

// fragments yields the text in the pieces a stream sends, never splitting
// a rune.
func (t textBody) fragments() iter.Seq[string] {
	return func(yield func(string) bool) {
		for p := range pieces(t.head, textEventBytes) {
			if !yield(p) {
				return
			}
		}
		for f := range fillerPieces(t.fill) {
			if !yield(f) {
				return
			}
		}
	}
}

// writeJSON writes the text as one JSON string, the filler straight from
// the shared buffer inside the same quotes (it needs no escaping).
func (t textBody) writeJSON(w *bufio.Writer) error {
	b, err := json.Marshal(t.head)
	if err != nil {
		return err
	}
	if _, err := w.Write(b[:len(b)-1]); err != nil {
		return err
	}
	for f := range fillerPieces(t.fill) {
		if _, err := w.WriteString(f); err != nil {
			return err
		}
	}
	_, err = w.WriteString(`"`)
	return err
}

// fillerPieces yields n bytes of filler in event-sized slices of the shared
// buffer.
func fillerPieces(n int64) iter.Seq[string] {
	return func(yield func(string) bool) {
		for n > 0 {
			k := min(n, fillerEventBytes)
			if !yield(filler[:k]) {
				return
			}
			n -= k
		}
	}
}

// isFiller reports whether s is a slice of the shared filler, which is the
// only text written without escaping.
func isFiller(s string) bool {
	return len(s) <= len(filler) && s == filler[:len(s)]
}

// writeQuoted writes s as a JSON string without allocating for filler.
func writeQuoted(w *bufio.Writer, s string) {
	if isFiller(s) {
		_ = w.WriteByte('"')
		_, _ = w.WriteString(s)
		_ = w.WriteByte('"')
		return
	}
	b, _ := json.Marshal(s)
	_, _ = w.Write(b)
}

// pieces cuts s into pieces of at most n bytes (more only for a rune wider
// than n), never inside a rune.
func pieces(s string, n int) iter.Seq[string] {
	return func(yield func(string) bool) {
		for len(s) > 0 {
			p := cutUTF8(s, n)
			if p == "" {
				_, size := utf8.DecodeRuneInString(s)
				p = s[:size]
			}
			if !yield(p) {
				return
			}
			s = s[len(p):]
		}
	}
}

// cutUTF8 returns the longest prefix of s of at most n bytes that does not
// end inside a rune.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

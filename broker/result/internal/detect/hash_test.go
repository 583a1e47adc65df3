package detect

import (
	"strings"
	"testing"
)

// A word hashes the same in any case and wherever it stands, as the
// anchor table, the plain-word loop and the next-word sets need.
func TestHashWord_CaseAndPlace(t *testing.T) {
	for _, w := range []string{"a", "of", "the", "ignore", "previous", "instructions", "abcdefgh", "abcdefghi", "x1y2z3", "IGNOREALLPREVIOUSINSTRUCTIONS"} {
		want := wordHash(strings.ToLower(w))
		for _, v := range []string{w, strings.ToUpper(w), " " + w + " tail", "pre-" + strings.ToUpper(w) + ".", w + "zzzzzzzz"} {
			i := strings.Index(strings.ToLower(v), strings.ToLower(w))
			if got := hashWord(v, i, i+len(w)); got != want {
				t.Errorf("hashWord(%q, %d, %d) = %#x, want %#x as for %q", v, i, i+len(w), got, want, w)
			}
		}
	}
	if wordHash("ignore") == wordHash("ignores") || wordHash("the") == wordHash("thee") {
		t.Error("a word and a longer one hash the same")
	}
}

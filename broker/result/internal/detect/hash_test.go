package detect

import (
	"strings"
	"testing"
)

// letterBytes agrees with isLetter on every byte at every position.
func TestLetterBytes_EveryByte(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := range 8 {
			// The other bytes are letters, non-letters and high bytes in
			// turn, so that no carry between bytes goes unseen.
			for _, fill := range []byte{'a', 'Z', '@', '[', 0xff, 0x80, 0} {
				var b [8]byte
				for k := range b {
					b[k] = fill
				}
				b[pos] = byte(c)
				got := letterBytes(le64(string(b[:])))
				for k := range b {
					want := b[k] < 0x80 && isLetter(b[k])
					if has := got&(0x80<<(8*k)) != 0; has != want {
						t.Fatalf("letterBytes(%q): byte %d (%#x) letter = %v, want %v", b, k, b[k], has, want)
					}
				}
				if got&^msb8 != 0 {
					t.Fatalf("letterBytes(%q) = %#x sets bits other than the high ones", b, got)
				}
			}
		}
	}
}

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

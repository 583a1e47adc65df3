package swar

import "testing"

// Letters and Alnum agree with a byte-by-byte test on every byte at every
// position, whatever surrounds it, so that no carry between bytes goes
// unseen.
func TestClasses_EveryByte(t *testing.T) {
	isLetter := func(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
	isAlnum := func(c byte) bool { return isLetter(c) || '0' <= c && c <= '9' }
	for c := 0; c < 256; c++ {
		for pos := range 8 {
			for _, fill := range []byte{'a', 'Z', '0', '9', '@', '[', '/', ':', 0x7f, 0xff, 0x80, 0} {
				var b [8]byte
				for k := range b {
					b[k] = fill
				}
				b[pos] = byte(c)
				x := Word(string(b[:]))
				for name, f := range map[string]struct {
					got  uint64
					want func(byte) bool
				}{"Letters": {Letters(x), isLetter}, "Alnum": {Alnum(x), isAlnum}} {
					if f.got&^High != 0 {
						t.Fatalf("%s(%q) = %#x sets bits other than the high ones", name, b, f.got)
					}
					for k := range b {
						if has := f.got&(0x80<<(8*k)) != 0; has != f.want(b[k]) {
							t.Fatalf("%s(%q): byte %d (%#x) = %v, want %v", name, b, k, b[k], has, f.want(b[k]))
						}
					}
				}
			}
		}
	}
}

func TestAt_PastTheEnd(t *testing.T) {
	for _, tc := range []struct {
		s    string
		i    int
		want uint64
	}{
		{"abcdefghij", 0, Word("abcdefgh")},
		{"abcdefghij", 2, Word("cdefghij")},
		{"abcdefghij", 5, 0x6a6968_6766},
		{"ab", 0, 0x6261},
		{"ab", 2, 0},
	} {
		if got := At(tc.s, tc.i); got != tc.want {
			t.Errorf("At(%q, %d) = %#x, want %#x", tc.s, tc.i, got, tc.want)
		}
	}
}

// Package swar reads ASCII text eight bytes at a time, in one 64-bit
// word: the sanitizer and the injection detector both walk every byte of
// a result, and most of those bytes are letters and spaces.
package swar

const (
	// Low has the low bit of each byte set, High the high bit.
	Low  = 0x0101010101010101
	High = 0x8080808080808080
)

// Word reads w, which holds at least eight bytes, as a little-endian
// number: the first byte is the low one. The compiler makes it one load.
func Word(w string) uint64 {
	_ = w[7]
	return uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
}

// At returns the eight bytes of s from i as Word does, with zeros past the
// end of s.
func At(s string, i int) uint64 {
	if i+8 <= len(s) {
		return Word(s[i : i+8])
	}
	var x uint64
	for k := len(s) - 1; k >= i; k-- {
		x = x<<8 | uint64(s[k])
	}
	return x
}

// Letters returns x with the high bit set in each byte that is an ASCII
// letter, and every other bit clear.
func Letters(x uint64) uint64 {
	y := (x | 0x20*Low) &^ High // lower case, and no carry out of a byte below
	return inRange(y, 'a', 'z') &^ x & High
}

// Alnum returns x with the high bit set in each byte that is an ASCII
// letter or digit, and every other bit clear.
func Alnum(x uint64) uint64 {
	lo := x &^ High
	y := lo | 0x20*Low
	return (inRange(y, 'a', 'z') | inRange(lo, '0', '9')) &^ x & High
}

// inRange sets the high bit of each byte of y, whose bytes are all below
// 0x80, that lies in [from, to].
func inRange(y uint64, from, to byte) uint64 {
	return (y + uint64(0x80-from)*Low) &^ (y + uint64(0x80-to-1)*Low) & High
}

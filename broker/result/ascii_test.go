package result

import "testing"

// alnumEnd, eight bytes at a time, ends a run where a byte-by-byte loop
// does, from every start and at every length.
func TestAlnumEnd_AgreesWithBytes(t *testing.T) {
	for _, s := range []string{
		"", "a", "abc def", "abcdefgh", "abcdefghi", "abcdefgh ijklmnop", "sk_live_0123456789abcdef",
		"AKIA0123456789ABCDEF:x", "tokén-ünïcode", "x\x00y\xffz", "[link](https://example.com/a?b=c)",
	} {
		for i := 0; i <= len(s); i++ {
			want := i
			for want < len(s) && class[s[want]]&clsAlnum != 0 {
				want++
			}
			if got := alnumEnd(s, i); got != want {
				t.Errorf("alnumEnd(%q, %d) = %d, want %d", s, i, got, want)
			}
		}
	}
}

package footprint

import "testing"

func TestUnescapeMountinfo_DecodesOctalEscapes(t *testing.T) {
	tests := map[string]string{
		`/var/lib/airlock/jobs/a/output`: "/var/lib/airlock/jobs/a/output",
		`/var/lib/air\040lock/jobs`:      "/var/lib/air lock/jobs",
		`/x\134y`:                        `/x\y`,
		`/trailing\04`:                   `/trailing\04`,
		`/tab\011and\012newline`:         "/tab\tand\nnewline",
		`/not\999octal`:                  `/not\999octal`,
	}
	for in, want := range tests {
		if got := UnescapeMountinfo(in); got != want {
			t.Errorf("UnescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

package egress

import (
	"bufio"
	"strings"
	"testing"

	"github.com/airlock/airlock/policies/policy"
)

// FuzzNormalizeHost checks that normalization is total and idempotent: a
// host comes out as one canonical name or one address, and normalizing the
// result again changes nothing. The seeds run in every go test.
func FuzzNormalizeHost(f *testing.F) {
	for _, s := range loopbackSpellings {
		f.Add(s)
	}
	for _, s := range []string{"allowed.example", "ALLOWED.example.", "bücher.example", "xn--bcher-kva.example", "[::1]", "a..b", "0x", "foo.0x1g", "４２９４９６７２９５"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		name, addr, err := normalizeHost(in)
		if err != nil {
			return
		}
		if (name == "") == !addr.IsValid() {
			t.Fatalf("normalizeHost(%q) = %q, %v: want exactly one of name and address", in, name, addr)
		}
		if addr.IsValid() {
			if addr.Is4In6() || addr.Zone() != "" {
				t.Fatalf("normalizeHost(%q) = %v: mapped or zoned address", in, addr)
			}
			return
		}
		for _, l := range strings.Split(name, ".") {
			if !policy.ValidLabel(l) {
				t.Fatalf("normalizeHost(%q) = %q: label %q is not LDH", in, name, l)
			}
		}
		again, a2, err := normalizeHost(name)
		if err != nil || again != name || a2.IsValid() {
			t.Fatalf("normalizeHost(%q) = %q, but normalizing that gives %q, %v, %v", in, name, again, a2, err)
		}
	})
}

// FuzzReadHead checks that whatever head readHead accepts is framed one way
// only and names one Host.
func FuzzReadHead(f *testing.F) {
	for _, tt := range smuggling {
		f.Add(tt.req)
	}
	f.Add("POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc")
	f.Add("POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		h, err := readHead(bufio.NewReaderSize(strings.NewReader(in), maxLineBytes))
		if err != nil {
			return
		}
		cl, te := h.header["Content-Length"], h.header["Transfer-Encoding"]
		if len(cl)+len(te) > 1 || len(h.header["Host"]) != 1 || h.contentLength < -1 || h.chunked != (len(te) == 1) {
			t.Fatalf("accepted ambiguous head %q: %+v", in, h)
		}
	})
}

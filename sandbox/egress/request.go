package egress

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
)

// Request head limits. A request past them is refused, not truncated.
const (
	// maxLineBytes is the longest request or header line; it is also the
	// size of the connection's read buffer.
	maxLineBytes = 16 << 10
	// maxHeadBytes caps the request line and headers together.
	maxHeadBytes = 64 << 10
	// maxHeaderLines caps the number of header fields, and of trailer
	// fields after a chunked body.
	maxHeaderLines = 128
)

// errMalformed marks a request the proxy cannot read unambiguously. It is
// answered with 400 and the connection is closed, since after a framing
// doubt nothing later on the connection can be trusted either.
var errMalformed = errors.New("malformed request")

// errVersion marks a request that is not HTTP/1.1.
var errVersion = errors.New("unsupported HTTP version")

// requestHead is a parsed request line and header block.
type requestHead struct {
	method string
	// target is the request-target exactly as sent.
	target string
	// header holds every field, keys canonicalized, values in order.
	header http.Header
	// contentLength is the body length, or -1 for a chunked body.
	contentLength int64
	chunked       bool
	// close is set when the client sent Connection: close.
	close bool
}

// readHead reads and validates one request head. It parses the bytes
// itself, rather than through net/http, because net/http quietly resolves
// some ambiguities (it drops Content-Length when Transfer-Encoding is
// present, merges equal duplicate Content-Lengths, accepts obsolete line
// folding) that the proxy must refuse instead: a client and an upstream
// that resolve them differently is how requests are smuggled.
func readHead(br *bufio.Reader) (*requestHead, error) {
	budget := maxHeadBytes
	line, err := readLine(br, &budget)
	if err != nil {
		return nil, err
	}
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !isToken(method) || target == "" || strings.ContainsAny(target, " \t") {
		return nil, fmt.Errorf("%w: request line is not METHOD SP target SP version", errMalformed)
	}
	if proto != "HTTP/1.1" {
		return nil, fmt.Errorf("%w: %.20q (only HTTP/1.1 is proxied)", errVersion, proto)
	}
	h := &requestHead{method: method, target: target, header: http.Header{}}
	for n := 0; ; n++ {
		line, err := readLine(br, &budget)
		if err != nil {
			return nil, err
		}
		if line == "" {
			break
		}
		if n == maxHeaderLines {
			return nil, fmt.Errorf("%w: more than %d header fields", errMalformed, maxHeaderLines)
		}
		name, value, err := parseField(line)
		if err != nil {
			return nil, err
		}
		h.header[name] = append(h.header[name], value)
	}
	if err := h.checkFraming(); err != nil {
		return nil, err
	}
	return h, nil
}

// readLine returns one CRLF-terminated line without the CRLF. A bare LF or
// CR, or a NUL, anywhere in the line is refused: parsers disagree on them.
func readLine(br *bufio.Reader, budget *int) (string, error) {
	b, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", fmt.Errorf("%w: a line is longer than %d bytes", errMalformed, maxLineBytes)
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(b) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	if *budget -= len(b); *budget < 0 {
		return "", fmt.Errorf("%w: head is longer than %d bytes", errMalformed, maxHeadBytes)
	}
	line, ok := bytes.CutSuffix(b, []byte("\r\n"))
	if !ok || bytes.ContainsAny(line, "\r\n\x00") {
		return "", fmt.Errorf("%w: line not terminated by CRLF, or holding CR, LF or NUL", errMalformed)
	}
	return string(line), nil
}

// parseField splits name: value. Whitespace before the colon and obsolete
// line folding are refused, as RFC 9112 tells servers to do.
func parseField(line string) (string, string, error) {
	if line[0] == ' ' || line[0] == '\t' {
		return "", "", fmt.Errorf("%w: obsolete line folding", errMalformed)
	}
	name, value, ok := strings.Cut(line, ":")
	if !ok || !isToken(name) {
		return "", "", fmt.Errorf("%w: bad header field name", errMalformed)
	}
	value = strings.Trim(value, " \t")
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < ' ' && c != '\t' || c == 0x7f {
			return "", "", fmt.Errorf("%w: control byte in header %s", errMalformed, textproto.CanonicalMIMEHeaderKey(name))
		}
	}
	// Some servers read an underscore as a hyphen; a second, disguised
	// framing or Host header is refused rather than forwarded.
	canon := textproto.CanonicalMIMEHeaderKey(name)
	switch textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(name, "_", "-")) {
	case "Content-Length", "Transfer-Encoding", "Host":
		if strings.Contains(name, "_") {
			return "", "", fmt.Errorf("%w: header %q imitates a framing header", errMalformed, name)
		}
	}
	return canon, value, nil
}

// checkFraming allows exactly one way to find the end of the body.
func (h *requestHead) checkFraming() error {
	cl, te := h.header["Content-Length"], h.header["Transfer-Encoding"]
	switch {
	case len(cl) > 0 && len(te) > 0:
		return fmt.Errorf("%w: both Content-Length and Transfer-Encoding", errMalformed)
	case len(cl) > 1:
		return fmt.Errorf("%w: more than one Content-Length", errMalformed)
	case len(te) > 1 || len(te) == 1 && te[0] != "chunked":
		return fmt.Errorf("%w: Transfer-Encoding other than exactly chunked", errMalformed)
	case len(te) == 1:
		h.contentLength, h.chunked = -1, true
	case len(cl) == 1:
		v := cl[0]
		if v == "" || len(v) > 18 || strings.TrimLeft(v, "0123456789") != "" {
			return fmt.Errorf("%w: Content-Length is not a decimal number", errMalformed)
		}
		h.contentLength, _ = strconv.ParseInt(v, 10, 64)
	}
	if hosts := h.header["Host"]; len(hosts) != 1 {
		return fmt.Errorf("%w: want exactly one Host header, have %d", errMalformed, len(hosts))
	}
	for _, v := range h.header["Connection"] {
		for _, opt := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(opt), "close") {
				h.close = true
			}
		}
	}
	return nil
}

// hasBody reports whether the request carries body bytes.
func (h *requestHead) hasBody() bool { return h.chunked || h.contentLength > 0 }

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// body reads exactly the request body framed by a head, so that the next
// request on the connection starts where this one ends.
type body struct {
	r io.Reader
	// remaining is the Content-Length left, for a length-framed body.
	remaining int64
	br        *bufio.Reader
	chunked   bool
	// done is set once the body has been read to its end. It is atomic
	// because the transport reads the body on its own goroutine.
	done atomic.Bool
}

// newBody returns the body of h, read from br.
func newBody(h *requestHead, br *bufio.Reader) *body {
	b := &body{br: br, chunked: h.chunked, remaining: h.contentLength}
	switch {
	case h.chunked:
		b.r = httputil.NewChunkedReader(br)
	case h.contentLength > 0:
		b.r = br
	default:
		b.done.Store(true)
	}
	return b
}

// finished reports whether the body has been read to its end, so that the
// next request on the connection starts right after it.
func (b *body) finished() bool { return b.done.Load() }

// Read implements io.Reader.
func (b *body) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, io.EOF
	}
	if !b.chunked {
		if int64(len(p)) > b.remaining {
			p = p[:b.remaining]
		}
		n, err := b.r.Read(p)
		b.remaining -= int64(n)
		if b.remaining == 0 {
			b.done.Store(true)
			return n, nil
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	}
	n, err := b.r.Read(p)
	if errors.Is(err, io.EOF) {
		// The chunked reader stops after the last chunk; the trailer
		// section is this request's too, and is dropped.
		if terr := b.skipTrailer(); terr != nil {
			return n, terr
		}
		b.done.Store(true)
	}
	return n, err
}

func (b *body) skipTrailer() error {
	budget := maxHeadBytes
	for range maxHeaderLines {
		line, err := readLine(b.br, &budget)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if line == "" {
			return nil
		}
	}
	return fmt.Errorf("%w: more than %d trailer fields", errMalformed, maxHeaderLines)
}

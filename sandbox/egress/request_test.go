package egress

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// smuggling are requests an intermediary and an upstream could frame
// differently; the proxy refuses every one before contacting anyone.
var smuggling = []struct {
	name, req string
	want      int
}{
	{"Content-Length and Transfer-Encoding", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"Transfer-Encoding and Content-Length", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
	{"duplicate equal Content-Length", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400},
	{"conflicting Content-Length", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400},
	{"Content-Length list", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5, 5\r\n\r\nhello", 400},
	{"signed Content-Length", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: +5\r\n\r\nhello", 400},
	{"hex Content-Length", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 0x5\r\n\r\nhello", 400},
	{"differently cased duplicate Content-Length", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\ncontent-length: 5\r\nCONTENT-LENGTH: 6\r\n\r\nhello!", 400},
	{"Content_Length lookalike", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent_Length: 5\r\n\r\nhello", 400},
	{"Transfer-Encoding gzip", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
	{"Transfer-Encoding gzip, chunked", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400},
	{"Transfer-Encoding chunked twice", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"Transfer-Encoding Chunked", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n", 400},
	{"Transfer-Encoding xchunked", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400},
	{"space before colon", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
	{"obsolete line folding", "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400},
	{"bare LF", "GET http://allowed.test/ HTTP/1.1\nHost: allowed.test\n\n", 400},
	{"bare CR in value", "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-A: a\rb\r\n\r\n", 400},
	{"NUL in value", "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-A: a\x00b\r\n\r\n", 400},
	{"no Host", "GET http://allowed.test/ HTTP/1.1\r\n\r\n", 400},
	{"two Host headers", "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nHost: allowed.test\r\n\r\n", 400},
	{"CONNECT with Content-Length", "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\nContent-Length: 5\r\n\r\nhello", 400},
	{"CONNECT with chunked body", "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"CONNECT without port", "CONNECT allowed.test HTTP/1.1\r\nHost: allowed.test\r\n\r\n", 400},
	{"origin-form", "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n", 400},
	{"asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: allowed.test\r\n\r\n", 400},
	{"https absolute-form", "GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", 400},
	{"userinfo", "GET http://user@allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", 400},
	{"percent-encoded host", "GET http://%61llowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", 400},
	{"fragment", "GET http://allowed.test/#x HTTP/1.1\r\nHost: allowed.test\r\n\r\n", 400},
	{"HTTP/1.0", "GET http://allowed.test/ HTTP/1.0\r\nHost: allowed.test\r\n\r\n", 505},
	{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
	{"two spaces in request line", "GET  http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", 400},
}

func TestEgress_RefusesRequestSmuggling(t *testing.T) {
	h := newHarness(t, Config{})
	o := newOrigin(t, nil)
	h.host("allowed.test", "11.22.33.1", o)
	h.net.publish("11.22.33.1", 443, o.Listener.Addr().String())
	s := h.register("allowed.test:80", "allowed.test:443")
	for _, tt := range smuggling {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := h.raw(tt.req); code != tt.want {
				t.Errorf("got %d %q, want %d", code, body, tt.want)
			}
		})
	}
	if n := o.hits.Load(); n != 0 {
		t.Errorf("upstream got %d hits, want 0", n)
	}
	if st := s.Stats(); st.Denied != len(smuggling) {
		t.Errorf("stats %+v, want every refusal logged (%d)", st, len(smuggling))
	}
}

func TestEgress_ForwardsBodiesAndKeepsConnectionAlive(t *testing.T) {
	h := newHarness(t, Config{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Length", r.Header.Get("Content-Length"))
		io.WriteString(w, "ok")
	})
	h.host("allowed.test", "11.22.33.1", o)
	s := h.register("allowed.test:80")

	c := h.dial(jobSrc)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST http://allowed.test/a HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\n\r\nhello"+
		"POST http://allowed.test/b HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"+
		"GET http://allowed.test/c HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
	for i := range 3 {
		if code, body := readResponse(t, br, "GET"); code != 200 || body != "ok" {
			t.Fatalf("response %d: %d %q", i, code, body)
		}
	}
	if got, want := o.allBodies(), []string{"hello", "abcde", ""}; !slices.Equal(got, want) {
		t.Errorf("upstream bodies %q, want %q", got, want)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after Connection: close, read %v, want EOF", err)
	}
	waitFor(t, "three attempts", func() bool { return s.Stats().Allowed == 3 })
	if st := s.Stats(); st.Allowed != 3 || st.BytesUp != 10 {
		t.Errorf("stats %+v, want 3 allowed and 10 bytes up", st)
	}
}

func TestEgress_AnswersExpectContinue(t *testing.T) {
	h := newHarness(t, Config{})
	o := newOrigin(t, nil)
	h.host("allowed.test", "11.22.33.1", o)
	h.register("allowed.test:80")
	c := h.dial(jobSrc)
	br := bufio.NewReader(c)
	io.WriteString(c, "PUT http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("got %q, %v; want 100 Continue", line, err)
	}
	br.ReadString('\n')
	io.WriteString(c, "abc")
	if code, _ := readResponse(t, br, "PUT"); code != 200 {
		t.Errorf("got %d", code)
	}
	if _, body := o.lastRequest(); body != "abc" {
		t.Errorf("upstream body %q", body)
	}
}

func TestReadHead_ParsesStrictRequest(t *testing.T) {
	h, err := readHead(bufio.NewReader(strings.NewReader(
		"POST http://a.test/x HTTP/1.1\r\nHost: a.test\r\nX-Multi: 1\r\nx-multi: 2\r\nContent-Length: 12\r\nConnection: keep-alive, close\r\n\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	if h.method != "POST" || h.target != "http://a.test/x" || h.contentLength != 12 || h.chunked || !h.close {
		t.Errorf("head = %+v", h)
	}
	if got := h.header["X-Multi"]; len(got) != 2 {
		t.Errorf("X-Multi = %q, want both values", got)
	}
}

func TestReadHead_RefusesOversizedHeads(t *testing.T) {
	long := "GET http://a.test/" + strings.Repeat("a", maxLineBytes) + " HTTP/1.1\r\nHost: a.test\r\n\r\n"
	many := "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n" + strings.Repeat("X-A: 1\r\n", maxHeaderLines+1) + "\r\n"
	for name, req := range map[string]string{"long line": long, "many fields": many} {
		if _, err := readHead(bufio.NewReaderSize(strings.NewReader(req), maxLineBytes)); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err = %v, want errMalformed", name, err)
		}
	}
}

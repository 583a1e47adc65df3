package egress

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Paths that an upstream which decodes, splits or normalizes before it
// routes could read outside the service's base path: each is refused with
// 403 and a denied attempt, and never reaches the upstream.
var hostileAliasPaths = []string{
	"/a%2Fb", "/a%2fb", "/..%2Fadmin", "/..%2fadmin",
	"/a%5Cb", "/a%5cb", "/..%5C..%5Cadmin",
	"/a\\b", "/..\\admin",
	"/%2e%2e/admin", "/%2E%2E/admin", "/%2e/admin", "/.%2e/admin", "/a%2Ejson",
	"/%252F", "/%252f", "/%252e%252e/admin", "/%25252F", "/a%25b",
	"/%C0%AE%C0%AE/admin", "/%c0%af", "/%E0%80%AE",
	"/../admin", "/a/../../admin", "/./admin", "/a/.", "/..", "/a/..",
	"/..;/admin", "/a/..;x/admin", "/.;/admin", "/%3B..", "/a%3bb",
	"//evil.test/x", "/a//b", "/a///",
	"/a%00b", "/a%0Ab", "/a%0d%0aX-Injected:%201", "/a%7Fb", "/a%09b",
	"/a%", "/a%2", "/a%zz", "/a%%32%46",
	"/é", "/a\x01b", "/a\"b", "/a<b>", "/a{b}", "/a|b", "/a^b", "/a`b",
}

// Paths an API client sends: they still go through, as written.
var benignAliasPaths = []string{
	"/chat/completions", "/models/gpt-4o:generate", "/files/a.json", "/a/b/",
	"/a%20b", "/x/%E2%82%AC", "/v1/a-b_c~d", "/a@b", "/a+b,c;v=1", "/a%3Fb", "/a%23b",
	"/.well-known/x", "/a..b", "/...", "/a.",
}

func TestCheckAliasPath_RefusesWhatCouldLeaveTheBasePath(t *testing.T) {
	for _, p := range hostileAliasPaths {
		if err := checkAliasPath(p); err == nil {
			t.Errorf("checkAliasPath(%q) = nil, want a refusal", p)
		}
	}
	for _, p := range benignAliasPaths {
		if err := checkAliasPath(p); err != nil {
			t.Errorf("checkAliasPath(%q) = %v, want nil", p, err)
		}
	}
}

// FuzzCheckAliasPath: a path the check lets through means one thing to
// every decoder: decoding it again and again changes it no more after the
// first time, adds no separator, and leaves no dot segment, so joined to
// the base it stays under the base however the upstream reads it.
func FuzzCheckAliasPath(f *testing.F) {
	for _, p := range append(hostileAliasPaths, benignAliasPaths...) {
		f.Add(p)
	}
	base, _ := url.Parse("https://api.test/v1")
	f.Fuzz(func(t *testing.T, p string) {
		if checkAliasPath(p) != nil {
			return
		}
		once, err := url.PathUnescape(p)
		if err != nil {
			t.Fatalf("%q passed but does not decode: %v", p, err)
		}
		if twice, _ := url.PathUnescape(once); twice != once {
			t.Errorf("%q passed but decodes differently twice: %q, %q", p, once, twice)
		}
		if strings.Count(once, "/") != strings.Count(p, "/") || strings.ContainsAny(once, "\\%") {
			t.Errorf("%q passed but decodes to %q", p, once)
		}
		for _, seg := range strings.Split(once, "/") {
			name, _, _ := strings.Cut(seg, ";")
			if name == "." || name == ".." {
				t.Errorf("%q passed with a dot segment once decoded: %q", p, once)
			}
		}
		u, err := serviceURL(base, p)
		if err != nil {
			return
		}
		if !strings.HasPrefix(u.Path, "/v1/") && u.Path != "/v1" {
			t.Errorf("%q leaves the base: %q", p, u.Path)
		}
	})
}

// aliasRequest sends one request to the model alias and returns the
// status and the path the upstream saw, "" if it saw nothing.
func aliasRequest(t *testing.T, h *harness, m *modelAPI, method, path string) (int, string) {
	t.Helper()
	m.mu.Lock()
	m.uri = ""
	m.mu.Unlock()
	c := h.dial(jobSrc)
	defer c.Close()
	fmt.Fprintf(c, "%s http://model.airlock.internal%s HTTP/1.1\r\nHost: model.airlock.internal\r\nConnection: close\r\n\r\n", method, path)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %q: %v", method, path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	m.mu.Lock()
	defer m.mu.Unlock()
	return resp.StatusCode, m.uri
}

func TestService_RefusesPathsAnUpstreamCouldReadOutsideTheBase(t *testing.T) {
	m := newModelAPI(t)
	h := serviceHarness(t, m)
	s := h.registerService(t, m, "/v1")
	for _, p := range hostileAliasPaths {
		if strings.ContainsAny(p, " \t\x00\r\n") {
			continue // the request line itself is refused
		}
		code, seen := aliasRequest(t, h, m, "GET", p)
		if code != http.StatusForbidden || seen != "" {
			t.Errorf("GET %q: %d, upstream saw %q; want 403 and nothing upstream", p, code, seen)
		}
	}
	for _, a := range s.Log() {
		if a.Allowed || a.Rule != "" || a.Status != http.StatusForbidden {
			t.Errorf("attempt %+v, want denied with 403", a)
		}
	}
	for _, p := range benignAliasPaths {
		code, seen := aliasRequest(t, h, m, "GET", p)
		if code != 200 || seen != "/v1"+p {
			t.Errorf("GET %q: %d, upstream saw %q; want 200 and /v1%s", p, code, seen, p)
		}
	}
	// A relayed attempt is recorded once its response is written.
	waitFor(t, "every benign attempt", func() bool { return s.Stats().Allowed == len(benignAliasPaths) })
}

func TestService_AllowsOnlyAFixedListOfMethodsSpelledExactly(t *testing.T) {
	m := newModelAPI(t)
	h := serviceHarness(t, m)
	s := h.registerService(t, m, "/v1")
	for _, method := range []string{
		"TRACE", "trace", "Trace", "tRACE", "TRACK", "track", "connect", "Connect",
		"OPTIONS", "options", "get", "Get", "post", "Post", "head", "delete", "patch", "put",
		"PROPFIND", "MKCOL", "M-SEARCH", "FOO", "DEBUG", "PRI",
	} {
		code, seen := aliasRequest(t, h, m, method, "/models")
		if code < 400 || seen != "" {
			t.Errorf("%s: %d, upstream saw %q; want a refusal", method, code, seen)
		}
	}
	for _, a := range s.Log() {
		if a.Allowed {
			t.Errorf("attempt %+v allowed", a)
		}
	}
	for _, method := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} {
		if code, seen := aliasRequest(t, h, m, method, "/models"); code != 200 || seen != "/v1/models" {
			t.Errorf("%s: %d, upstream saw %q; want 200", method, code, seen)
		}
	}
}

// Outside aliases too, TRACE and TRACK are refused in any case, and a case
// variant of a known method is refused rather than guessed at; extension
// methods still reach an allowed host.
func TestProxy_RefusesEchoMethodsAndCaseVariantsOfKnownOnes(t *testing.T) {
	h := newHarness(t, Config{})
	o := newOrigin(t, nil)
	h.host("allowed.test", "11.22.33.1", o)
	h.register("allowed.test:80")
	for _, method := range []string{"TRACE", "trace", "Trace", "TRACK", "track", "get", "Get", "post", "connect", "options", "Delete"} {
		code, _ := h.raw(method + " http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
		if code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", method, code)
		}
	}
	if n := o.hits.Load(); n != 0 {
		t.Errorf("origin hit %d times", n)
	}
	for _, method := range []string{"GET", "PROPFIND", "OPTIONS"} {
		if code, _ := h.raw(method + " http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n"); code != 200 {
			t.Errorf("%s: %d, want 200", method, code)
		}
	}
}

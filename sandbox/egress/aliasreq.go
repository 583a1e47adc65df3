package egress

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// aliasMethods are the methods a service alias carries, spelled exactly:
// what an API client sends. TRACE, TRACK and CONNECT are not among them,
// nor OPTIONS or any extension method, and neither is a lowercase or
// mixed-case spelling, which some servers take for the uppercase one.
var aliasMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true,
	http.MethodPut: true, http.MethodPatch: true, http.MethodDelete: true,
}

// knownMethods are the methods of RFC 9110 and RFC 5789 plus TRACK.
var knownMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace, "TRACK",
}

// checkMethod refuses, for any request, a method that echoes the request
// back (TRACE, TRACK) in any case, and any other case variant of a known
// method: methods are case-sensitive, but servers that uppercase them
// exist, and to them "trace" is TRACE.
func checkMethod(method string) error {
	for _, m := range knownMethods {
		switch {
		case !strings.EqualFold(method, m):
		case m == http.MethodTrace || m == "TRACK":
			// TRACE echoes the request, injected credential included.
			return fmt.Errorf("method %s is not proxied", m)
		case method != m:
			return fmt.Errorf("method %.32q is a case variant of %s; send %s", method, m, m)
		}
	}
	return nil
}

// errAliasPath marks a service alias path that an upstream could read as
// another path than the proxy does.
var errAliasPath = errors.New("service alias path refused")

// checkAliasPath refuses an alias request's path (without its query) that
// an upstream could resolve outside the service's base path, or otherwise
// than the proxy reads it: whatever decodes it once more, splits on
// backslashes or parameters, or merges slashes. Refused are:
//   - bytes outside RFC 3986's path characters: backslash, controls,
//     spaces, quotes, brackets, non-ASCII;
//   - escapes of '/', '\', '.', '%' (so no double encoding such as
//     %252F), ';' and control bytes, in either case; a malformed escape;
//     escapes that do not decode to UTF-8 (an overlong %C0%AE is a dot to
//     some decoders);
//   - dot segments, also before a ';' parameter (/..;/), and empty
//     segments (//) but for a trailing slash.
func checkAliasPath(p string) error {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return fmt.Errorf("%w: a malformed escape", errAliasPath)
			}
			b := unhex(p[i+1])<<4 | unhex(p[i+2])
			if b < 0x20 || b == 0x7f || strings.IndexByte("/\\.%;", b) >= 0 {
				return fmt.Errorf("%w: an escaped separator, dot, percent, parameter or control byte (%%%02X)", errAliasPath, b)
			}
			i += 2
		case !isPathChar(c):
			return fmt.Errorf("%w: byte %#02x is not a URL path character", errAliasPath, c)
		}
	}
	decoded, err := url.PathUnescape(p)
	if err != nil || !utf8.ValidString(decoded) {
		return fmt.Errorf("%w: escapes that do not decode to UTF-8", errAliasPath)
	}
	if p != "" && p[0] != '/' {
		return fmt.Errorf("%w: the path does not start with /", errAliasPath)
	}
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		name, _, _ := strings.Cut(seg, ";")
		switch {
		case name == "." || name == "..":
			return fmt.Errorf("%w: a dot segment", errAliasPath)
		case seg == "" && i > 0 && i < len(segs)-1:
			return fmt.Errorf("%w: an empty segment (//)", errAliasPath)
		}
	}
	return nil
}

// isPathChar reports whether c may appear unescaped in a URL path: an
// RFC 3986 pchar or '/'.
func isPathChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

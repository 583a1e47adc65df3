package egress

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/airlock/airlock/policies/policy"
)

// maxHostBytes bounds a host before IDNA sees it; DNS names stop at 253.
const maxHostBytes = 1024

// target is a normalized destination. Exactly one of name and addr is set,
// so that one address has one spelling and one name has one spelling
// whatever the request wrote.
type target struct {
	// name is a DNS name in lowercase ASCII (IDNA A-labels), without the
	// trailing dot.
	name string
	// addr is an IP literal, IPv4-mapped IPv6 unmapped to IPv4.
	addr netip.Addr
	port uint16
}

// valid reports whether t names a destination at all.
func (t target) valid() bool { return t.name != "" || t.addr.IsValid() }

// host is the canonical host, without brackets.
func (t target) host() string {
	if t.name != "" {
		return t.name
	}
	return t.addr.String()
}

// hostPort is the canonical authority, with brackets for IPv6.
func (t target) hostPort() string {
	return net.JoinHostPort(t.host(), strconv.Itoa(int(t.port)))
}

// parseAuthority parses host[:port] or [ipv6][:port]; defaultPort applies
// when there is no port, or is 0 when one is required. Userinfo and
// percent-escapes are refused rather than decoded: no client needs them in
// a proxy target, and decoding is where parsers start to disagree.
func parseAuthority(s string, defaultPort uint16) (target, error) {
	if strings.ContainsAny(s, "@%") {
		return target{}, fmt.Errorf("%w: authority %q has userinfo or escapes", ErrBadHost, s)
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return target{}, fmt.Errorf("%w: %q: missing ]", ErrBadHost, s)
		}
		host = s[:end+1]
		rest := s[end+1:]
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return target{}, fmt.Errorf("%w: %q: junk after ]", ErrBadHost, s)
			}
			port = p
		} else if defaultPort == 0 {
			return target{}, fmt.Errorf("%w: %q: want host:port", ErrBadHost, s)
		}
	} else if h, p, found := strings.Cut(s, ":"); found {
		host, port = h, p
	} else if defaultPort == 0 {
		return target{}, fmt.Errorf("%w: %q: want host:port", ErrBadHost, s)
	}
	t := target{port: defaultPort}
	if host != s {
		n, err := parsePort(port)
		if err != nil {
			return target{}, err
		}
		t.port = n
	}
	name, addr, err := normalizeHost(host)
	if err != nil {
		return target{}, err
	}
	t.name, t.addr = name, addr
	return t, nil
}

// parsePort accepts decimal digits only, 1-65535.
func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%w: port %q is not a number", ErrBadHost, s)
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%w: port %q is not in 1-65535", ErrBadHost, s)
	}
	return uint16(n), nil
}

// normalizeHost returns a host as either a canonical DNS name or an IP
// address. It maps case, a trailing dot and Unicode (IDNA, lookup profile)
// onto one name, and reads every IPv4 spelling that inet_aton or a WHATWG
// URL parser would read (2130706433, 0x7f000001, 0177.0.0.1, 127.1) as that
// address, so a spelling can never make an address pass for a name.
func normalizeHost(h string) (name string, addr netip.Addr, err error) {
	if h == "" || len(h) > maxHostBytes {
		return "", netip.Addr{}, fmt.Errorf("%w: empty or overlong host", ErrBadHost)
	}
	if !utf8.ValidString(h) {
		// IDNA would encode the replacement character as a label of its own.
		return "", netip.Addr{}, fmt.Errorf("%w: host is not valid UTF-8", ErrBadHost)
	}
	if inner, ok := strings.CutPrefix(h, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		a, err := netip.ParseAddr(inner)
		if !ok || err != nil || !a.Is6() || a.Zone() != "" {
			return "", netip.Addr{}, fmt.Errorf("%w: %q is not a bracketed IPv6 address", ErrBadHost, h)
		}
		return "", a.Unmap(), nil
	}
	if strings.ContainsAny(h, ":[]") {
		return "", netip.Addr{}, fmt.Errorf("%w: %q: IPv6 addresses go in brackets", ErrBadHost, h)
	}
	// IDNA comes first: it maps full-width digits and dots to ASCII, and
	// the number check below must see what a resolver would see.
	ascii, err := idna.Lookup.ToASCII(h)
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("%w: %q: %v", ErrBadHost, h, err)
	}
	ascii = strings.TrimSuffix(ascii, ".")
	labels := strings.Split(ascii, ".")
	if endsInNumber(labels[len(labels)-1]) {
		a, ok := parseIPv4(labels)
		if !ok {
			return "", netip.Addr{}, fmt.Errorf("%w: %q looks like an IPv4 address but is not one", ErrBadHost, h)
		}
		return "", a, nil
	}
	if len(ascii) > 253 {
		return "", netip.Addr{}, fmt.Errorf("%w: %q is longer than 253 bytes", ErrBadHost, h)
	}
	for _, l := range labels {
		if !policy.ValidLabel(l) {
			return "", netip.Addr{}, fmt.Errorf("%w: %q is not a valid DNS name", ErrBadHost, h)
		}
	}
	return ascii, netip.Addr{}, nil
}

// endsInNumber is the WHATWG URL test for "this host is an IPv4 address":
// a last label of digits, or 0x and hex digits.
func endsInNumber(l string) bool {
	if l == "" {
		return false
	}
	if hex, ok := strings.CutPrefix(l, "0x"); ok {
		return strings.TrimLeft(hex, "0123456789abcdef") == ""
	}
	return strings.TrimLeft(l, "0123456789") == ""
}

// parseIPv4 reads one to four dot-separated numbers, each decimal, octal
// (leading 0) or hex (0x), the last filling the remaining bytes, as
// inet_aton does.
func parseIPv4(labels []string) (netip.Addr, bool) {
	if len(labels) > 4 {
		return netip.Addr{}, false
	}
	var v uint64
	for i, l := range labels {
		n, ok := parseIPv4Number(l)
		if !ok {
			return netip.Addr{}, false
		}
		if i < len(labels)-1 {
			if n > 255 {
				return netip.Addr{}, false
			}
			v |= n << (8 * (3 - i))
			continue
		}
		if n >= 1<<(8*(4-i)) {
			return netip.Addr{}, false
		}
		v |= n
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func parseIPv4Number(s string) (uint64, bool) {
	base := 10
	switch {
	case strings.HasPrefix(s, "0x"):
		base, s = 16, s[2:]
		if s == "" {
			return 0, true
		}
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	case s == "":
		return 0, false
	}
	n, err := strconv.ParseUint(s, base, 64)
	return n, err == nil
}

// specialRange is an address block that a name may not resolve into.
type specialRange struct {
	prefix netip.Prefix
	kind   string
}

// specialV4 are the IPv4 blocks of the IANA special-purpose registry that
// reach the host, its neighbours or nothing routable. 255.255.255.255 is
// inside 240.0.0.0/4.
var specialV4 = []specialRange{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified (0.0.0.0/8)"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (CGNAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved or broadcast"},
}

// globalV6 is the only IPv6 block handed out as global unicast; anything
// outside it (loopback, ULA, link-local, multicast, NAT64, IPv4-compatible)
// is refused, and specialV6 carves the special blocks out of it.
var globalV6 = netip.MustParsePrefix("2000::/3")

// specialV6 are special blocks inside 2000::/3; Teredo and 6to4 embed an
// IPv4 address that could be private.
var specialV6 = []specialRange{
	{netip.MustParsePrefix("2001::/23"), "IETF protocol (Teredo and others)"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("2002::/16"), "6to4"},
	{netip.MustParsePrefix("3fff::/20"), "documentation"},
}

// specialKind names the special-purpose block a holds, or returns "" for a
// public unicast address. a must be unmapped.
func specialKind(a netip.Addr) string {
	if a.Is4() {
		for _, r := range specialV4 {
			if r.prefix.Contains(a) {
				return r.kind
			}
		}
		return ""
	}
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsPrivate():
		return "private (fc00::/7)"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsMulticast():
		return "multicast"
	case !globalV6.Contains(a):
		return "non-global IPv6"
	}
	for _, r := range specialV6 {
		if r.prefix.Contains(a) {
			return r.kind
		}
	}
	return ""
}

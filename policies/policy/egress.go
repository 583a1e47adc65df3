package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultEgressPort is the port of an egress entry that names none: HTTPS,
// rather than every port, so that an omitted port never widens an entry.
const DefaultEgressPort = 443

// EgressRule is one parsed network.egress entry.
type EgressRule struct {
	// Host is a lowercase DNS name or an IP address; for a wildcard, the
	// suffix after "*.".
	Host string
	// Wildcard makes the rule match strict subdomains of Host, not Host.
	Wildcard bool
	// Port is the one TCP port the rule allows.
	Port uint16
}

// ParseEgress parses host[:port], *.suffix[:port] or [ipv6][:port].
func ParseEgress(s string) (EgressRule, error) {
	var r EgressRule
	host, port, err := splitHostPort(strings.ToLower(s))
	if err != nil {
		return r, err
	}
	r.Port = DefaultEgressPort
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 || strings.TrimLeft(port, "0123456789") != "" {
			return r, fmt.Errorf("port %q is not in 1-65535", port)
		}
		r.Port = uint16(n)
	}
	if strings.HasPrefix(host, "[") {
		addr, err := netip.ParseAddr(strings.Trim(host, "[]"))
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return r, errors.New("not a valid bracketed IPv6 address")
		}
		r.Host = addr.String()
		return r, nil
	}
	if suffix, ok := strings.CutPrefix(host, "*."); ok {
		if err := checkDNSName(suffix); err != nil {
			return r, err
		}
		// *.com or *.internal would be most of a namespace, not a service.
		if !strings.Contains(suffix, ".") {
			return r, fmt.Errorf("wildcard suffix %q is too broad (want at least two labels, such as *.example.com)", suffix)
		}
		r.Host, r.Wildcard = suffix, true
		return r, nil
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		if !addr.Is4() {
			return r, errors.New("IPv6 addresses go in brackets, such as [2001:db8::1]:443")
		}
		r.Host = addr.String()
		return r, nil
	}
	if err := checkDNSName(host); err != nil {
		return r, err
	}
	r.Host = host
	return r, nil
}

// String is the canonical form that Load stores in Network.Egress.
func (r EgressRule) String() string {
	host := r.Host
	switch {
	case r.Wildcard:
		host = "*." + host
	case strings.Contains(host, ":"):
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(int(r.Port))
}

// Matches reports whether a connection to host:port is allowed by r.
func (r EgressRule) Matches(host string, port uint16) bool {
	if port != r.Port {
		return false
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if addr, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return !r.Wildcard && addr.String() == r.Host
	}
	if r.Wildcard {
		return strings.HasSuffix(host, "."+r.Host)
	}
	return host == r.Host
}

// Covers reports whether everything o allows, r allows too; Tighten uses
// it to prove that a request's egress list narrows the profile's.
func (r EgressRule) Covers(o EgressRule) bool {
	if r.Port != o.Port {
		return false
	}
	if !r.Wildcard {
		return !o.Wildcard && r.Host == o.Host
	}
	return (o.Wildcard && o.Host == r.Host) || strings.HasSuffix(o.Host, "."+r.Host)
}

// splitHostPort splits on the last colon outside IPv6 brackets, without
// net.SplitHostPort's requirement that a port be present.
func splitHostPort(s string) (host, port string, err error) {
	if s == "" {
		return "", "", errors.New("empty entry")
	}
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", errors.New("missing ] after IPv6 address")
		}
		host, rest := s[:end+1], s[end+1:]
		if rest == "" {
			return host, "", nil
		}
		if !strings.HasPrefix(rest, ":") || rest == ":" {
			return "", "", errors.New("want [ipv6]:port")
		}
		return host, rest[1:], nil
	}
	host, port, found := strings.Cut(s, ":")
	if strings.Contains(port, ":") {
		return "", "", errors.New("IPv6 addresses go in brackets, such as [2001:db8::1]:443")
	}
	if found && port == "" {
		return "", "", errors.New("empty port")
	}
	return host, port, nil
}

// checkDNSName accepts lowercase LDH names. A final all-digit label is
// refused because resolvers may read "1.2.3" as an IPv4 address.
func checkDNSName(s string) error {
	if s == "" || len(s) > 253 {
		return fmt.Errorf("host %q is not a valid DNS name", s)
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if !ValidLabel(l) {
			return fmt.Errorf("host %q is not a valid DNS name", s)
		}
	}
	if strings.TrimLeft(labels[len(labels)-1], "0123456789") == "" {
		return fmt.Errorf("host %q looks like a partial IP address", s)
	}
	return nil
}

// ValidLabel reports whether l is a DNS label of lowercase letters, digits
// and inner hyphens. Profile names and service aliases use the same rule,
// so that both can appear in host names.
func ValidLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ServiceDomain is the domain under which a job names its service aliases:
// http://<alias>.airlock.internal/...
const ServiceDomain = "airlock.internal"

// EgressRule names the entry of p that allows a connection to host:port:
// its canonical network.egress entry, "service:<alias>" for a service
// alias, or "" when none does. The name comes from the profile, never from
// host, so it is a bounded label for metrics whatever a job asks for.
func (p *Profile) EgressRule(host string, port uint16) string {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if alias, ok := strings.CutSuffix(h, "."+ServiceDomain); ok {
		if _, known := p.Network.Services[alias]; known {
			return "service:" + alias
		}
		return ""
	}
	return p.EgressEntry(host, port)
}

// EgressEntry names the canonical network.egress entry of p that allows a
// connection to host:port, or "" when none does. A host under
// ServiceDomain is a service alias's, never an entry's, so it matches
// none: a job's content URL, which only an entry may allow, can never
// name an alias.
func (p *Profile) EgressEntry(host string, port uint16) string {
	if inServiceDomain(host) {
		return ""
	}
	for _, e := range p.Network.Egress {
		r, err := ParseEgress(e)
		if err == nil && r.Matches(host, port) {
			return r.String()
		}
	}
	return ""
}

// inServiceDomain reports whether host is ServiceDomain or under it.
func inServiceDomain(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	return h == ServiceDomain || strings.HasSuffix(h, "."+ServiceDomain)
}

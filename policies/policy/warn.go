package policy

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// Warnings lists what in p loads but is probably a mistake an operator
// should look at twice: egress entries and service upstreams that name the
// host itself, a private network, a link-local address or a cloud metadata
// service. The proxy refuses addresses that resolve into those blocks, but
// an entry naming one outright is honoured, and it hands a hostile job the
// broker's neighbours. Lint prints these; Load does not refuse them, since a
// developer's stand-in service on loopback is legitimate with --dev.
func Warnings(p *Profile) []string {
	var out []string
	for i, e := range p.Network.Egress {
		r, err := ParseEgress(e)
		if err != nil {
			continue
		}
		if why := internalHost(r.Host, r.Wildcard); why != "" {
			out = append(out, fmt.Sprintf("network.egress[%d] %q names %s; a job allowed there reaches the broker's own side of the network", i, e, why))
		}
	}
	aliases := make([]string, 0, len(p.Network.Services))
	for a := range p.Network.Services {
		aliases = append(aliases, a)
	}
	slices.Sort(aliases)
	for _, a := range aliases {
		u, err := url.Parse(p.Network.Services[a].Upstream)
		if err != nil {
			continue
		}
		if why := internalHost(strings.ToLower(u.Hostname()), false); why != "" {
			out = append(out, fmt.Sprintf("network.services.%s.upstream %q names %s; the injected credential goes there", a, u.Host, why))
		}
	}
	return out
}

// metadataAddrs are the cloud instance metadata endpoints, which hand out
// credentials to whoever on the instance asks.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack
	netip.MustParseAddr("169.254.170.2"),   // AWS ECS task metadata
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	netip.MustParseAddr("fd00:ec2::254"),   // AWS IPv6
}

// metadataNames are DNS names of metadata services.
var metadataNames = []string{"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal", "metadata.azure.internal"}

// localSuffixes are DNS suffixes that name the host or a site-local
// network rather than a public service (RFC 6761, RFC 6762, ICANN's
// .internal).
var localSuffixes = []string{"localhost", "local", "internal", "home.arpa", "lan", "intranet", "corp"}

// internalHost says why host (an IP literal or a DNS name, a suffix when
// wildcard) is not a public service, or returns "".
func internalHost(host string, wildcard bool) string {
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		switch {
		case slices.Contains(metadataAddrs, a):
			return "a cloud metadata service (" + a.String() + ")"
		case a.IsLoopback():
			return "a loopback address"
		case a.IsUnspecified():
			return "the unspecified address"
		case a.IsPrivate():
			return "a private address"
		case a.IsLinkLocalUnicast():
			return "a link-local address"
		case a.IsMulticast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast():
			return "a multicast address"
		case a.Is4() && netip.MustParsePrefix("100.64.0.0/10").Contains(a):
			return "a shared (CGNAT or tailnet) address"
		case a.Is4() && netip.MustParsePrefix("0.0.0.0/8").Contains(a):
			return "an address of this network (0.0.0.0/8)"
		}
		return ""
	}
	if slices.Contains(metadataNames, host) {
		return "a cloud metadata service (" + host + ")"
	}
	for _, s := range localSuffixes {
		if host == s || strings.HasSuffix(host, "."+s) {
			if wildcard {
				return "every name under ." + host + ", a host-local or site-local domain"
			}
			return "a host-local or site-local name (." + s + ")"
		}
	}
	return ""
}

package doctor

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/airlock/airlock/sandbox/netns"
)

// poolBits are the prefix lengths netns.AddressPool takes: one /30 per
// job, and no more than a /8's worth of them.
const (
	poolMinBits = 8
	poolMaxBits = 30
)

// hostNet is an address or route of the host, as the pool check sees it.
type hostNet struct {
	prefix netip.Prefix
	// what names it for a person: "address 10.0.0.1/24 on eth0".
	what string
	// job is set for one on a job veth, with the instance that owns it.
	job      bool
	instance string
}

// checkEgressPool checks --egress-pool as airlockd does at start: an IPv4
// prefix from /8 to /30 without host bits, overlapping no address or route
// of the host, or airlockd refuses to start. Job veths of this state
// dir's broker are left out, as its start-up reap removes them first (or
// they are its running jobs'); another broker's are not, since two
// brokers on one pool would hand out the same addresses.
func checkEgressPool(_ context.Context, e *env) result {
	var f findings
	prefix := e.cfg.EgressPool
	if !prefix.IsValid() {
		prefix = netns.DefaultPrefix
	}
	if !prefix.Addr().Is4() || prefix.Bits() < poolMinBits || prefix.Bits() > poolMaxBits || prefix != prefix.Masked() {
		f.add(Fail, fmt.Sprintf("--egress-pool %s: airlockd wants an IPv4 prefix from /%d to /%d without host bits", prefix, poolMinBits, poolMaxBits),
			fmt.Sprintf("pass a private IPv4 prefix such as %s", netns.DefaultPrefix))
		return f.result("")
	}
	nets, err := hostNets()
	if err != nil {
		f.add(Warn, fmt.Sprintf("cannot list the host's addresses and routes: %v", err), "run airlock doctor as root")
		return f.result("")
	}
	for _, c := range poolClashes(prefix, nets, e.owners.mine) {
		if !c.job {
			f.add(Fail, fmt.Sprintf("pool %s overlaps %s: airlockd refuses to start", prefix, c.what),
				"pass an --egress-pool that overlaps nothing on the host")
			continue
		}
		owner := "a broker that cannot be told"
		if st, who := e.owners.of(c.instance); st == ownerLive {
			owner = "the running " + who
		} else if st == ownerDead {
			owner = "a broker that no longer runs (instance " + c.instance + ")"
		}
		f.add(Fail, fmt.Sprintf("pool %s overlaps %s, a job veth of %s: two brokers must not share a pool, and airlockd refuses to start on one in use", prefix, c.what, owner),
			"give each broker its own --egress-pool")
	}
	return f.result(fmt.Sprintf("pool %s (%d jobs' /30s) overlaps nothing on the host", prefix, 1<<(poolMaxBits-prefix.Bits())))
}

// poolClashes returns what of the host overlaps prefix, apart from default
// routes, which overlap everything and are what a more specific route
// overrides, and the job veths of instance mine.
func poolClashes(prefix netip.Prefix, nets []hostNet, mine string) []hostNet {
	var out []hostNet
	for _, n := range nets {
		if n.prefix.Bits() == 0 || !n.prefix.Overlaps(prefix) || n.job && n.instance == mine {
			continue
		}
		out = append(out, n)
	}
	return out
}

// hostNets lists the host's IPv4 addresses and routes in every table, as
// netns.NewAddressPool does, each with the job veth it is on, if any.
func hostNets() ([]hostNet, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	namespaces, _ := jobNamespaces(netnsDir)
	byIndex := map[int]netlink.Link{}
	for _, l := range links {
		byIndex[l.Attrs().Index] = l
	}
	// on describes a link and says whose job veth it is.
	on := func(n *hostNet, index int) {
		l, ok := byIndex[index]
		if !ok {
			n.what += fmt.Sprintf(" ifindex %d", index)
			return
		}
		n.what += " " + l.Attrs().Name
		if netns.IsJobLink(l) {
			n.job, n.instance = true, vethOwner(l.Attrs().Name, l.Attrs().Alias, namespaces).instance
		}
	}
	var out []hostNet
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if p, ok := toPrefix(a.IPNet); ok {
			n := hostNet{prefix: p, what: "address " + a.IPNet.String() + " on"}
			on(&n, a.LinkIndex)
			out = append(out, n)
		}
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		if p, ok := toPrefix(r.Dst); ok {
			n := hostNet{prefix: p, what: fmt.Sprintf("route %s table %d dev", p, r.Table)}
			on(&n, r.LinkIndex)
			out = append(out, n)
		}
	}
	return out, nil
}

// toPrefix is the network n is in; false for none or a malformed one.
func toPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

package netns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DefaultPrefix is the address pool used unless the configuration names
// another. It is a /16 that common container stacks, VPNs and clouds leave
// alone (Docker takes 172.17+, Kubernetes 10.96 and 10.244, Tailscale the
// CGNAT range); NewAddressPool still refuses it if the host uses any part of it.
var DefaultPrefix = netip.MustParsePrefix("10.213.0.0/16")

// blockBits is the size of one job's block: a /30 holds the network
// address, the host end (.1), the job end (.2) and the broadcast address,
// which every tool and kernel handles without special cases, unlike a /31.
const blockBits = 30

var (
	// ErrPoolOverlap means the pool shares addresses with something already
	// on the host; handing them to jobs would misroute the host's traffic or
	// a job's.
	ErrPoolOverlap = errors.New("netns: address pool overlaps the host's addresses or routes")
	// ErrPoolExhausted means every block of the pool is leased.
	ErrPoolExhausted = errors.New("netns: address pool exhausted")
	// ErrInvalidPool means the prefix cannot be split into job blocks.
	ErrInvalidPool = errors.New("netns: invalid address pool")
)

// Lease is one job's block of the pool: the host end of the veth holds
// HostIP, the job end JobIP, both within Prefix.
type Lease struct {
	Prefix netip.Prefix
	HostIP netip.Addr
	JobIP  netip.Addr
}

// AddressPool hands out one /30 per job from an IPv4 prefix. It is safe for
// concurrent use.
type AddressPool struct {
	prefix netip.Prefix
	// scope is in the name of every namespace and veth alias made from
	// this pool, so that one broker's Reap leaves another's jobs alone.
	scope string

	mu   sync.Mutex
	used []bool
	// next is where the search for a free block starts. Handing blocks out
	// round-robin keeps a just-released address unused for as long as
	// possible, so late packets or log lines for an old job are not
	// attributed to a new one.
	next int
}

// NewAddressPool returns a pool over prefix after checking the host (the caller's
// network namespace): an address or a non-default route of the host that
// overlaps prefix is an ErrPoolOverlap. Call Reap first, since the veths of
// a crashed broker count as the host's. scope names the broker: its
// namespaces are NamePrefix+scope+"-"+hash, and Reap(ctx, scope) removes
// those only.
func NewAddressPool(prefix netip.Prefix, scope string) (*AddressPool, error) {
	if err := checkScope(scope); err != nil {
		return nil, err
	}
	p, err := poolOf(prefix)
	if err != nil {
		return nil, err
	}
	p.scope = scope
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netns: open netlink: %w", err)
	}
	defer h.Close()
	if err := checkOverlap(h, prefix); err != nil {
		return nil, err
	}
	return p, nil
}

// poolOf validates prefix and returns an empty pool over it, without
// looking at the host.
func poolOf(prefix netip.Prefix) (*AddressPool, error) {
	if !prefix.IsValid() || !prefix.Addr().Is4() || prefix.Bits() > blockBits || prefix.Bits() < 8 {
		return nil, fmt.Errorf("%w: %s: need an IPv4 prefix between /8 and /%d", ErrInvalidPool, prefix, blockBits)
	}
	if prefix != prefix.Masked() {
		return nil, fmt.Errorf("%w: %s has host bits set (did you mean %s?)", ErrInvalidPool, prefix, prefix.Masked())
	}
	return &AddressPool{prefix: prefix, used: make([]bool, 1<<(blockBits-prefix.Bits()))}, nil
}

// checkOverlap reports the first host address or route that shares
// addresses with prefix. Default routes are skipped: they overlap
// everything and are exactly what a more specific route overrides.
func checkOverlap(h *netlink.Handle, prefix netip.Prefix) error {
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("netns: list host addresses: %w", err)
	}
	for _, a := range addrs {
		p, ok := toPrefix(a.IPNet)
		if ok && p.Overlaps(prefix) {
			return fmt.Errorf("%w: pool %s overlaps address %s on %s; configure another pool", ErrPoolOverlap, prefix, p, linkName(h, a.LinkIndex))
		}
	}
	// Every table, not just main: a policy-routing rule can send the
	// pool's addresses somewhere else just as well.
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("netns: list host routes: %w", err)
	}
	for _, r := range routes {
		p, ok := toPrefix(r.Dst)
		if !ok || p.Bits() == 0 {
			continue
		}
		if p.Overlaps(prefix) {
			return fmt.Errorf("%w: pool %s overlaps route %s dev %s table %d; configure another pool", ErrPoolOverlap, prefix, p, linkName(h, r.LinkIndex), r.Table)
		}
	}
	return nil
}

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

func linkName(h *netlink.Handle, index int) string {
	if l, err := h.LinkByIndex(index); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("ifindex %d", index)
}

// Prefix returns the pool's prefix.
func (p *AddressPool) Prefix() netip.Prefix { return p.prefix }

// Acquire leases a free block, or fails with ErrPoolExhausted.
func (p *AddressPool) Acquire() (Lease, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.used {
		b := (p.next + i) % len(p.used)
		if p.used[b] {
			continue
		}
		p.used[b] = true
		p.next = (b + 1) % len(p.used)
		return p.lease(b), nil
	}
	return Lease{}, fmt.Errorf("%w: all %d blocks of %s are in use", ErrPoolExhausted, len(p.used), p.prefix)
}

// Release returns a lease to the pool. Releasing a lease twice, or one the
// pool did not hand out, does nothing.
func (p *AddressPool) Release(l Lease) {
	b, ok := p.block(l)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.used[b] = false
}

func (p *AddressPool) lease(b int) Lease {
	first := u32(p.prefix.Addr()) + uint32(b)<<(32-blockBits)
	return Lease{
		Prefix: netip.PrefixFrom(addr4(first), blockBits),
		HostIP: addr4(first + 1),
		JobIP:  addr4(first + 2),
	}
}

// block maps a lease back to its index, rejecting leases from elsewhere.
func (p *AddressPool) block(l Lease) (int, bool) {
	if !l.Prefix.IsValid() || !l.Prefix.Addr().Is4() || !p.prefix.Contains(l.Prefix.Addr()) {
		return 0, false
	}
	b := int((u32(l.Prefix.Addr()) - u32(p.prefix.Addr())) >> (32 - blockBits))
	if b >= len(p.used) || p.lease(b) != l {
		return 0, false
	}
	return b, true
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addr4(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

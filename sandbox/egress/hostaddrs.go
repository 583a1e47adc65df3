package egress

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// hostAddrsTTL is how long the host's own addresses are reused before
// they are listed again: long enough that a flood of requests does not
// list them for each, short enough that a new address is soon covered.
const hostAddrsTTL = time.Second

// hostAddrs is the set of the broker host's own addresses, listed by
// list and kept for hostAddrsTTL.
type hostAddrs struct {
	list func() ([]netip.Addr, error)

	mu  sync.Mutex
	at  time.Time
	set map[netip.Addr]bool
}

// contains reports whether a is one of the host's addresses. An error
// means the host's addresses cannot be listed, and the caller refuses.
func (h *hostAddrs) contains(a netip.Addr) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.set == nil || time.Since(h.at) > hostAddrsTTL {
		addrs, err := h.list()
		if err != nil {
			h.set = nil
			return false, fmt.Errorf("cannot list this host's addresses: %w", err)
		}
		set := make(map[netip.Addr]bool, len(addrs))
		for _, x := range addrs {
			set[x.Unmap().WithZone("")] = true
		}
		h.set, h.at = set, time.Now()
	}
	return h.set[a.Unmap().WithZone("")], nil
}

// interfaceAddrs lists the addresses of every interface of the host, in
// the proxy's network namespace: the default of Config.HostAddrs.
func interfaceAddrs() ([]netip.Addr, error) {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(ifAddrs))
	for _, ia := range ifAddrs {
		var ip net.IP
		switch v := ia.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	return out, nil
}

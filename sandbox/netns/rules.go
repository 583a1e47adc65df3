package netns

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table (family inet) installed in every job's
// netns. An inet table sees IPv4 and IPv6 alike, so a policy of drop also
// covers every IPv6 packet without a second ruleset.
const TableName = "airlock"

// ErrInvalidRules means Ruleset was given an address or port that no proxy
// can listen on.
var ErrInvalidRules = errors.New("netns: invalid ruleset parameters")

// Rules is a job netns firewall as data: the table, and its base chains in
// order, each with its rules. Installing adds nothing but the comments, so
// the golden dump of Rules is what the kernel gets.
type Rules struct {
	Table  *nftables.Table
	Chains []Chain
}

// Chain is one base chain and its rules, evaluated in order before the
// chain's policy.
type Chain struct {
	Spec  *nftables.Chain
	Rules []Rule
}

// Rule is one nftables rule; Comment says what it is for and is stored in
// the rule's user data, so `nft list ruleset` inside the netns shows it.
type Rule struct {
	Comment string
	Exprs   []expr.Any
}

// deniedComment marks the output rule whose counter counts dropped egress.
const deniedComment = "count and drop all other egress"

// ProxyConnLimit is the most connections a job may hold open to the
// egress proxy at once, as the job's own conntrack counts them; a new one
// past it is reset before it leaves the namespace. It is a second wall
// behind the proxy's per-job cap (egress.DefaultMaxConns, 32), which
// refuses first, so it is twice that: the proxy's refusals stay what a
// job normally meets, and the wall holds should the proxy fall behind.
const ProxyConnLimit = 64

// Ruleset returns the firewall of a job whose only way out is TCP to the
// egress proxy at hostIP:proxyPort, with at most ProxyConnLimit such
// connections open at once. Output and input default to drop; loopback and
// replies on connections the rules allowed are accepted; forward is
// dropped outright. DNS, UDP, ICMP, other ports, other addresses and all
// of IPv6 fall through to drop.
func Ruleset(hostIP netip.Addr, proxyPort uint16) (Rules, error) {
	if !hostIP.Is4() || hostIP.IsUnspecified() {
		return Rules{}, fmt.Errorf("%w: proxy address %v is not a unicast IPv4 address", ErrInvalidRules, hostIP)
	}
	if proxyPort == 0 {
		return Rules{}, fmt.Errorf("%w: proxy port 0", ErrInvalidRules)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	drop := nftables.ChainPolicyDrop
	base := func(name string, hook *nftables.ChainHook) *nftables.Chain {
		return &nftables.Chain{
			Name:     name,
			Table:    t,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  hook,
			Priority: nftables.ChainPriorityFilter,
			Policy:   &drop,
		}
	}
	ip := hostIP.As4()
	// toProxy matches TCP to the proxy's address and port.
	toProxy := func(then ...expr.Any) []expr.Any {
		return append(append([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		}, tcpTo(ip, proxyPort)...), then...)
	}
	return Rules{
		Table: t,
		Chains: []Chain{
			{Spec: base("input", nftables.ChainHookInput), Rules: []Rule{
				{"accept loopback", ifaceIs(expr.MetaKeyIIFNAME, "lo", accept())},
				{"accept replies on allowed connections", ctStateIn(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, accept())},
			}},
			{Spec: base("forward", nftables.ChainHookForward)},
			{Spec: base("output", nftables.ChainHookOutput), Rules: []Rule{
				{"accept loopback", ifaceIs(expr.MetaKeyOIFNAME, "lo", accept())},
				{"accept packets of allowed connections", ctStateIn(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, accept())},
				// `ct state new ct count over N`: the rule keeps the list of
				// the connections that passed it, and counts those
				// conntrack still holds open. A reset, not a drop, so that
				// connect fails at once rather than retrying.
				{"reset new connections to the egress proxy past the limit", toProxy(append(
					ctStateIn(expr.CtStateBitNEW),
					&expr.Connlimit{Count: ProxyConnLimit, Flags: expr.NFT_CONNLIMIT_F_INV},
					&expr.Counter{},
					&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
				)...)},
				{"accept tcp to the egress proxy", toProxy(accept())},
				// An explicit drop before the policy, so the broker can
				// report how much direct egress a job attempted.
				{deniedComment, []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}},
			}},
		},
	}, nil
}

// LinkRuleset returns the rules on the job end of the veth, dev, itself:
// a netdev table whose egress chain lets out only ARP from the job's own
// address and IPv4 TCP to the proxy, and drops every other frame.
//
// The inet table of Ruleset filters what the namespace's own IP stack
// sends. A runtime with a network stack of its own, gVisor's netstack
// under runsc, writes whole frames to the link through a packet socket,
// which no inet hook sees; only a hook on the device does. Under runc it
// is a second wall behind the inet table. The chain hooks a device, which
// must exist when it is installed: Setup installs it after the veth is
// made and before the job end goes up.
func LinkRuleset(hostIP, jobIP netip.Addr, proxyPort uint16, dev string) (Rules, error) {
	if !hostIP.Is4() || hostIP.IsUnspecified() || !jobIP.Is4() || jobIP.IsUnspecified() {
		return Rules{}, fmt.Errorf("%w: proxy address %v or job address %v is not a unicast IPv4 address", ErrInvalidRules, hostIP, jobIP)
	}
	if proxyPort == 0 || dev == "" {
		return Rules{}, fmt.Errorf("%w: proxy port 0 or no device", ErrInvalidRules)
	}
	t := &nftables.Table{Family: nftables.TableFamilyNetdev, Name: TableName}
	drop := nftables.ChainPolicyDrop
	host, job := hostIP.As4(), jobIP.As4()
	return Rules{
		Table: t,
		Chains: []Chain{
			{Spec: &nftables.Chain{
				Name: "egress", Table: t, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookEgress, Priority: nftables.ChainPriorityFilter,
				Policy: &drop, Device: dev,
			}, Rules: []Rule{
				// Without ARP the job cannot find the proxy's link address;
				// only its own address may be claimed, so it cannot poison
				// the host's neighbour table for another.
				{"accept arp from the job's address", []expr.Any{
					&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(unix.ETH_P_ARP)},
					// arp saddr ip: offset 14 in an Ethernet/IPv4 ARP packet.
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 14, Len: 4},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: job[:]},
					accept(),
				}},
				{"accept tcp to the egress proxy", append(append([]expr.Any{
					&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(unix.ETH_P_IP)},
				}, tcpTo(host, proxyPort)...), accept())},
				{deniedComment, []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}},
			}},
		},
	}, nil
}

// tcpTo matches an IPv4 packet's TCP to ip and port, once the packet is
// known to be IPv4.
func tcpTo(ip [4]byte, port uint16) []expr.Any {
	return []expr.Any{
		// ip daddr: offset 16 in the IPv4 header.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ip[:]},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		// tcp dport: offset 2 in the TCP header.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

func accept() expr.Any { return &expr.Verdict{Kind: expr.VerdictAccept} }

// ifaceIs matches an interface name the way nft does: the whole IFNAMSIZ
// buffer, zero-padded, so "lo" does not also match "lo0".
func ifaceIs(key expr.MetaKey, name string, then ...expr.Any) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return append([]expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}, then...)
}

// ctStateIn is `ct state` with the states of mask, such as
// `ct state established,related`. Conntrack state is a host-order
// bitmask, hence the native byte order.
func ctStateIn(mask uint32, then ...expr.Any) []expr.Any {
	return append([]expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{
			SourceRegister: 1,
			DestRegister:   1,
			Len:            4,
			Mask:           binaryutil.NativeEndian.PutUint32(mask),
			Xor:            make([]byte, 4),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}, then...)
}

// String dumps the rules in a stable text form, one expression a line, for
// the golden test and for logs.
func (r Rules) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s\n", family(r.Table.Family), r.Table.Name)
	for _, c := range r.Chains {
		s := c.Spec
		hook := hookName(s.Hooknum)
		if r.Table.Family == nftables.TableFamilyNetdev {
			hook = netdevHookName(s.Hooknum) + " device " + s.Device
		}
		fmt.Fprintf(&b, "\nchain %s type %s hook %s priority %d policy %s\n",
			s.Name, s.Type, hook, *s.Priority, policyName(s.Policy))
		for _, rule := range c.Rules {
			fmt.Fprintf(&b, "  rule %q\n", rule.Comment)
			for _, e := range rule.Exprs {
				fmt.Fprintf(&b, "    %s\n", exprString(e))
			}
		}
	}
	return b.String()
}

func family(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprintf("family(%d)", f)
}

func hookName(h *nftables.ChainHook) string {
	if h == nil {
		return "none"
	}
	switch *h {
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprintf("hook(%d)", *h)
}

// netdevHookName names a netdev chain's hook, whose numbers overlap the
// inet family's.
func netdevHookName(h *nftables.ChainHook) string {
	switch {
	case h == nil:
		return "none"
	case *h == *nftables.ChainHookIngress:
		return "ingress"
	case *h == *nftables.ChainHookEgress:
		return "egress"
	}
	return fmt.Sprintf("hook(%d)", *h)
}

func policyName(p *nftables.ChainPolicy) string {
	switch {
	case p == nil:
		return "none"
	case *p == nftables.ChainPolicyDrop:
		return "drop"
	case *p == nftables.ChainPolicyAccept:
		return "accept"
	}
	return fmt.Sprintf("policy(%d)", *p)
}

// exprString names the expressions Ruleset uses in the style of
// `nft --debug=netlink`; anything else falls back to Go syntax, so a new
// expression still shows up in the golden diff.
func exprString(e expr.Any) string {
	switch e := e.(type) {
	case *expr.Meta:
		return fmt.Sprintf("meta load %s => reg %d", metaKey(e.Key), e.Register)
	case *expr.Ct:
		if e.Key == expr.CtKeySTATE {
			return fmt.Sprintf("ct load state => reg %d", e.Register)
		}
		return fmt.Sprintf("ct load key(%d) => reg %d", e.Key, e.Register)
	case *expr.Cmp:
		return fmt.Sprintf("cmp %s reg %d %s", cmpOp(e.Op), e.Register, hexBytes(e.Data))
	case *expr.Bitwise:
		return fmt.Sprintf("bitwise reg %d = (reg %d & %s) ^ %s", e.DestRegister, e.SourceRegister, hexBytes(e.Mask), hexBytes(e.Xor))
	case *expr.Payload:
		base := map[expr.PayloadBase]string{
			expr.PayloadBaseLLHeader:        "link",
			expr.PayloadBaseNetworkHeader:   "network",
			expr.PayloadBaseTransportHeader: "transport",
		}[e.Base]
		return fmt.Sprintf("payload load %db @ %s header + %d => reg %d", e.Len, base, e.Offset, e.DestRegister)
	case *expr.Counter:
		return "counter"
	case *expr.Connlimit:
		over := ""
		if e.Flags&expr.NFT_CONNLIMIT_F_INV != 0 {
			over = "over "
		}
		return fmt.Sprintf("connlimit count %s%d", over, e.Count)
	case *expr.Reject:
		if e.Type == unix.NFT_REJECT_TCP_RST {
			return "reject tcp reset"
		}
		return fmt.Sprintf("reject type %d code %d", e.Type, e.Code)
	case *expr.Verdict:
		switch e.Kind {
		case expr.VerdictAccept:
			return "verdict accept"
		case expr.VerdictDrop:
			return "verdict drop"
		}
		return fmt.Sprintf("verdict %d %s", e.Kind, e.Chain)
	}
	return fmt.Sprintf("%T %+v", e, e)
}

func metaKey(k expr.MetaKey) string {
	switch k {
	case expr.MetaKeyIIFNAME:
		return "iifname"
	case expr.MetaKeyOIFNAME:
		return "oifname"
	case expr.MetaKeyNFPROTO:
		return "nfproto"
	case expr.MetaKeyL4PROTO:
		return "l4proto"
	case expr.MetaKeyPROTOCOL:
		return "protocol"
	}
	return fmt.Sprintf("key(%d)", k)
}

func cmpOp(op expr.CmpOp) string {
	switch op {
	case expr.CmpOpEq:
		return "eq"
	case expr.CmpOpNeq:
		return "neq"
	}
	return fmt.Sprintf("op(%d)", op)
}

func hexBytes(b []byte) string {
	var s strings.Builder
	s.WriteString("0x")
	for _, c := range b {
		fmt.Fprintf(&s, "%02x", c)
	}
	return s.String()
}

// apply installs rules in the netns behind nsFD as one netlink batch, so
// the namespace has either the whole ruleset or none of it, then reads the
// chains back: a job must not start behind a ruleset that is not there.
func apply(nsFD int, r Rules) error {
	c, err := nftables.New(nftables.WithNetNSFd(nsFD))
	if err != nil {
		return fmt.Errorf("netns: nftables: %w", err)
	}
	c.AddTable(r.Table)
	for _, ch := range r.Chains {
		c.AddChain(ch.Spec)
		for _, rule := range ch.Rules {
			c.AddRule(&nftables.Rule{
				Table:    r.Table,
				Chain:    ch.Spec,
				Exprs:    rule.Exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, rule.Comment),
			})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("netns: install nftables rules: %w", err)
	}
	return verify(c, r)
}

// verify checks that every chain of r is in the kernel with its hook,
// policy and number of rules.
func verify(c *nftables.Conn, r Rules) error {
	chains, err := c.ListChainsOfTableFamily(r.Table.Family)
	if err != nil {
		return fmt.Errorf("netns: list nftables chains: %w", err)
	}
	for _, want := range r.Chains {
		var got *nftables.Chain
		for _, ch := range chains {
			if ch.Table.Name == r.Table.Name && ch.Name == want.Spec.Name {
				got = ch
			}
		}
		if got == nil || got.Hooknum == nil || *got.Hooknum != *want.Spec.Hooknum ||
			got.Policy == nil || *got.Policy != *want.Spec.Policy {
			return fmt.Errorf("netns: nftables chain %s missing or not as installed", want.Spec.Name)
		}
		rules, err := c.GetRules(r.Table, got)
		if err != nil {
			return fmt.Errorf("netns: list nftables rules of %s: %w", want.Spec.Name, err)
		}
		if len(rules) != len(want.Rules) {
			return fmt.Errorf("netns: nftables chain %s has %d rules, want %d", want.Spec.Name, len(rules), len(want.Rules))
		}
	}
	return nil
}

// deniedPackets sums the counters of the final drop rules of the inet
// output chain and the link's egress chain: a packet the namespace's own
// stack sends is dropped, and counted, by the first, and one a runtime's
// own stack sends, by the second.
func deniedPackets(nsFD int) (uint64, error) {
	c, err := nftables.New(nftables.WithNetNSFd(nsFD))
	if err != nil {
		return 0, fmt.Errorf("netns: nftables: %w", err)
	}
	var sum uint64
	for _, ch := range []struct {
		family nftables.TableFamily
		chain  string
	}{{nftables.TableFamilyINet, "output"}, {nftables.TableFamilyNetdev, "egress"}} {
		t := &nftables.Table{Family: ch.family, Name: TableName}
		n, err := dropCounter(c, t, &nftables.Chain{Name: ch.chain, Table: t})
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// dropCounter reads the counter of the chain's rule marked deniedComment.
func dropCounter(c *nftables.Conn, t *nftables.Table, ch *nftables.Chain) (uint64, error) {
	rules, err := c.GetRules(t, ch)
	if err != nil {
		return 0, fmt.Errorf("netns: list nftables rules of %s: %w", ch.Name, err)
	}
	for _, r := range rules {
		if s, _ := userdata.GetString(r.UserData, userdata.TypeComment); s != deniedComment {
			continue
		}
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				return ctr.Packets, nil
			}
		}
	}
	return 0, fmt.Errorf("netns: drop counter not found in the job's %s chain", ch.Name)
}

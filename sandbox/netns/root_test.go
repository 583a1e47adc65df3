package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// The tests in this file build real namespaces, veths and rules, so they
// need root. They fail rather than skip without it: a firewall test that
// quietly does not run proves nothing. All traffic they send goes to
// addresses on the veths they create.

// testPrefix is outside DefaultPrefix, so a broker or another package's
// tests using the default pool on this host never collide with these.
var testPrefix = netip.MustParsePrefix("10.214.250.0/24")

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test creates network namespaces, veths and nftables rules: run it as root (make test does)")
	}
}

func testID(t *testing.T) string {
	return fmt.Sprintf("%s-%d-%d", t.Name(), os.Getpid(), time.Now().UnixNano())
}

func cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// newJobNet creates a job network from a fresh pool over prefix and closes
// it when the test ends, whatever happened.
func newJobNet(t *testing.T, prefix netip.Prefix, proxyPort uint16) (*Net, *AddressPool) {
	t.Helper()
	requireRoot(t)
	pool, err := NewAddressPool(prefix, "")
	if err != nil {
		t.Fatal(err)
	}
	n, err := Create(context.Background(), testID(t), pool, proxyPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return n, pool
}

// freePort returns a port that was free on loopback a moment ago; the
// servers below bind it on the veth's host address.
func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// tcpEcho echoes every connection and counts them. It runs in the host
// namespace, as the egress proxy does.
type tcpEcho struct {
	ln      net.Listener
	wg      sync.WaitGroup
	accepts atomic.Int32
	mu      sync.Mutex
	peers   []string
	conns   []net.Conn
}

func startTCPEcho(t *testing.T, addr string) *tcpEcho {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	s := &tcpEcho{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			s.mu.Lock()
			s.peers = append(s.peers, c.RemoteAddr().String())
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				// Closed once the client is done, as the proxy does: a
				// connection left half open still counts against
				// ProxyConnLimit.
				io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *tcpEcho) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// udpEcho counts and echoes datagrams.
type udpEcho struct {
	pc      net.PacketConn
	wg      sync.WaitGroup
	packets atomic.Int32
}

func startUDPEcho(t *testing.T, addr string) *udpEcho {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("listen udp %s: %v", addr, err)
	}
	s := &udpEcho{pc: pc}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.packets.Add(1)
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); s.wg.Wait() })
	return s
}

// icmpWatch counts ICMP echo requests that reach the host address from the
// job, independently of whether the kernel's reply gets back.
type icmpWatch struct {
	c        *icmp.PacketConn
	wg       sync.WaitGroup
	requests atomic.Int32
}

func startICMPWatch(t *testing.T, host, job netip.Addr) *icmpWatch {
	t.Helper()
	c, err := icmp.ListenPacket("ip4:icmp", host.String())
	if err != nil {
		t.Fatalf("raw icmp socket on %s: %v", host, err)
	}
	w := &icmpWatch{c: c}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err == nil && m.Type == ipv4.ICMPTypeEcho && from.(*net.IPAddr).IP.Equal(job.AsSlice()) {
				w.requests.Add(1)
			}
		}
	}()
	t.Cleanup(func() { c.Close(); w.wg.Wait() })
	return w
}

// The probes run inside the job's namespace, as the task would.

func probeTCP(nsPath, addr string) error {
	return doInNetNS(nsPath, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("airlock")); err != nil {
			return err
		}
		buf := make([]byte, 7)
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != "airlock" {
			return fmt.Errorf("echo %q", buf)
		}
		return nil
	})
}

func probeUDP(nsPath, addr string) error {
	return doInNetNS(nsPath, func() error {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		for range 3 {
			if _, err := c.Write([]byte("airlock")); err != nil {
				return err
			}
		}
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err = c.Read(make([]byte, 64))
		return err
	})
}

func probeICMP(nsPath string, dst netip.Addr) error {
	return doInNetNS(nsPath, func() error {
		c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return err
		}
		defer c.Close()
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 0xa1, Seq: 1, Data: []byte("airlock")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return err
		}
		if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return err
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err == nil && m.Type == ipv4.ICMPTypeEchoReply && from.(*net.IPAddr).IP.Equal(dst.AsSlice()) {
				return nil
			}
		}
	})
}

// eventually polls cond until it holds or a second has passed.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// hostLinkLocal and jobLinkLocal are set by enableIPv6 on the veth ends.
var (
	hostLinkLocal = netip.MustParseAddr("fe80::a1:1")
	jobLinkLocal  = netip.MustParseAddr("fe80::a1:2")
)

// enableIPv6 undoes Create's IPv6 switch-off on both veth ends and gives
// them link-local addresses without duplicate detection, so the probes
// test the nftables table alone, as if the sysctl layer had failed.
// It returns the job end's interface index: the zone for a link-local
// address, given as a number because Go resolves zone names in a
// process-wide cache, and the host has an eth0 of its own.
func enableIPv6(t *testing.T, n *Net) int {
	t.Helper()
	set := func(iface string) error {
		return os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", iface, "disable_ipv6"), []byte("0"), 0)
	}
	ll := func(a netip.Addr) *netlink.Addr {
		return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
	}
	if err := set(n.HostIf); err != nil {
		t.Fatal(err)
	}
	hl, err := netlink.LinkByName(n.HostIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(hl, ll(hostLinkLocal)); err != nil {
		t.Fatal(err)
	}
	var index int
	err = doInNetNS(n.Path, func() error {
		if err := errors.Join(set("all"), set("default"), set(JobIf)); err != nil {
			return err
		}
		jl, err := netlink.LinkByName(JobIf)
		if err != nil {
			return err
		}
		index = jl.Attrs().Index
		return netlink.AddrAdd(jl, ll(jobLinkLocal))
	})
	if err != nil {
		t.Fatal(err)
	}
	return index
}

// probeEnv is a job network with a server behind every way out that the
// probes try.
type probeEnv struct {
	net                  *Net
	proxy, other, proxy6 *tcpEcho
	elsewhere            *tcpEcho
	dns                  *udpEcho
	icmp                 *icmpWatch
	proxyPort            uint16
	otherPort            uint16
	jobZone              string
}

func newProbeEnv(t *testing.T) *probeEnv {
	t.Helper()
	e := &probeEnv{proxyPort: freePort(t), otherPort: freePort(t)}
	e.net, _ = newJobNet(t, testPrefix, e.proxyPort)
	e.jobZone = fmt.Sprint(enableIPv6(t, e.net))
	host := e.net.HostIP.String()
	e.proxy = startTCPEcho(t, net.JoinHostPort(host, fmt.Sprint(e.proxyPort)))
	e.other = startTCPEcho(t, net.JoinHostPort(host, fmt.Sprint(e.otherPort)))
	e.proxy6 = startTCPEcho(t, net.JoinHostPort(hostLinkLocal.String()+"%"+e.net.HostIf, fmt.Sprint(e.proxyPort)))
	e.dns = startUDPEcho(t, net.JoinHostPort(host, "53"))
	// A second address on the host end: the proxy's port, somewhere else.
	hl, err := netlink.LinkByName(e.net.HostIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(hl, addr32(otherHostIP)); err != nil {
		t.Fatal(err)
	}
	e.elsewhere = startTCPEcho(t, net.JoinHostPort(otherHostIP.String(), fmt.Sprint(e.proxyPort)))
	e.icmp = startICMPWatch(t, e.net.HostIP, e.net.JobIP)
	return e
}

// otherHostIP is added to the host end of the veth, outside the job's /30,
// and reached through the job's default route.
var otherHostIP = netip.MustParseAddr("10.214.249.1")

func addr32(a netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}}
}

// probes is every way out of the job's namespace that the tests try, with
// the count of what reached the host side. Only the first is allowed.
var probes = []struct {
	name    string
	allowed bool
	run     func(e *probeEnv) error
	reached func(e *probeEnv) int32
}{
	{"tcp to the proxy port", true,
		func(e *probeEnv) error {
			return probeTCP(e.net.Path, net.JoinHostPort(e.net.HostIP.String(), fmt.Sprint(e.proxyPort)))
		},
		func(e *probeEnv) int32 { return e.proxy.accepts.Load() }},
	{"tcp to another port of the proxy address", false,
		func(e *probeEnv) error {
			return probeTCP(e.net.Path, net.JoinHostPort(e.net.HostIP.String(), fmt.Sprint(e.otherPort)))
		},
		func(e *probeEnv) int32 { return e.other.accepts.Load() }},
	{"tcp to the proxy port on another host address", false,
		func(e *probeEnv) error {
			return probeTCP(e.net.Path, net.JoinHostPort(otherHostIP.String(), fmt.Sprint(e.proxyPort)))
		},
		func(e *probeEnv) int32 { return e.elsewhere.accepts.Load() }},
	{"udp to port 53 of the proxy address", false,
		func(e *probeEnv) error { return probeUDP(e.net.Path, net.JoinHostPort(e.net.HostIP.String(), "53")) },
		func(e *probeEnv) int32 { return e.dns.packets.Load() }},
	{"icmp echo to the proxy address", false,
		func(e *probeEnv) error { return probeICMP(e.net.Path, e.net.HostIP) },
		func(e *probeEnv) int32 { return e.icmp.requests.Load() }},
	{"tcp to the proxy port on the host's ipv6 link-local address", false,
		func(e *probeEnv) error {
			return probeTCP(e.net.Path, net.JoinHostPort(hostLinkLocal.String()+"%"+e.jobZone, fmt.Sprint(e.proxyPort)))
		},
		func(e *probeEnv) int32 { return e.proxy6.accepts.Load() }},
}

// TestRules_AllowOnlyTCPToProxyPort probes with both tables in place, and
// with each alone: the inet table alone is what a runtime that sends
// through the namespace's IP stack meets should the link's rules be gone;
// the link's alone is what a runtime with a stack of its own (gVisor's,
// under runsc) meets, since its frames pass no inet hook.
func TestRules_AllowOnlyTCPToProxyPort(t *testing.T) {
	for _, tc := range []struct {
		name   string
		delete []nftables.TableFamily
	}{
		{"both tables", nil},
		{"inet table alone", []nftables.TableFamily{nftables.TableFamilyNetdev}},
		{"link table alone", []nftables.TableFamily{nftables.TableFamilyINet}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newProbeEnv(t)
			deleteRules(t, e.net.Path, tc.delete...)
			checkProbes(t, e)
		})
	}
}

func checkProbes(t *testing.T, e *probeEnv) {
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			err := p.run(e)
			if p.allowed {
				if err != nil {
					t.Fatalf("allowed traffic failed: %v", err)
				}
				if n := p.reached(e); n != 1 {
					t.Fatalf("server saw %d connections, want 1", n)
				}
				return
			}
			if err == nil {
				t.Errorf("denied traffic got an answer")
			}
			time.Sleep(200 * time.Millisecond) // let any stray packet arrive
			if n := p.reached(e); n != 0 {
				t.Errorf("denied traffic reached the host side %d times", n)
			}
			t.Logf("denied as expected: %v", err)
		})
	}
}

// TestRules_ResetConnectionsToProxyPastTheLimit holds ProxyConnLimit
// connections from the job to the proxy port: the next one is reset in the
// job's namespace and never reaches the host; once one is closed, a new
// one gets through again.
func TestRules_ResetConnectionsToProxyPastTheLimit(t *testing.T) {
	port := freePort(t)
	n, _ := newJobNet(t, testPrefix, port)
	proxy := startTCPEcho(t, net.JoinHostPort(n.HostIP.String(), fmt.Sprint(port)))
	addr := net.JoinHostPort(n.HostIP.String(), fmt.Sprint(port))
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	dial := func() error {
		return doInNetNS(n.Path, func() error {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err == nil {
				held = append(held, c)
			}
			return err
		})
	}
	for i := range ProxyConnLimit {
		if err := dial(); err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, ProxyConnLimit, err)
		}
	}
	if !eventually(func() bool { return proxy.accepts.Load() == ProxyConnLimit }) {
		t.Fatalf("proxy accepted %d, want %d", proxy.accepts.Load(), ProxyConnLimit)
	}
	err := dial()
	if !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("connection past the limit: %v, want refused by a reset", err)
	}
	if got := proxy.accepts.Load(); got != ProxyConnLimit {
		t.Errorf("proxy accepted %d, want the limit of %d", got, ProxyConnLimit)
	}
	// Once one is closed, conntrack no longer counts it.
	held[0].Close()
	held = held[1:]
	var again error
	if !eventually(func() bool { again = dial(); return again == nil }) {
		t.Errorf("after one connection closed, a new one: %v", again)
	}
}

// TestRules_LimitLetsClosedConnectionsGo makes many more connections to
// the proxy than ProxyConnLimit, one after another, each closed before the
// next: none is refused, since the limit counts open connections, not how
// many were made. (The kernel forgets closed connections lazily, so a
// flood of short ones, thousands a second in parallel, can be refused
// while it lasts; a job at that rate is flooding.)
func TestRules_LimitLetsClosedConnectionsGo(t *testing.T) {
	const n = 20 * ProxyConnLimit
	port := freePort(t)
	jn, _ := newJobNet(t, testPrefix, port)
	proxy := startTCPEcho(t, net.JoinHostPort(jn.HostIP.String(), fmt.Sprint(port)))
	err := probeTCPMany(jn.Path, net.JoinHostPort(jn.HostIP.String(), fmt.Sprint(port)), n)
	if err != nil {
		t.Fatal(err)
	}
	if got := proxy.accepts.Load(); got != n {
		t.Errorf("proxy accepted %d of %d", got, n)
	}
}

// probeTCPMany is probeTCP n times in a row from the job's namespace.
func probeTCPMany(nsPath, addr string, n int) error {
	// The timeouts only bound a failure: a refusal past the limit is a
	// reset, at once. On a loaded host a second is not enough for a SYN.
	return doInNetNS(nsPath, func() error {
		for i := range n {
			c, err := net.DialTimeout("tcp", addr, 30*time.Second)
			if err != nil {
				return fmt.Errorf("connection %d of %d: %w", i+1, n, err)
			}
			c.SetDeadline(time.Now().Add(30 * time.Second))
			_, err = c.Write([]byte("a"))
			if err == nil {
				_, err = io.ReadFull(c, make([]byte, 1))
			}
			c.Close()
			if err != nil {
				return fmt.Errorf("connection %d of %d: %w", i+1, n, err)
			}
		}
		return nil
	})
}

// TestRules_ProbesDetectTrafficWithoutRules is the control for the test
// above: with the table deleted, every probe gets through, so each of them
// can fail when a rule lets its traffic out.
func TestRules_ProbesDetectTrafficWithoutRules(t *testing.T) {
	e := newProbeEnv(t)
	deleteRules(t, e.net.Path, nftables.TableFamilyINet, nftables.TableFamilyNetdev)
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			if err := p.run(e); err != nil {
				t.Fatalf("without rules the probe failed: %v", err)
			}
			if !eventually(func() bool { return p.reached(e) > 0 }) {
				t.Fatal("without rules nothing reached the host side")
			}
		})
	}
}

// TestRules_NftReadsThemBackAsIntended cross-checks the raw expressions
// against nft's own decoding of them. Only lines that nft has printed the
// same way for years are compared.
func TestRules_NftReadsThemBackAsIntended(t *testing.T) {
	n, _ := newJobNet(t, testPrefix, 3128)
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Fatal("nft not found: install nftables (make deps does)")
	}
	var out []byte
	err = doInNetNS(n.Path, func() error {
		// A child forked from this thread starts in the job's namespace.
		var err error
		out, err = exec.Command(nft, "list", "table", "inet", TableName).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("nft list: %v\n%s", err, out)
	}
	t.Logf("nft list table inet %s in %s:\n%s", TableName, n.Path, out)
	for _, want := range []string{
		"type filter hook input priority filter; policy drop;",
		"type filter hook forward priority filter; policy drop;",
		"type filter hook output priority filter; policy drop;",
		`iifname "lo" accept`,
		`oifname "lo" accept`,
		"ct state established,related accept",
		fmt.Sprintf("ip daddr %s tcp dport 3128 accept", n.HostIP),
		fmt.Sprintf("ip daddr %s tcp dport 3128 ct state new ct count over %d counter packets 0 bytes 0 reject with tcp reset", n.HostIP, ProxyConnLimit),
		"drop comment",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("nft output lacks %q", want)
		}
	}
}

// deleteRules deletes the job's tables of the given families.
func deleteRules(t *testing.T, nsPath string, families ...nftables.TableFamily) {
	t.Helper()
	if len(families) == 0 {
		return
	}
	f, err := os.Open(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		c.DelTable(&nftables.Table{Family: f, Name: TableName})
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestRules_ProxyConnectionComesFromJobIP(t *testing.T) {
	e := newProbeEnv(t)
	if err := probes[0].run(e); err != nil {
		t.Fatal(err)
	}
	e.proxy.mu.Lock()
	defer e.proxy.mu.Unlock()
	if len(e.proxy.peers) != 1 {
		t.Fatalf("peers %v", e.proxy.peers)
	}
	host, _, _ := net.SplitHostPort(e.proxy.peers[0])
	if host != e.net.JobIP.String() {
		t.Errorf("proxy saw source %s, want the job's %s: the proxy identifies jobs by it", host, e.net.JobIP)
	}
}

func TestDeniedPackets_CountsDirectEgress(t *testing.T) {
	e := newProbeEnv(t)
	before, err := e.net.DeniedPackets()
	if err != nil {
		t.Fatal(err)
	}
	probes[1].run(e)
	probes[2].run(e)
	after, err := e.net.DeniedPackets()
	if err != nil {
		t.Fatal(err)
	}
	// One SYN and three datagrams, at least.
	if after-before < 4 {
		t.Errorf("denied counter went from %d to %d, want at least 4 more", before, after)
	}
}

func TestCreate_DisablesIPv6OnBothEnds(t *testing.T) {
	n, _ := newJobNet(t, testPrefix, 3128)
	read := func(iface string) string {
		b, err := os.ReadFile(filepath.Join("/proc/sys/net/ipv6/conf", iface, "disable_ipv6"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if got := read(n.HostIf); got != "1" {
		t.Errorf("host end %s: disable_ipv6 = %s", n.HostIf, got)
	}
	hl, err := netlink.LinkByName(n.HostIf)
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := netlink.AddrList(hl, netlink.FAMILY_V6); len(a) != 0 {
		t.Errorf("host end has IPv6 addresses %v", a)
	}
	err = doInNetNS(n.Path, func() error {
		for _, iface := range []string{"all", "default", JobIf} {
			if got := read(iface); got != "1" {
				t.Errorf("job netns %s: disable_ipv6 = %s", iface, got)
			}
		}
		jl, err := netlink.LinkByName(JobIf)
		if err != nil {
			return err
		}
		if a, _ := netlink.AddrList(jl, netlink.FAMILY_V6); len(a) != 0 {
			t.Errorf("job end has IPv6 addresses %v", a)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCreate_JobNetnsHasLoopbackVethAndDefaultRoute(t *testing.T) {
	n, _ := newJobNet(t, testPrefix, 3128)
	if !strings.HasPrefix(filepath.Base(n.Path), NamePrefix) || filepath.Dir(n.Path) != Dir {
		t.Errorf("netns path %s, want %s/%s*", n.Path, Dir, NamePrefix)
	}
	if len(n.HostIf) > 15 || !strings.HasPrefix(n.HostIf, LinkPrefix) {
		t.Errorf("host link name %q", n.HostIf)
	}
	hl, err := netlink.LinkByName(n.HostIf)
	if err != nil {
		t.Fatal(err)
	}
	if a := hl.Attrs(); a.Group != LinkGroup || !strings.HasPrefix(a.Alias, LinkAlias+" job ") || !IsJobLink(hl) {
		t.Errorf("host end %s (group %#x, alias %q) not labelled as Airlock's", n.HostIf, a.Group, a.Alias)
	}
	err = doInNetNS(n.Path, func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		var names []string
		for _, l := range links {
			names = append(names, l.Attrs().Name)
			if l.Attrs().Flags&net.FlagUp == 0 {
				t.Errorf("%s is down", l.Attrs().Name)
			}
		}
		if strings.Join(names, ",") != "lo,"+JobIf {
			t.Errorf("links in job netns: %v", names)
		}
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(n.HostIP.AsSlice()) {
				return nil
			}
		}
		return fmt.Errorf("no default route via %s in %v", n.HostIP, routes)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// dropAllCaps leaves the calling thread no capabilities, as the sandbox's
// OCI spec leaves the task none.
func dropAllCaps() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	return unix.Capset(&hdr, &data[0])
}

func TestRules_TaskWithoutCapabilitiesCannotChangeThem(t *testing.T) {
	n, _ := newJobNet(t, testPrefix, 3128)
	var tried []string
	err := doInNetNS(n.Path, func() error {
		// Capabilities are per thread; this one is thrown away afterwards.
		if err := dropAllCaps(); err != nil {
			return fmt.Errorf("capset: %w", err)
		}
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: TableName})
		tried = append(tried, fmt.Sprintf("nft delete table: %v", c.Flush()))
		c.FlushRuleset()
		tried = append(tried, fmt.Sprintf("nft flush ruleset: %v", c.Flush()))
		jl, err := netlink.LinkByName(JobIf)
		if err != nil {
			return err
		}
		tried = append(tried, fmt.Sprintf("ip link set down: %v", netlink.LinkSetDown(jl)))
		tried = append(tried, fmt.Sprintf("ip addr add: %v", netlink.AddrAdd(jl, addr(netip.MustParseAddr("10.214.250.77")))))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range tried {
		if !strings.Contains(s, "operation not permitted") {
			t.Errorf("without capabilities: %s; want operation not permitted", s)
		}
	}
	t.Logf("without capabilities: %s", strings.Join(tried, "; "))
	f, err := os.Open(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	rules, _ := Ruleset(n.HostIP, 3128)
	if err := verify(c, rules); err != nil {
		t.Errorf("rules changed: %v", err)
	}
}

// netnsInode identifies a namespace, to look for references left to it.
func netnsInode(t *testing.T, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("net:[%d]", st.Ino)
}

func TestClose_LeavesNothingBehind(t *testing.T) {
	requireRoot(t)
	pool, err := NewAddressPool(netip.MustParsePrefix("10.214.251.0/30"), "") // room for one job
	if err != nil {
		t.Fatal(err)
	}
	n, err := Create(context.Background(), testID(t), pool, 3128)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			ctx, cancel := cleanupCtx()
			defer cancel()
			n.Close(ctx)
		}
	})
	inode := netnsInode(t, n.Path)

	// The caller's context is already cancelled, as after a job's deadline.
	jobCtx, cancelJob := context.WithCancel(context.Background())
	cancelJob()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(jobCtx), 5*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	closed = true
	if err := n.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}

	if _, err := os.Stat(n.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns file %s: %v", n.Path, err)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), filepath.Base(n.Path)) {
		t.Errorf("%s still mounted", n.Path)
	}
	if _, err := netlink.LinkByName(n.HostIf); err == nil {
		t.Errorf("veth %s still there", n.HostIf)
	}
	// No descriptor of ours still holds the namespace alive.
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if l, _ := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); l == inode {
			t.Errorf("fd %s still refers to the job's netns %s", fd.Name(), inode)
		}
	}
	if _, err := pool.Acquire(); err != nil {
		t.Errorf("lease not released: %v", err)
	}
}

func TestCreate_SameIDTwiceFailsWithoutHarmingTheFirst(t *testing.T) {
	requireRoot(t)
	pool, err := NewAddressPool(testPrefix, "")
	if err != nil {
		t.Fatal(err)
	}
	id := testID(t)
	first, err := Create(context.Background(), id, pool, 3128)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		first.Close(ctx)
	})
	if _, err := Create(context.Background(), id, pool, 3128); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	if _, err := os.Stat(first.Path); err != nil {
		t.Errorf("first job's netns gone: %v", err)
	}
	if _, err := netlink.LinkByName(first.HostIf); err != nil {
		t.Errorf("first job's veth gone: %v", err)
	}
	f, err := os.Open(first.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	rules, _ := Ruleset(first.HostIP, 3128)
	if err := verify(c, rules); err != nil {
		t.Errorf("first job's rules: %v", err)
	}
}

func TestCreate_ExhaustedPoolIsAnError(t *testing.T) {
	requireRoot(t)
	pool, err := NewAddressPool(netip.MustParsePrefix("10.214.251.0/30"), "")
	if err != nil {
		t.Fatal(err)
	}
	n, err := Create(context.Background(), testID(t)+"a", pool, 3128)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		n.Close(ctx)
	})
	if _, err := Create(context.Background(), testID(t)+"b", pool, 3128); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("Create with no free block: %v, want ErrPoolExhausted", err)
	}
}

func TestCreateLoopbackOnly_HasOnlyLoopback(t *testing.T) {
	requireRoot(t)
	n, err := CreateLoopbackOnly(context.Background(), testID(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := cleanupCtx()
	defer cancel()
	defer n.Close(ctx)
	err = doInNetNS(n.Path, func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		if len(links) != 1 || links[0].Attrs().Name != "lo" || links[0].Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("links %v, want lo up and nothing else", links)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns file after Close: %v", err)
	}
}

// throwawayNS makes a namespace, named in a directory of the test's own,
// to stand in for the host.
func throwawayNS(t *testing.T) (dir, path string, h *netlink.Handle) {
	t.Helper()
	requireRoot(t)
	dir = t.TempDir()
	// ensureNSDir makes dir a mount point; unmount it before TempDir's
	// cleanup removes it.
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	path = filepath.Join(dir, "host")
	if err := newNamedNS(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeNamedNS(path) })
	h, err := handleIn(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return dir, path, h
}

func TestNewPool_RefusesOverlapWithHostAddressOrRoute(t *testing.T) {
	_, _, h := throwawayNS(t)
	// A veth stands in for a dummy link: this kernel has no dummy driver.
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lan0"}, PeerName: "lan0-peer"}); err != nil {
		t.Fatal(err)
	}
	dummy, err := h.LinkByName("lan0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(dummy); err != nil {
		t.Fatal(err)
	}
	mustAddr := func(s string) {
		p := netip.MustParsePrefix(s)
		if err := h.AddrAdd(dummy, &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}); err != nil {
			t.Fatal(err)
		}
	}
	mustRoute := func(dst string, table int) {
		p := netip.MustParsePrefix(dst)
		r := &netlink.Route{LinkIndex: dummy.Attrs().Index, Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)},
			Gw: net.IPv4(192, 168, 77, 2), Table: table}
		if p.Bits() == 0 {
			r.Dst = nil
		}
		if err := h.RouteAdd(r); err != nil {
			t.Fatal(err)
		}
	}
	mustAddr("192.168.77.1/24")
	mustRoute("0.0.0.0/0", unix.RT_TABLE_MAIN)
	mustRoute("10.40.0.0/16", unix.RT_TABLE_MAIN)
	mustRoute("10.50.8.0/24", 100) // a policy-routing table
	mustAddr("10.60.1.1/32")

	for _, tc := range []struct {
		pool    string
		overlap bool
	}{
		{"10.213.0.0/16", false}, // only the default route covers it
		{"192.168.0.0/16", true}, // contains the address
		{"192.168.77.128/30", true},
		{"10.40.128.0/24", true}, // inside a route
		{"10.0.0.0/8", true},     // contains a route
		{"10.50.8.0/30", true},   // a route in another table
		{"10.60.1.0/30", true},   // a /32 address with no route of its own
		{"10.41.0.0/16", false},
	} {
		err := checkOverlap(h, netip.MustParsePrefix(tc.pool))
		if tc.overlap != errors.Is(err, ErrPoolOverlap) {
			t.Errorf("pool %s: %v, want overlap %v", tc.pool, err, tc.overlap)
		}
		if err != nil {
			t.Logf("pool %s: %v", tc.pool, err)
		}
	}
}

func TestNewPool_AcceptsDefaultPoolOnThisHost(t *testing.T) {
	requireRoot(t)
	if _, err := NewAddressPool(DefaultPrefix, ""); err != nil {
		t.Fatalf("the default pool is not usable here: %v", err)
	}
}

func TestReap_RemovesLeftoversAndNothingElse(t *testing.T) {
	dir, _, h := throwawayNS(t)
	add := func(l netlink.Link, alias string) {
		t.Helper()
		if err := h.LinkAdd(l); err != nil {
			t.Fatalf("add %s: %v", l.Attrs().Name, err)
		}
		if alias != "" {
			if err := h.LinkSetAlias(l, alias); err != nil {
				t.Fatal(err)
			}
		}
	}
	veth := func(name, peer string, group uint32) *netlink.Veth {
		return &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, Group: group}, PeerName: peer}
	}
	// Crashed before its alias was set: found by its group.
	add(veth("al-deadbeef", "p-deadbeef", LinkGroup), "")
	// Found by its alias.
	add(veth("al-deadbee2", "p-deadbee2", 0), LinkAlias+" job crashed")
	// Strangers: no label, the wrong name, not a veth.
	add(veth("al-cafe0001", "p-cafe0001", 0), "")
	add(veth("other0", "other0-p", LinkGroup), LinkAlias+" lookalike")
	add(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "al-bridge", Group: LinkGroup}}, LinkAlias)
	plantNamespaces(t, dir, NamePrefix+"deadbeef", NamePrefix+"0badf00d", "someone-else")

	if err := reap(context.Background(), h, dir, ""); err != nil {
		t.Fatal(err)
	}

	got := linkNames(t, h)
	for _, gone := range []string{"al-deadbeef", "p-deadbeef", "al-deadbee2", "p-deadbee2"} {
		if strings.Contains(got, gone) {
			t.Errorf("leftover %s not reaped (links %s)", gone, got)
		}
	}
	for _, kept := range []string{"al-cafe0001", "other0", "al-bridge"} {
		if !strings.Contains(got, kept) {
			t.Errorf("reaped %s, which is not Airlock's (links %s)", kept, got)
		}
	}
	entries, _ := os.ReadDir(dir)
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	if strings.Join(files, ",") != "host,someone-else" {
		t.Errorf("netns files after reap: %v, want host and someone-else", files)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), NamePrefix+"deadbeef") {
		t.Error("reaped netns still mounted")
	}
}

func TestCreate_CancelledContextLeavesNothing(t *testing.T) {
	requireRoot(t)
	pool, err := NewAddressPool(netip.MustParsePrefix("10.214.251.0/30"), "")
	if err != nil {
		t.Fatal(err)
	}
	id := testID(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n, err := Create(ctx, id, pool, 3128)
	if !errors.Is(err, context.Canceled) {
		if n != nil {
			cctx, ccancel := cleanupCtx()
			defer ccancel()
			n.Close(cctx)
		}
		t.Fatalf("Create with a cancelled context: %v, want context.Canceled", err)
	}
	short := shortID(id)
	if _, err := os.Stat(filepath.Join(Dir, NamePrefix+short)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns file left: %v", err)
	}
	if _, err := netlink.LinkByName(LinkPrefix + short); err == nil {
		t.Errorf("veth left")
	}
	if _, err := pool.Acquire(); err != nil {
		t.Errorf("lease not released: %v", err)
	}
}

func TestCreate_ConcurrentJobsGetSeparateNetworks(t *testing.T) {
	requireRoot(t)
	pool, err := NewAddressPool(testPrefix, "")
	if err != nil {
		t.Fatal(err)
	}
	const jobs = 8
	nets := make([]*Net, jobs)
	errs := make([]error, jobs)
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nets[i], errs[i] = Create(context.Background(), fmt.Sprintf("%s-%d", testID(t), i), pool, 3128)
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		for _, n := range nets {
			if n != nil {
				n.Close(ctx)
			}
		}
	})
	seen := map[string]bool{}
	for i, n := range nets {
		if errs[i] != nil {
			t.Fatalf("job %d: %v", i, errs[i])
		}
		for _, k := range []string{n.Path, n.HostIf, n.HostIP.String(), n.JobIP.String()} {
			if seen[k] {
				t.Errorf("%s shared between jobs", k)
			}
			seen[k] = true
		}
	}
	ctx, cancel := cleanupCtx()
	defer cancel()
	for _, n := range nets {
		if err := n.Close(ctx); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(n.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after Close", n.Path)
		}
	}
}

// BenchmarkCreateClose measures what allowlist mode adds to a job's start
// and end.
func BenchmarkCreateClose(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("needs root")
	}
	pool, err := NewAddressPool(testPrefix, "")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		n, err := Create(ctx, fmt.Sprintf("bench-%d-%d", os.Getpid(), i), pool, 3128)
		if err != nil {
			b.Fatal(err)
		}
		if err := n.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func TestReap_LeavesOtherScopes(t *testing.T) {
	dir, _, h := throwawayNS(t)
	for name, alias := range map[string]string{
		"al-0000000a": aliasOf("mine", "run-a"),
		"al-0000000b": aliasOf("other", "run-b"),
		"al-0000000c": aliasOf("", "run-c"),
	} {
		l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, Group: LinkGroup}, PeerName: "p" + name[2:]}
		if err := h.LinkAdd(l); err != nil {
			t.Fatalf("add %s: %v", name, err)
		}
		if err := h.LinkSetAlias(l, alias); err != nil {
			t.Fatal(err)
		}
	}
	plantNamespaces(t, dir, nsName("mine", "0000000a"), nsName("other", "0000000b"), nsName("", "0000000c"))

	if err := reap(context.Background(), h, dir, "mine"); err != nil {
		t.Fatal(err)
	}

	got := linkNames(t, h)
	if strings.Contains(got, "al-0000000a") {
		t.Errorf("own scope's veth not reaped (links %s)", got)
	}
	for _, kept := range []string{"al-0000000b", "al-0000000c"} {
		if !strings.Contains(got, kept) {
			t.Errorf("reaped %s, another scope's (links %s)", kept, got)
		}
	}
	entries, _ := os.ReadDir(dir)
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	want := "airlock-0000000c,airlock-other-0000000b,host"
	if strings.Join(files, ",") != want {
		t.Errorf("netns files after reap: %v, want %s", files, want)
	}
}

func TestNewPool_RejectsBadScope(t *testing.T) {
	for _, s := range []string{"Upper", "a-b", "a/b", strings.Repeat("a", 33)} {
		if _, err := NewAddressPool(netip.MustParsePrefix("10.214.251.0/30"), s); !errors.Is(err, ErrInvalidPool) {
			t.Errorf("scope %q: %v, want ErrInvalidPool", s, err)
		}
	}
}

// plantNamespaces makes named namespaces in dir, removed at the test's end.
func plantNamespaces(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, name := range names {
		if err := newNamedNS(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { removeNamedNS(filepath.Join(dir, name)) })
	}
}

// linkNames lists the names of h's links, comma-separated.
func linkNames(t *testing.T, h *netlink.Handle) string {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return strings.Join(names, ",")
}

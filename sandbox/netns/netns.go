package netns

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	// Dir is where named network namespaces are bind-mounted: the directory
	// `ip netns` uses, so operators can inspect a job with `ip netns exec`.
	Dir = "/var/run/netns"
	// NamePrefix starts the name of every job netns under Dir.
	NamePrefix = "airlock-"
	// LinkPrefix starts the name of the host end of every job veth. With 8
	// hex digits after it the name stays within the kernel's 15 bytes.
	LinkPrefix = "al-"
	// LinkGroup is the device group (`ip link show group 41377`) of the
	// host end of every job veth. Unlike an alias it is set in the same
	// netlink message that creates the link, so even a veth left by a crash
	// in the middle of Create carries it.
	LinkGroup = 0xa1a1
	// LinkAlias starts the alias of every job veth, followed by the job id,
	// so an operator can tell which job a link belongs to.
	LinkAlias = "airlock"
	// JobIf is the name of the job end of the veth, inside the job's netns.
	JobIf = "eth0"
)

var (
	// ErrInvalidJob means Create was called without an id, pool or port.
	ErrInvalidJob = errors.New("netns: invalid job network request")
	// ErrExists means a netns or veth with the job's name is already there:
	// a live job with the same id, or a leftover that Reap would remove.
	ErrExists = errors.New("netns: job network already exists")
)

// Net is one job's network namespace and, for allowlist mode, its veth and
// address lease. Close removes all of it.
type Net struct {
	// Path is the bind-mounted namespace, for the OCI spec's network
	// namespace path.
	Path string
	// HostIP is the host end of the veth, where the egress proxy listens;
	// zero for a loopback-only namespace.
	HostIP netip.Addr
	// JobIP is the job's source address, by which the proxy knows the job;
	// zero for a loopback-only namespace.
	JobIP netip.Addr
	// HostIf is the name of the host end of the veth; empty for a
	// loopback-only namespace.
	HostIf string

	mu    sync.Mutex
	pool  *AddressPool
	lease Lease
	// alias and rules are what Setup gives the veth and the namespace.
	alias string
	rules Rules
	// link is LinkRuleset's, installed on the job end of the veth.
	link Rules
	// from is the namespace SetupIn adopts; empty for a new one.
	from string
	// ownNS and ownLink say what this Net created and has not yet removed,
	// so that a failed Create never removes a namespace or link of the
	// same name that belongs to someone else, and Close can be retried.
	ownNS, ownLink bool
}

// Create makes the network of a job in allowlist mode: a namespace named
// NamePrefix plus the pool's scope and a short hash of id, a veth pair with
// addresses leased from pool, a default route to the host end, IPv6
// disabled, and the rules of Ruleset(HostIP, proxyPort) installed inside
// the namespace before anything connects it to the host. On error nothing
// is left behind. It is Prepare followed by Setup.
func Create(ctx context.Context, id string, pool *AddressPool, proxyPort uint16) (*Net, error) {
	n, err := Prepare(id, pool, proxyPort)
	if err != nil {
		return nil, err
	}
	if err := n.Setup(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

// Prepare leases the job's addresses and names its namespace, creating
// nothing in the kernel yet, so that a container's spec can name the
// namespace while Setup builds it. Close releases the lease.
func Prepare(id string, pool *AddressPool, proxyPort uint16) (*Net, error) {
	if id == "" || pool == nil || proxyPort == 0 {
		return nil, fmt.Errorf("%w: need an id, a pool and a proxy port", ErrInvalidJob)
	}
	lease, err := pool.Acquire()
	if err != nil {
		return nil, err
	}
	rules, err := Ruleset(lease.HostIP, proxyPort)
	if err != nil {
		pool.Release(lease)
		return nil, err
	}
	link, err := LinkRuleset(lease.HostIP, lease.JobIP, proxyPort, JobIf)
	if err != nil {
		pool.Release(lease)
		return nil, err
	}
	short := shortID(id)
	return &Net{
		Path:   filepath.Join(Dir, nsName(pool.scope, short)),
		HostIP: lease.HostIP,
		JobIP:  lease.JobIP,
		HostIf: LinkPrefix + short,
		pool:   pool,
		lease:  lease,
		alias:  aliasOf(pool.scope, id),
		rules:  rules,
		link:   link,
	}, nil
}

// Setup builds what Prepare named. On error it removes what it made and
// releases the lease. A Close that races it waits for it to finish.
func (n *Net) Setup(ctx context.Context) error {
	n.mu.Lock()
	err := n.setup(ctx, n.alias, n.rules)
	n.mu.Unlock()
	if err != nil {
		return n.undo(ctx, err)
	}
	return nil
}

// SetupIn is Setup in the existing network namespace at from, such as a
// created task's /proc/PID/ns/net, which it bind-mounts at Path rather
// than making a new one. A user-namespaced task needs it: on exec, runc
// joins the task's user namespace before its network namespace, and may
// then join only one that its user namespace owns, which runc makes for
// the task. The namespace must be empty of links but lo.
func (n *Net) SetupIn(ctx context.Context, from string) error {
	if from == "" {
		return fmt.Errorf("%w: no namespace to set up in", ErrInvalidJob)
	}
	n.mu.Lock()
	n.from = from
	err := n.setup(ctx, n.alias, n.rules)
	n.mu.Unlock()
	if err != nil {
		return n.undo(ctx, err)
	}
	return nil
}

// CreateLoopbackOnly makes the namespace of a job in network mode none:
// nothing in it but lo, which is up.
func CreateLoopbackOnly(ctx context.Context, id string) (*Net, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: need an id", ErrInvalidJob)
	}
	n := &Net{Path: filepath.Join(Dir, NamePrefix+shortID(id))}
	err := func() error {
		if err := newNamedNS(n.Path); err != nil {
			return err
		}
		n.ownNS = true
		job, err := handleIn(n.Path)
		if err != nil {
			return err
		}
		defer job.Close()
		if err := withDeadline(ctx, job); err != nil {
			return err
		}
		return loUp(job)
	}()
	if err != nil {
		return nil, n.undo(ctx, err)
	}
	return n, nil
}

// undo removes what a failed Create made. It runs even if ctx is already
// cancelled: a half-built namespace must not outlive the request.
func (n *Net) undo(ctx context.Context, err error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if cerr := n.Close(cctx); cerr != nil {
		err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
	}
	return err
}

func (n *Net) setup(ctx context.Context, alias string, rules Rules) error {
	if n.from != "" {
		if err := bindNamedNS(n.from, n.Path); err != nil {
			return err
		}
	} else if err := newNamedNS(n.Path); err != nil {
		return err
	}
	n.ownNS = true
	nsFile, err := os.Open(n.Path)
	if err != nil {
		return fmt.Errorf("netns: open %s: %w", n.Path, err)
	}
	defer nsFile.Close()
	nsFD := int(nsFile.Fd())

	// Rules first: the namespace is never linked to the host without them.
	if err := apply(nsFD, rules); err != nil {
		return err
	}
	// A second layer under the inet table: with IPv6 off, the job end has
	// no link-local address to send from. New links inherit "default".
	if err := doInNetNS(n.Path, func() error {
		return errors.Join(
			disableIPv6("all"),
			disableIPv6("default"),
		)
	}); err != nil {
		return err
	}
	job, err := handleIn(n.Path)
	if err != nil {
		return err
	}
	defer job.Close()
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netns: open netlink: %w", err)
	}
	defer host.Close()
	if err := withDeadline(ctx, job, host); err != nil {
		return err
	}
	if err := loUp(job); err != nil {
		return err
	}

	// The peer is created directly inside the job's namespace, so there is
	// never a moment when both ends sit in the host namespace.
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: n.HostIf, Group: LinkGroup},
		PeerName:      JobIf,
		PeerNamespace: netlink.NsFd(nsFD),
	}
	if err := host.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%w: link %s", ErrExists, n.HostIf)
		}
		return fmt.Errorf("netns: add veth %s: %w", n.HostIf, err)
	}
	n.ownLink = true
	hostLink, err := host.LinkByName(n.HostIf)
	if err != nil {
		return fmt.Errorf("netns: find %s: %w", n.HostIf, err)
	}
	// The kernel ignores an alias in the message that creates a link.
	if err := host.LinkSetAlias(hostLink, alias); err != nil {
		return fmt.Errorf("netns: alias %s: %w", n.HostIf, err)
	}
	// Before the link goes up, so the host end never gets a link-local
	// address that the job could try to reach.
	if err := disableIPv6(n.HostIf); err != nil {
		return err
	}
	if err := host.AddrAdd(hostLink, addr(n.HostIP)); err != nil {
		return fmt.Errorf("netns: address %s on %s: %w", n.HostIP, n.HostIf, err)
	}
	if err := host.LinkSetUp(hostLink); err != nil {
		return fmt.Errorf("netns: up %s: %w", n.HostIf, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	peer, err := job.LinkByName(JobIf)
	if err != nil {
		return fmt.Errorf("netns: find %s in %s: %w", JobIf, n.Path, err)
	}
	// The job end is down until the link's own rules are on it.
	if err := apply(nsFD, n.link); err != nil {
		return err
	}
	if err := job.AddrAdd(peer, addr(n.JobIP)); err != nil {
		return fmt.Errorf("netns: address %s on %s: %w", n.JobIP, JobIf, err)
	}
	if err := job.LinkSetUp(peer); err != nil {
		return fmt.Errorf("netns: up %s: %w", JobIf, err)
	}
	if err := job.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: n.HostIP.AsSlice()}); err != nil {
		return fmt.Errorf("netns: default route via %s: %w", n.HostIP, err)
	}
	return ctx.Err()
}

// Close removes the veth, unmounts and deletes the namespace file and
// releases the address lease. The nftables table goes with the namespace
// once no task holds it; until then the namespace has no link, so a task
// that outlives its job is still cut off. Close is idempotent, and after a
// partial failure a second call retries what is left. It honours ctx's
// deadline, so call it with context.WithoutCancel plus a timeout.
func (n *Net) Close(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	if n.ownLink {
		if err := deleteLink(ctx, n.HostIf); err != nil {
			errs = append(errs, err)
		} else {
			n.ownLink = false
		}
	}
	if n.ownNS {
		if err := removeNamedNS(n.Path); err != nil {
			errs = append(errs, err)
		} else {
			n.ownNS = false
		}
	}
	// The lease goes back only once the link with its address is gone:
	// two host links with one address would cross two jobs' traffic.
	if !n.ownLink && n.pool != nil {
		n.pool.Release(n.lease)
		n.pool = nil
	}
	return errors.Join(errs...)
}

// DeniedPackets returns how many packets the job's rules have dropped on
// the way out: its attempts at direct egress, for the audit record. Call it
// before Close.
func (n *Net) DeniedPackets() (uint64, error) {
	f, err := os.Open(n.Path)
	if err != nil {
		return 0, fmt.Errorf("netns: open %s: %w", n.Path, err)
	}
	defer f.Close()
	return deniedPackets(int(f.Fd()))
}

func deleteLink(ctx context.Context, name string) error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netns: open netlink: %w", err)
	}
	defer h.Close()
	if err := withDeadline(ctx, h); err != nil {
		return err
	}
	l, err := h.LinkByName(name)
	if err != nil {
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil
		}
		return fmt.Errorf("netns: find %s: %w", name, err)
	}
	// Deleting one end of a veth deletes the other.
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("netns: delete %s: %w", name, err)
	}
	return nil
}

// nsName is the file name of a job's namespace under Dir.
func nsName(scope, short string) string {
	if scope == "" {
		return NamePrefix + short
	}
	return NamePrefix + scope + "-" + short
}

// aliasOf is the alias of a job's host veth: it names the job, and the
// scope of the broker that owns it.
func aliasOf(scope, id string) string {
	if scope == "" {
		return LinkAlias + " job " + printable(id)
	}
	return LinkAlias + " " + scope + " job " + printable(id)
}

// checkScope keeps a scope usable in a file name and a link alias, and
// unambiguous as a name prefix.
func checkScope(scope string) error {
	for _, r := range scope {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return fmt.Errorf("%w: scope %q: want lowercase letters and digits", ErrInvalidPool, scope)
		}
	}
	if len(scope) > 32 {
		return fmt.Errorf("%w: scope %q is over 32 characters", ErrInvalidPool, scope)
	}
	return nil
}

// shortID names a job's netns and veth. A hash rather than the id itself:
// any id yields a valid, fixed-length name, and 8 hex digits fit a link
// name. A collision is refused with ErrExists, never shared.
func shortID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:4])
}

// printable keeps an id readable in a link alias and out of anyone's
// terminal escapes.
func printable(id string) string {
	s := strings.Map(func(r rune) rune {
		if r > ' ' && r < 0x7f {
			return r
		}
		return '_'
	}, id)
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

func addr(a netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(blockBits, 32)}}
}

func loUp(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("netns: up lo: %w", err)
	}
	return nil
}

// withDeadline makes every netlink call on hs give up at ctx's deadline.
func withDeadline(ctx context.Context, hs ...*netlink.Handle) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, ok := ctx.Deadline()
	if !ok {
		return nil
	}
	left := time.Until(d)
	if left < time.Millisecond {
		return context.DeadlineExceeded
	}
	for _, h := range hs {
		if err := h.SetSocketTimeout(left); err != nil {
			return fmt.Errorf("netns: netlink timeout: %w", err)
		}
	}
	return nil
}

// disableIPv6 turns IPv6 off for an interface (or "all", "default") in the
// calling thread's namespace. A kernel without IPv6 has nothing to turn off.
func disableIPv6(iface string) error {
	p := filepath.Join("/proc/sys/net/ipv6/conf", iface, "disable_ipv6")
	err := os.WriteFile(p, []byte("1"), 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("netns: disable IPv6 on %s: %w", iface, err)
	}
	return nil
}

// nsDirMu serialises making the namespace directory a mount point, so two
// concurrent Creates do not stack two bind mounts on it.
var nsDirMu sync.Mutex

// ensureNSDir prepares dir as `ip netns add` does: a shared mount point,
// so a namespace mounted in it later is also visible in other mount
// namespaces, such as containerd's if it runs in its own.
func ensureNSDir(dir string) error {
	nsDirMu.Lock()
	defer nsDirMu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: make it one by binding it onto itself.
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("netns: bind %s: %w", dir, err)
		}
		err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("netns: make %s shared: %w", dir, err)
	}
	return nil
}

// newNamedNS creates a network namespace and bind-mounts it at path, which
// must not exist yet. The namespace lives as long as the mount or any
// process, socket or file descriptor in it.
func newNamedNS(path string) error {
	if err := nsMountPoint(path); err != nil {
		return err
	}
	err := onThrowawayThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("netns: unshare: %w", err)
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("netns: mount %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		os.Remove(path)
	}
	return err
}

// nsMountPoint creates the empty file a namespace is bind-mounted on; it
// must not exist yet, so that a namespace of the same name is never
// mounted over.
func nsMountPoint(path string) error {
	if err := ensureNSDir(filepath.Dir(path)); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, path)
		}
		return fmt.Errorf("netns: %w", err)
	}
	return f.Close()
}

// bindNamedNS bind-mounts the network namespace at from on path, which
// must not exist yet, as newNamedNS does a new one.
func bindNamedNS(from, path string) error {
	if err := nsMountPoint(path); err != nil {
		return err
	}
	if err := unix.Mount(from, path, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("netns: mount %s on %s: %w", from, path, err)
	}
	return nil
}

// removeNamedNS unmounts and deletes a namespace file made by newNamedNS.
// Detaching lets the unmount succeed while a task still holds the
// namespace; it is freed when the task goes.
func removeNamedNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns: unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("netns: %w", err)
	}
	return nil
}

// handleIn opens a netlink handle whose sockets live in the namespace at
// path; they stay there whichever thread later uses them.
func handleIn(path string) (*netlink.Handle, error) {
	var h *netlink.Handle
	err := doInNetNS(path, func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns: netlink in %s: %w", path, err)
	}
	return h, nil
}

// doInNetNS runs fn with its OS thread in the namespace at path, in the
// manner of containernetworking's ns.Do. Goroutines that fn starts run
// elsewhere, in the host namespace; sockets that fn opens stay in path's.
func doInNetNS(path string, fn func() error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("netns: open %s: %w", path, err)
	}
	defer f.Close()
	return onThrowawayThread(func() error {
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("netns: enter %s: %w", path, err)
		}
		return fn()
	})
}

// onThrowawayThread runs fn on an OS thread that no other goroutine will
// ever use: the goroutine locks its thread and exits without unlocking, so
// the runtime ends the thread rather than reuse it in whatever namespace
// fn left it. That is simpler and safer than switching back, which can fail.
func onThrowawayThread(fn func() error) error {
	errc := make(chan error, 1)
	// Not recovered: fn is the broker's own setup (a namespace, its
	// rules from the profile, a netlink handle), which reads nothing a
	// job wrote.
	go func() {
		runtime.LockOSThread()
		errc <- fn()
	}()
	return <-errc
}

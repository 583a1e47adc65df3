package netns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Reap removes the job veths and namespaces of one scope, the one its
// broker's pool was made with (see NewAddressPool): job veths (named LinkPrefix,
// with LinkGroup or LinkAlias) whose alias names the scope, in the caller's
// namespace, and the scope's namespaces under Dir. It is for airlockd's
// start, when none of its jobs is live: it would cut them off too. Another
// broker's jobs, in another scope, are left alone. An empty scope reaps
// everything of Airlock's, including a veth a crash left without an alias.
func Reap(ctx context.Context, scope string) error {
	if err := checkScope(scope); err != nil {
		return err
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netns: open netlink: %w", err)
	}
	defer h.Close()
	return reap(ctx, h, Dir, scope)
}

// reap is Reap against the namespace of h and the directory dir, so tests
// can plant leftovers away from the host's.
func reap(ctx context.Context, h *netlink.Handle, dir, scope string) error {
	if err := withDeadline(ctx, h); err != nil {
		return err
	}
	var errs []error
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("netns: list links: %w", err)
	}
	// Links first, so a namespace still held by a stray process is cut off
	// before its name goes.
	for _, l := range links {
		if !IsJobLink(l) || !inScope(l, scope) {
			continue
		}
		if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("netns: delete %s: %w", l.Attrs().Name, err))
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return errors.Join(append(errs, fmt.Errorf("netns: %w", err))...)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), nsName(scope, "")) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := removeNamedNS(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// IsJobLink reports whether l is a job veth. It asks for more than the name, so Reap never deletes a
// stranger's link that happens to be called al-something.
func IsJobLink(l netlink.Link) bool {
	a := l.Attrs()
	return l.Type() == "veth" && strings.HasPrefix(a.Name, LinkPrefix) &&
		(a.Group == LinkGroup || strings.HasPrefix(a.Alias, LinkAlias))
}

// inScope reports whether a job link belongs to scope. A scoped link whose
// alias was never set (a crash inside Create) is not claimed: its peer is in
// its job's namespace, so removing that namespace removes the pair.
func inScope(l netlink.Link, scope string) bool {
	return scope == "" || strings.HasPrefix(l.Attrs().Alias, LinkAlias+" "+scope+" ")
}

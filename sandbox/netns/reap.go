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

// Reap removes every job veth (named LinkPrefix, with LinkGroup or
// LinkAlias) in the caller's namespace and every NamePrefix namespace under
// Dir. It is for airlockd's start, when no job is live: it would cut off
// running jobs too.
func Reap(ctx context.Context) error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netns: open netlink: %w", err)
	}
	defer h.Close()
	return reap(ctx, h, Dir)
}

// reap is Reap against the namespace of h and the directory dir, so tests
// can plant leftovers away from the host's.
func reap(ctx context.Context, h *netlink.Handle, dir string) error {
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
		if !IsJobLink(l) {
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
		if !strings.HasPrefix(e.Name(), NamePrefix) {
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

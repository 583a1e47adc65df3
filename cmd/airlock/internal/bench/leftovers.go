package bench

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/netns"
)

// Leftovers counts what jobs leave on the host that a broker's metrics do
// not show. Containers and tasks are left out: seeing them needs a client
// of airlockd's containerd, and the job dirs and mounts they hold are
// counted instead.
type Leftovers struct {
	// Mounts are mount points under airlockd's state dir, as this process
	// sees them in /proc/self/mountinfo: a job's output tmpfs, a task's
	// rootfs, and whatever the embedded containerd keeps there.
	Mounts int
	// JobDirs are the entries of STATE_DIR/jobs.
	JobDirs int
	// Netns are the job network namespaces under netns.Dir, and Veths the
	// host ends of job veths. Both are host-wide: another broker's jobs
	// carry the same names.
	Netns, Veths int
}

// CountLeftovers counts leftovers of the airlockd whose --state-dir is
// stateDir. Listing the job dirs needs airlockd's user, usually root.
func CountLeftovers(stateDir string) (Leftovers, error) {
	var l Leftovers
	dir, err := filepath.Abs(stateDir)
	if err != nil {
		return l, err
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return l, err
	}
	defer f.Close()
	if l.Mounts, err = countMountsUnder(f, dir); err != nil {
		return l, fmt.Errorf("mountinfo: %w", err)
	}
	jobs, err := os.ReadDir(filepath.Join(dir, "jobs"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return l, fmt.Errorf("job dirs: %w", err)
	}
	l.JobDirs = len(jobs)
	ns, err := os.ReadDir(netns.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return l, fmt.Errorf("network namespaces: %w", err)
	}
	for _, e := range ns {
		if strings.HasPrefix(e.Name(), netns.NamePrefix) {
			l.Netns++
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		return l, fmt.Errorf("links: %w", err)
	}
	for _, link := range links {
		// Recognised as netns.Reap recognises them, not by name alone.
		if netns.IsJobLink(link) {
			l.Veths++
		}
	}
	return l, nil
}

// countMountsUnder counts the mount points in a mountinfo listing that
// are dir or below it.
func countMountsUnder(r io.Reader, dir string) (int, error) {
	dir = strings.TrimSuffix(dir, "/")
	mps, err := footprint.MountPoints(r)
	n := 0
	for _, mp := range mps {
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			n++
		}
	}
	return n, err
}

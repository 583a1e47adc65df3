package sandbox

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The runtime's first write of a pid to a cgroup's cgroup.procs takes the
// kernel's cgroup_threadgroup_rwsem for writing, and that waits for an
// RCU grace period unless another write took it within about the last
// grace period: 8 to 16 ms here, on every cold sandbox, for runc, crun
// and runsc alike. The broker takes the lock itself as the task's making
// begins, by writing its own pid to the cgroup.procs of the cgroup it is
// already in, which moves nothing; the grace period passes while the
// shim starts, and the broker writes again every few milliseconds, each
// write then taking the lock at once, until the task exists: the
// runtime's write, which comes in between, does not wait.

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// warmCgroupLock writes this process's pid to its own cgroup.procs, in
// the first hierarchy of /proc/self/cgroup mounted under cgroupRoot, and
// again every warmEvery until done is closed (the runtime has made the
// sandbox) or for warmFor at most: a write within a grace period of the
// last keeps the lock ready, at 0.2 ms a write. It is best effort: where
// it cannot write, the runtime waits as it always did.
func warmCgroupLock(proc, cgroupRoot string, done <-chan struct{}) {
	path := ownProcsFile(proc, cgroupRoot)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	pid := []byte(strconv.Itoa(os.Getpid()))
	tick := time.NewTicker(warmEvery)
	defer tick.Stop()
	stop := time.NewTimer(warmFor)
	defer stop.Stop()
	for {
		if _, err := f.Write(pid); err != nil {
			return
		}
		select {
		case <-done:
			return
		case <-stop.C:
			return
		case <-tick.C:
		}
	}
}

const (
	// warmEvery is well within the shortest grace period seen here.
	warmEvery = 5 * time.Millisecond
	// warmFor bounds the writes for one sandbox, whose runtime has
	// written its pid long before.
	warmFor = 250 * time.Millisecond
)

// ownProcsFile is the cgroup.procs of the cgroup this process is in, in
// the first hierarchy of proc/self/cgroup found under cgroupRoot, or "".
func ownProcsFile(proc, cgroupRoot string) string {
	b, err := os.ReadFile(filepath.Join(proc, "self", "cgroup"))
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		_, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		controllers, path, ok := strings.Cut(rest, ":")
		if !ok || !strings.HasPrefix(path, "/") || strings.Contains(path, "..") {
			continue
		}
		var dirs []string
		if controllers == "" {
			// cgroup v2: the whole tree, or beside v1 as unified.
			dirs = []string{cgroupRoot, filepath.Join(cgroupRoot, "unified")}
		} else {
			dirs = []string{filepath.Join(cgroupRoot, strings.TrimPrefix(controllers, "name="))}
		}
		for _, d := range dirs {
			f := filepath.Join(d, path, "cgroup.procs")
			if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() {
				return f
			}
		}
	}
	return ""
}

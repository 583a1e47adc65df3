package sandbox

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/leases"

	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/netns"
)

// Reap removes every container, task, lease, job directory and user
// namespace range claim of this runner's instance (its state dir) in
// Airlock's namespace. It runs on start, when none of its jobs can be live: after a kill -9 of the broker
// these are the leftovers of jobs that will never finish. Another broker's
// sandboxes on the same containerd are left alone. Snapshots go with their
// leases and containers.
func (r *Runner) Reap(ctx context.Context) error {
	var errs []error
	mine := fmt.Sprintf("labels.%q==%s", LabelInstance, r.instance)
	containers, err := r.client.Containers(ctx, mine)
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	// runs are this instance's run IDs, by which its shims and mounts
	// are told from another broker's on the same containerd.
	runs := map[string]bool{}
	for _, c := range containers {
		runs[c.ID()] = true
	}
	for _, c := range containers {
		if task, err := c.Task(ctx, nil); err == nil {
			if err := DeleteTask(ctx, r.client.TaskService(), task); err != nil {
				errs = append(errs, fmt.Errorf("delete task %s: %w", c.ID(), err))
			}
		}
		if err := ignoreNotFound(c.Delete(ctx, containerd.WithSnapshotCleanup)); err != nil {
			errs = append(errs, fmt.Errorf("delete container %s: %w", c.ID(), err))
		}
		r.log.Info("reaped container", "id", c.ID())
	}
	ls := r.client.LeasesService()
	all, err := ls.List(ctx, mine)
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	for _, l := range all {
		if err := ignoreNotFound(ls.Delete(ctx, l, leases.SynchronousDelete)); err != nil {
			errs = append(errs, fmt.Errorf("delete lease %s: %w", l.ID, err))
		}
		r.log.Info("reaped lease", "id", l.ID)
	}
	// What containerd no longer knows of can still run: a predecessor
	// killed with -9 mid-job may leave tasks whose shim containerd failed
	// to reconnect. Their cgroups and shims are found by name and ended.
	errs = append(errs, r.reapCgroups(runs), r.killShims(runs), unmountRuns(runs), r.reapRunscState(nil))
	if err := netns.Reap(ctx, r.instance); err != nil {
		errs = append(errs, fmt.Errorf("reap network namespaces: %w", err))
	}
	// Only once none of the predecessor's sandboxes runs are their host
	// ID ranges free; if one may still run, they stay claimed.
	if err := errors.Join(errs...); err != nil {
		r.log.Warn("user namespace ranges stay claimed: a predecessor's sandbox may still run", "err", err)
	} else if n, err := r.claims.Reap(); err != nil {
		errs = append(errs, fmt.Errorf("release user namespace ranges: %w", err))
	} else if n > 0 {
		r.log.Info("released user namespace ranges", "count", n)
	}
	entries, err := os.ReadDir(r.jobsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		dir := filepath.Join(r.jobsDir, e.Name())
		if err := errors.Join(unmount(filepath.Join(dir, "output")), unmount(filepath.Join(dir, "scratch"))); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
		r.log.Info("reaped job dir", "dir", dir)
	}
	return errors.Join(errs...)
}

// reapCgroups kills every process in this runner's cgroup subtree and
// removes the cgroups, adding their runs to runs. It runs only at start,
// when no job of ours is live.
func (r *Runner) reapCgroups(runs map[string]bool) error {
	var errs []error
	roots := cgroupDirs("/" + footprint.Namespace + "/" + r.instance)
	for _, root := range roots {
		dirs, _ := os.ReadDir(root)
		for _, run := range dirs {
			if !run.IsDir() {
				continue
			}
			runs[run.Name()] = true
			dir := filepath.Join(root, run.Name())
			killCgroup(dir)
			if err := removeCgroup(dir); err != nil {
				errs = append(errs, err)
				continue
			}
			r.log.Info("reaped cgroup", "path", dir)
		}
	}
	return errors.Join(errs...)
}

// killCgroup SIGKILLs every process in dir, and in its children.
func killCgroup(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil
	})
}

// removeCgroup removes dir and its children, deepest first, waiting
// briefly for killed processes to leave.
func removeCgroup(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var err error
	for i := len(dirs) - 1; i >= 0; i-- {
		for try := 0; try < 50; try++ {
			if err = os.Remove(dirs[i]); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err != nil {
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	return nil
}

// reapRun ends whatever of one run outlived its teardown through
// containerd: processes left in its cgroup and its shim. It matters when
// containerd died mid-job and came back without the task.
func (r *Runner) reapRun(runID string) error {
	roots := cgroupDirs(r.cgroupPath(runID))
	var errs []error
	for _, dir := range roots {
		killCgroup(dir)
		errs = append(errs, removeCgroup(dir))
	}
	runs := map[string]bool{runID: true}
	errs = append(errs, r.killShims(runs), unmountRuns(runs), r.reapRunscState(runs))
	return errors.Join(errs...)
}

// reapRunscState removes runsc's state of the runs named, or, with nil,
// of every run: what runsc keeps of a sandbox (its state file and lock)
// outlives a sandbox killed with its cgroup. runsc's root is this
// runner's own, under its state dir, so nothing of another broker's is
// there.
func (r *Runner) reapRunscState(runs map[string]bool) error {
	var errs []error
	dirs, _ := filepath.Glob(filepath.Join(r.runscDir, "root", "*"))
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if runs != nil && !mentionsRun(e.Name(), runs) {
				continue
			}
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
				continue
			}
			r.log.Info("reaped runsc state", "path", filepath.Join(dir, e.Name()))
		}
	}
	return errors.Join(errs...)
}

// mentionsRun reports whether name holds one of the run IDs.
func mentionsRun(name string, runs map[string]bool) bool {
	for id := range runs {
		if strings.Contains(name, id) {
			return true
		}
	}
	return false
}

// killShims kills the runc shims serving this runner's containerd for the
// runs named; another broker's shims on the same containerd are left
// alone.
func (r *Runner) killShims(runs map[string]bool) error {
	if r.address == "" || len(runs) == 0 {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "containerd-shim-runc-v2" ||
			!slices.Contains(args, "-namespace") || !slices.Contains(args, footprint.Namespace) || !slices.Contains(args, r.address) ||
			!runs[argAfter(args, "-id")] {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		r.log.Info("reaped shim", "pid", pid)
	}
	// A shim removes its socket when it shuts down, but not when it is
	// killed: the sockets of the runs named are removed whether or not
	// their shims were found.
	var errs []error
	for id := range runs {
		if err := os.Remove(shimSocket(r.address, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// shimSocketDir is where the runc v2 shim puts its socket, whatever
// containerd's own state dir.
const shimSocketDir = "/run/containerd/s"

// shimSocket is the socket of the runc v2 shim serving run id for the
// containerd at address, named as the shim names it: by a hash of the
// address, namespace and ID.
func shimSocket(address, id string) string {
	sum := sha256.Sum256([]byte(filepath.Join(address, footprint.Namespace, id)))
	return filepath.Join(shimSocketDir, hex.EncodeToString(sum[:]))
}

// argAfter returns the argument after flag in args, or "".
func argAfter(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// unmountRuns unmounts what a killed shim left mounted in the task
// bundles of the runs named: their root filesystems, which containerd
// would have unmounted when it deleted the task.
func unmountRuns(runs map[string]bool) error {
	if len(runs) == 0 {
		return nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := fields[4]
		_, rest, ok := strings.Cut(p, "/io.containerd.runtime.v2.task/"+footprint.Namespace+"/")
		if id, _, _ := strings.Cut(rest, "/"); ok && runs[id] {
			points = append(points, p)
		}
	}
	f.Close()
	if err := sc.Err(); err != nil {
		return err
	}
	var errs []error
	// Deepest first, so that no mount hides another.
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		errs = append(errs, unmount(p))
	}
	return errors.Join(errs...)
}

// cgroupDirs lists the directories of cgroup path p (absolute, as in a
// spec) that exist: one per v1 hierarchy, and the v2 tree's.
func cgroupDirs(p string) []string {
	dirs, _ := filepath.Glob(cgroupRoot + "/*" + p)
	if st, err := os.Stat(cgroupRoot + p); err == nil && st.IsDir() {
		dirs = append(dirs, cgroupRoot+p)
	}
	return dirs
}

// removeInstanceCgroups removes this runner's cgroup subtree once it is
// empty, and Airlock's directory above it once that is empty too, so a
// broker that stops leaves no cgroup directory behind. Live
// runs keep it (rmdir of a non-empty cgroup fails, harmlessly).
func (r *Runner) removeInstanceCgroups() {
	for _, root := range cgroupDirs("/" + footprint.Namespace + "/" + r.instance) {
		_ = os.Remove(root)
		// And Airlock's own directory above it, once no broker on the
		// host has a subtree there (rmdir of a non-empty cgroup fails).
		_ = os.Remove(filepath.Dir(root))
	}
}

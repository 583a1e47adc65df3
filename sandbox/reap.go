package sandbox

import (
	"context"
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
	for _, c := range containers {
		if task, err := c.Task(ctx, nil); err == nil {
			if _, err := task.Delete(ctx, containerd.WithProcessKill); ignoreNotFound(err) != nil {
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
	errs = append(errs, r.reapCgroups(), r.reapShims())
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
		if err := unmount(filepath.Join(dir, "output")); err != nil {
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
// removes the cgroups. It runs only at start, when no job of ours is live.
func (r *Runner) reapCgroups() error {
	var errs []error
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + footprint.Namespace + "/" + r.instance)
	if st, err := os.Stat("/sys/fs/cgroup/" + footprint.Namespace + "/" + r.instance); err == nil && st.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/"+footprint.Namespace+"/"+r.instance)
	}
	for _, root := range roots {
		runs, _ := os.ReadDir(root)
		for _, run := range runs {
			if !run.IsDir() {
				continue
			}
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
	roots, _ := filepath.Glob("/sys/fs/cgroup/*" + r.cgroupPath(runID))
	if st, err := os.Stat("/sys/fs/cgroup" + r.cgroupPath(runID)); err == nil && st.IsDir() {
		roots = append(roots, "/sys/fs/cgroup"+r.cgroupPath(runID))
	}
	var errs []error
	for _, dir := range roots {
		killCgroup(dir)
		errs = append(errs, removeCgroup(dir))
	}
	errs = append(errs, r.killShims(runID))
	return errors.Join(errs...)
}

// reapShims kills runc shims serving this runner's containerd that
// outlived their tasks.
func (r *Runner) reapShims() error { return r.killShims("") }

// killShims kills this runner's shims: all of them, or the one of runID.
func (r *Runner) killShims(runID string) error {
	if r.address == "" {
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
			runID != "" && !slices.Contains(args, runID) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		r.log.Info("reaped shim", "pid", pid)
	}
	return nil
}

// removeInstanceCgroups removes this runner's cgroup subtree once it is
// empty, so a broker that stops leaves no cgroup directory behind. Live
// runs keep it (rmdir of a non-empty cgroup fails, harmlessly).
func (r *Runner) removeInstanceCgroups() {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + footprint.Namespace + "/" + r.instance)
	roots = append(roots, "/sys/fs/cgroup/"+footprint.Namespace+"/"+r.instance)
	for _, root := range roots {
		_ = os.Remove(root)
	}
}

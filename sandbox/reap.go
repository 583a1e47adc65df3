package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/leases"

	"github.com/airlock/airlock/sandbox/netns"
)

// Reap removes every container, task, lease and job directory in Airlock's
// namespace and state dir. It runs on start, when no job can be live: after
// a kill -9 of the broker these are the leftovers of jobs that will never
// finish. Snapshots go with their leases and containers.
func (r *Runner) Reap(ctx context.Context) error {
	var errs []error
	containers, err := r.client.Containers(ctx)
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, c := range containers {
		if task, err := c.Task(ctx, nil); err == nil {
			if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil {
				errs = append(errs, fmt.Errorf("delete task %s: %w", c.ID(), ignoreNotFound(err)))
			}
		}
		if err := ignoreNotFound(c.Delete(ctx, containerd.WithSnapshotCleanup)); err != nil {
			errs = append(errs, fmt.Errorf("delete container %s: %w", c.ID(), err))
		}
		r.log.Info("reaped container", "id", c.ID())
	}
	ls := r.client.LeasesService()
	all, err := ls.List(ctx, fmt.Sprintf("labels.%q", LabelRun))
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	for _, l := range all {
		if err := ignoreNotFound(ls.Delete(ctx, l, leases.SynchronousDelete)); err != nil {
			errs = append(errs, fmt.Errorf("delete lease %s: %w", l.ID, err))
		}
		r.log.Info("reaped lease", "id", l.ID)
	}
	if err := netns.Reap(ctx); err != nil {
		errs = append(errs, fmt.Errorf("reap network namespaces: %w", err))
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

package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd"
	"github.com/containerd/typeurl/v2"
)

// usage reads the stopped task's cgroup before it is deleted: whether the
// kernel OOM-killed something in it, and its peak memory. A failure to read
// reports no OOM: the exit status still tells the broker the job failed.
func usage(ctx context.Context, task containerd.Task) (oom bool, peak uint64, cpu time.Duration) {
	m, err := task.Metrics(ctx)
	if err != nil {
		return false, 0, 0
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return false, 0, 0
	}
	switch s := data.(type) {
	case *v1.Metrics:
		if s.GetMemory().GetUsage() != nil {
			peak = s.GetMemory().GetUsage().GetMax()
		}
		cpu = time.Duration(s.GetCPU().GetUsage().GetTotal())
		return s.GetMemoryOomControl().GetOomKill() > 0, peak, cpu
	case *v2.Metrics:
		cpu = time.Duration(s.GetCPU().GetUsageUsec()) * time.Microsecond
		return s.GetMemoryEvents().GetOomKill() > 0, s.GetMemory().GetUsage(), cpu
	}
	return false, 0, 0
}

// pidsLimitHit reports whether the task's pids cgroup refused a fork. The
// cgroup stats containerd returns carry no such counter, so it is read from
// pids.events directly, on cgroup v1 and v2 layouts, before teardown
// removes the cgroup.
func pidsLimitHit(cgroupPath string) bool {
	for _, root := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup"} {
		b, err := os.ReadFile(filepath.Join(root, cgroupPath, "pids.events"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, " "); ok && k == "max" && strings.TrimSpace(v) != "0" {
				return true
			}
		}
		return false
	}
	return false
}

package sandbox

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/agent"
	"github.com/airlock/airlock/sandbox/toolgw"
	"github.com/airlock/airlock/sandbox/userns"
)

// JobPaths are the host paths a job's spec mounts.
type JobPaths struct {
	// Input is the job's input directory: job.json and content/.
	Input string
	// Output is a size-capped tmpfs the broker mounted for the job.
	Output string
	// Scratch, when set, is a size-capped tmpfs the broker mounted for
	// the job's /tmp, which is otherwise a tmpfs the runtime mounts: under
	// runsc it would be gVisor's own, whose 2022 kernel enforces neither
	// the size nor the inode cap.
	Scratch string
	// NetNS is the path of the job's network namespace; empty gives the
	// task a fresh namespace with loopback only.
	NetNS string
	// ProxyURL is the job's egress proxy, for HTTP_PROXY; empty for none.
	ProxyURL string
	// Run is the job's run directory, holding the tool gateway's socket
	// at airlock/tools.sock. Required when the profile allows exec.
	Run string
	// IDs is the job's own host ID range when its profile has a user
	// namespace. The zero value is userns.Shared, which explain shows and
	// tools outside the broker use; the runner always sets a claimed one.
	IDs userns.Range
}

// defaultMaskedPaths hides kernel and hardware information under /proc and
// /sys that a sandboxed agent has no use for.
var defaultMaskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
	"/proc/sched_debug", "/proc/scsi", "/proc/sysrq-trigger",
	"/sys/firmware", "/sys/devices/virtual/powercap", "/sys/kernel",
}

// SpecFor maps a job's policy to the OCI spec options, in order. Every
// option narrows the spec; none is conditional on the content.
func SpecFor(runID string, p *policy.Profile, paths JobPaths) []oci.SpecOpts {
	masked := defaultMaskedPaths
	if len(p.Isolation.MaskedPaths) > 0 {
		masked = mergePaths(defaultMaskedPaths, p.Isolation.MaskedPaths)
	}
	opts := []oci.SpecOpts{
		oci.WithProcessArgs("/airlock-agent"),
		oci.WithProcessCwd("/"),
		oci.WithHostname("airlock"),
		WithEnvOnly(append(Env(runID), ProxyEnv(paths.ProxyURL)...)),
		oci.WithUIDGID(p.Isolation.UID, p.Isolation.GID),
		WithCapabilities(p.Isolation.Capabilities),
		oci.WithMaskedPaths(masked),
		// /dev/shm is a world-writable tmpfs by default: a place to write
		// outside /tmp and /output, and outside the scratch size limit.
		// /dev/pts would hand out pseudo-terminals from the host's pool
		// (kernel.pty.max is one limit for every devpts instance) to a job
		// that has no terminal; without it, runc's /dev/ptmx link to
		// pts/ptmx leads nowhere, and no job can mount one.
		// /sys shows the host's devices, kernel and cgroup tree, none of
		// which a job needs; and a user namespace cannot mount sysfs in a
		// network namespace it does not own, which is what an allowlist
		// job joins. /proc/self/cgroup still reads its cgroup namespace.
		WithoutMounts("/run", "/dev/mqueue", "/dev/shm", "/dev/pts", "/sys", "/sys/fs/cgroup"),
		withScratch(p, paths),
		WithBind(paths.Input, agent.InputDir, true),
		WithBind(paths.Output, agent.OutputDir, false),
		WithToolGateway(p, paths.Run),
		WithNetNS(paths.NetNS),
		WithCgroupNS,
		oci.WithPidsLimit(p.Limits.Pids),
		WithMemoryLimit(p.Limits.MemoryBytes),
		WithNoCoreDumps,
	}
	if p.Limits.CPU > 0 {
		const period = 100000
		opts = append(opts, oci.WithCPUCFS(int64(p.Limits.CPU*period), period))
	}
	if p.Isolation.ReadOnlyRoot {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if p.Isolation.NoNewPrivileges {
		opts = append(opts, oci.WithNoNewPrivileges)
	}
	if p.Isolation.UserNamespace {
		ids := paths.IDs
		if ids == (userns.Range{}) {
			ids = userns.Shared
		}
		opts = append(opts, WithUserNamespace(ids, p.ExecAllowed()))
	}
	return append(opts, WithSeccomp(p.Isolation.Seccomp))
}

// Env is the whole environment of a sandboxed process. Nothing of the
// broker's environment is inherited. HOME is pinned because runc sets it
// from the image's passwd file whenever the spec leaves it out. The run ID
// names the sandbox (its container and cgroup), not the job: a warm
// sandbox is made before its job is known, which it reads from
// /input/job.json.
func Env(runID string) []string {
	return []string{"PATH=/bin", "LANG=C.UTF-8", "HOME=/", "AIRLOCK_RUN_ID=" + runID}
}

// WithEnvOnly replaces the process environment, dropping whatever the image
// config or earlier options put there.
func WithEnvOnly(env []string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		setProcess(s)
		s.Process.Env = append([]string(nil), env...)
		return nil
	}
}

// HostID is the host uid or gid that id in a sandbox under p runs as in
// the shared range, userns.Shared: what explain shows, and what tools
// outside the broker use. A broker's job runs in a range of its own (see
// box.hostID).
func HostID(p *policy.Profile, id uint32) uint32 {
	if p.Isolation.UserNamespace {
		return userns.Shared.HostID(id)
	}
	return id
}

// WithUserNamespace gives the task a user namespace that maps ids 0-65535
// onto the host range r, uids and gids alike, so that nothing in the
// sandbox is anyone on the host, nor anyone in another sandbox. With
// toolsGroup, gid images.ToolsGID maps onto the host's own instead: the
// tools image's busybox is executable by that host group alone, and the
// commands the tool gateway runs hold it. It grants nothing else: no host
// file but busybox is the group's, and a process's uid, which is the
// sandbox's own, decides signals, ptrace and /proc.
func WithUserNamespace(r userns.Range, toolsGroup bool) oci.SpecOpts {
	uids := []specs.LinuxIDMapping{{ContainerID: 0, HostID: r.First, Size: userns.Size}}
	gids := uids
	if toolsGroup {
		const tg = images.ToolsGID
		gids = []specs.LinuxIDMapping{
			{ContainerID: 0, HostID: r.First, Size: tg},
			{ContainerID: tg, HostID: tg, Size: 1},
			{ContainerID: tg + 1, HostID: r.HostID(tg + 1), Size: userns.Size - tg - 1},
		}
	}
	return oci.WithUserNamespace(uids, gids)
}

// WithCapabilities sets every capability set to exactly caps (bounding,
// effective, permitted), and clears inheritable and ambient so nothing
// survives an exec. The policy loader has already refused any capability
// outside its audited list.
func WithCapabilities(caps []string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		setProcess(s)
		set := make([]string, 0, len(caps))
		for _, c := range caps {
			if !strings.HasPrefix(c, "CAP_") {
				c = "CAP_" + c
			}
			set = append(set, strings.ToUpper(c))
		}
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding:    set,
			Effective:   slices.Clone(set),
			Permitted:   slices.Clone(set),
			Inheritable: []string{},
			Ambient:     []string{},
		}
		return nil
	}
}

// WithMemoryLimit caps the task's memory at limit bytes, and its memory
// plus swap at the same value, so that nothing of it is ever swapped out:
// without the second, a job could use swap up to its memory limit again,
// beyond its accounting. On cgroup v1 runc writes memory.memsw.limit_in_bytes
// = limit; on v2 it writes memory.swap.max = swap - limit = 0.
func WithMemoryLimit(limit int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if limit <= 0 {
			return fmt.Errorf("memory limit %d: must be positive", limit)
		}
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		if s.Linux.Resources.Memory == nil {
			s.Linux.Resources.Memory = &specs.LinuxMemory{}
		}
		mem, swap := limit, limit
		s.Linux.Resources.Memory.Limit, s.Linux.Resources.Memory.Swap = &mem, &swap
		return nil
	}
}

// WithNoCoreDumps sets RLIMIT_CORE to zero so a crashing agent writes
// nothing anywhere.
func WithNoCoreDumps(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
	setProcess(s)
	rl := s.Process.Rlimits[:0]
	for _, r := range s.Process.Rlimits {
		if r.Type != "RLIMIT_CORE" {
			rl = append(rl, r)
		}
	}
	s.Process.Rlimits = append(rl, specs.POSIXRlimit{Type: "RLIMIT_CORE", Hard: 0, Soft: 0})
	return nil
}

// WithoutMounts drops the default mounts at the given destinations.
func WithoutMounts(dests ...string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		kept := s.Mounts[:0]
		for _, m := range s.Mounts {
			if !slices.Contains(dests, m.Destination) {
				kept = append(kept, m)
			}
		}
		s.Mounts = kept
		return nil
	}
}

// withScratch mounts the job's /tmp: the broker's tmpfs at paths.Scratch
// when there is one, else one the runtime makes.
func withScratch(p *policy.Profile, paths JobPaths) oci.SpecOpts {
	if paths.Scratch == "" {
		return WithTmpfs("/tmp", p.Limits.ScratchBytes, p.Isolation.UID, p.Isolation.GID)
	}
	return WithBind(paths.Scratch, "/tmp", false)
}

// WithTmpfs mounts a size-capped, noexec tmpfs owned by uid:gid at dest,
// with at most TmpfsInodes(sizeBytes) inodes. The size is required: an
// uncapped tmpfs would let a job fill memory outside its accounting.
func WithTmpfs(dest string, sizeBytes int64, uid, gid uint32) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if sizeBytes <= 0 {
			return fmt.Errorf("tmpfs %s: size must be positive", dest)
		}
		s.Mounts = replaceMount(s.Mounts, specs.Mount{
			Destination: dest,
			Type:        "tmpfs",
			Source:      "tmpfs",
			Options: []string{"nosuid", "nodev", "noexec", "mode=0700", fmt.Sprintf("size=%d", sizeBytes),
				fmt.Sprintf("nr_inodes=%d", TmpfsInodes(sizeBytes)), fmt.Sprintf("uid=%d", uid), fmt.Sprintf("gid=%d", gid)},
		})
		return nil
	}
}

// Bounds of TmpfsInodes.
const (
	minTmpfsInodes = 64
	maxTmpfsInodes = 16384
)

// TmpfsInodes is the inode cap of a job's tmpfs of sizeBytes: one inode per
// page it can hold, within 64 and 16384. A tmpfs's default is half the
// host's pages of RAM, so without a cap, empty files (which take no size)
// would be limited by nothing but the job's memory, in kernel objects the
// size cap never sees.
func TmpfsInodes(sizeBytes int64) int64 {
	return min(max(sizeBytes/4096, minTmpfsInodes), maxTmpfsInodes)
}

// WithBind bind-mounts a host directory at dest, nosuid, nodev and noexec.
func WithBind(src, dest string, readOnly bool) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if src == "" {
			return fmt.Errorf("bind %s: no source", dest)
		}
		mode := "rw"
		if readOnly {
			mode = "ro"
		}
		s.Mounts = replaceMount(s.Mounts, specs.Mount{
			Destination: dest,
			Type:        "bind",
			Source:      src,
			Options:     []string{"rbind", mode, "nosuid", "nodev", "noexec", "rprivate"},
		})
		return nil
	}
}

// WithToolGateway mounts the job's run directory, which holds only the tool
// gateway's socket, read-only on /run, when the profile allows exec or
// another gateway tool. A socket can be connected to on a read-only mount,
// and the job can put nothing of its own beside it. Otherwise /run stays
// the image's empty directory and the job has no socket at all.
func WithToolGateway(p *policy.Profile, runDir string) oci.SpecOpts {
	if !p.ToolGateway() {
		return func(context.Context, oci.Client, *containers.Container, *specs.Spec) error { return nil }
	}
	return WithBind(runDir, toolgw.SandboxRunDir, true)
}

// WithNetNS joins the network namespace at path, or, when path is empty,
// makes sure the task gets a new one of its own and never the host's.
func WithNetNS(path string) oci.SpecOpts {
	return oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
}

// WithCgroupNS gives the task a cgroup namespace of its own, rooted at its
// cgroup: /proc/self/cgroup reads "/" and the cgroup mounts' roots are
// "/", where they would otherwise show the host's cgroup tree, with the
// broker's instance and the run's ID.
var WithCgroupNS = oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.CgroupNamespace})

func setProcess(s *specs.Spec) {
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
}

func replaceMount(mounts []specs.Mount, m specs.Mount) []specs.Mount {
	out := mounts[:0]
	for _, x := range mounts {
		if x.Destination != m.Destination {
			out = append(out, x)
		}
	}
	return append(out, m)
}

func mergePaths(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, p := range b {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// WithAgentProcess runs an imported image's agent: args in cwd, with the
// environment SpecFor set, the same as the reference agent's
// (docs/agent-contract.md). Nothing else of the image's configuration is
// read: containerd's oci.WithImageConfig would apply its USER, ENV and
// WORKDIR, and is never used.
func WithAgentProcess(args []string, cwd string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if len(args) == 0 {
			return fmt.Errorf("agent process: no args")
		}
		setProcess(s)
		s.Process.Args = slices.Clone(args)
		s.Process.Cwd = cwd
		return nil
	}
}

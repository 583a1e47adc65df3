package sandbox

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/footprint"
)

func testProfile() *policy.Profile {
	return &policy.Profile{
		Name: "test",
		Limits: policy.Limits{
			MemoryBytes: 256 << 20, Pids: 64, CPU: 0.5, Timeout: 10 * time.Second,
			OutputBytes: 1 << 20, ScratchBytes: 16 << 20,
		},
		Isolation: policy.Isolation{
			ReadOnlyRoot: true, NoNewPrivileges: true, UID: 65534, GID: 65534,
			Seccomp: "default", Runtime: "runc",
		},
	}
}

// generate applies opts to containerd's default Linux spec, as the runner
// does when it creates a container.
func generate(t *testing.T, opts ...oci.SpecOpts) *specs.Spec {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), footprint.Namespace)
	s, err := oci.GenerateSpecWithPlatform(ctx, nil, "linux/amd64", &containers.Container{ID: "t"}, opts...)
	if err != nil {
		t.Fatalf("generate spec: %v", err)
	}
	return s
}

func mount(s *specs.Spec, dest string) (specs.Mount, bool) {
	for _, m := range s.Mounts {
		if m.Destination == dest {
			return m, true
		}
	}
	return specs.Mount{}, false
}

func TestWithCapabilities_NoneClearsEverySet(t *testing.T) {
	s := generate(t, oci.WithCapabilities([]string{"CAP_SYS_ADMIN"}), WithCapabilities(nil))
	c := s.Process.Capabilities
	for name, set := range map[string][]string{
		"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted,
		"inheritable": c.Inheritable, "ambient": c.Ambient,
	} {
		if len(set) != 0 {
			t.Errorf("%s capabilities = %v, want none", name, set)
		}
	}
}

func TestWithEnvOnly_DropsEverythingElse(t *testing.T) {
	s := generate(t, oci.WithEnv([]string{"AWS_SECRET_ACCESS_KEY=x", "HOME=/root"}), WithEnvOnly(Env("job-1")))
	want := []string{"PATH=/bin", "LANG=C.UTF-8", "HOME=/", "AIRLOCK_RUN_ID=job-1"}
	if !slices.Equal(s.Process.Env, want) {
		t.Fatalf("env = %v, want %v", s.Process.Env, want)
	}
}

func TestWithTmpfs_IsSizeCappedAndNoexec(t *testing.T) {
	s := generate(t, WithTmpfs("/tmp", 4096, 65534, 65534))
	m, ok := mount(s, "/tmp")
	if !ok {
		t.Fatal("no /tmp mount")
	}
	for _, o := range []string{"size=4096", "noexec", "nosuid", "nodev", "uid=65534"} {
		if !slices.Contains(m.Options, o) {
			t.Errorf("/tmp options %v lack %q", m.Options, o)
		}
	}
	if _, err := oci.GenerateSpecWithPlatform(context.Background(), nil, "linux/amd64", &containers.Container{ID: "t"}, WithTmpfs("/tmp", 0, 1, 1)); err == nil {
		t.Error("an uncapped tmpfs was accepted")
	}
}

func TestWithBind_ReadOnlyInput(t *testing.T) {
	s := generate(t, WithBind("/host/in", "/input", true), WithBind("/host/out", "/output", false))
	in, _ := mount(s, "/input")
	if in.Source != "/host/in" || !slices.Contains(in.Options, "ro") || !slices.Contains(in.Options, "noexec") {
		t.Errorf("/input mount = %+v, want read-only noexec bind of /host/in", in)
	}
	out, _ := mount(s, "/output")
	if slices.Contains(out.Options, "ro") || !slices.Contains(out.Options, "rw") {
		t.Errorf("/output mount = %+v, want rw", out)
	}
}

func TestWithoutMounts_DropsRun(t *testing.T) {
	s := generate(t, WithoutMounts("/run"))
	if _, ok := mount(s, "/run"); ok {
		t.Error("/run is still mounted")
	}
	if _, ok := mount(s, "/proc"); !ok {
		t.Error("/proc was dropped too")
	}
}

func TestWithNoCoreDumps_SetsZeroCoreLimit(t *testing.T) {
	s := generate(t, WithNoCoreDumps)
	n := 0
	for _, r := range s.Process.Rlimits {
		if r.Type == "RLIMIT_CORE" {
			n++
			if r.Hard != 0 || r.Soft != 0 {
				t.Errorf("RLIMIT_CORE = %+v", r)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d RLIMIT_CORE entries, want 1", n)
	}
}

func TestSpecFor_HardensTheSandbox(t *testing.T) {
	p := testProfile()
	s := generate(t, SpecFor("job-1", p, JobPaths{Input: "/j/in", Output: "/j/out"})...)

	if !s.Root.Readonly {
		t.Error("rootfs is writable")
	}
	if !s.Process.NoNewPrivileges {
		t.Error("no_new_privs is off")
	}
	if s.Process.User.UID != 65534 || s.Process.User.GID != 65534 {
		t.Errorf("user = %d:%d, want 65534:65534", s.Process.User.UID, s.Process.User.GID)
	}
	if len(s.Process.Capabilities.Bounding) != 0 || len(s.Process.Capabilities.Effective) != 0 {
		t.Errorf("capabilities = %+v", s.Process.Capabilities)
	}
	if !slices.Equal(s.Process.Env, Env("job-1")) {
		t.Errorf("env = %v", s.Process.Env)
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("seccomp = %+v, want containerd's default profile", s.Linux.Seccomp)
	}
	if s.Linux.Resources.Pids == nil || s.Linux.Resources.Pids.Limit != 64 {
		t.Errorf("pids = %+v", s.Linux.Resources.Pids)
	}
	if s.Linux.Resources.Memory == nil || *s.Linux.Resources.Memory.Limit != 256<<20 {
		t.Errorf("memory = %+v", s.Linux.Resources.Memory)
	}
	if q := s.Linux.Resources.CPU.Quota; q == nil || *q != 50000 {
		t.Errorf("cpu quota = %v, want 50000", q)
	}
	for _, masked := range []string{"/proc/kcore", "/proc/keys", "/sys/firmware"} {
		if !slices.Contains(s.Linux.MaskedPaths, masked) {
			t.Errorf("%s not masked", masked)
		}
	}
	netns := false
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			netns = ns.Path == ""
		}
	}
	if !netns {
		t.Error("no fresh network namespace")
	}
	for dest, want := range map[string]string{"/tmp": "size=16777216", "/input": "ro", "/output": "rw"} {
		m, ok := mount(s, dest)
		if !ok || !slices.Contains(m.Options, want) {
			t.Errorf("%s mount = %+v, want option %s", dest, m, want)
		}
	}
	if _, ok := mount(s, "/run"); ok {
		t.Error("/run is mounted")
	}
	for _, m := range s.Mounts {
		if m.Type == "bind" && !strings.HasPrefix(m.Source, "/j/") {
			t.Errorf("unexpected host bind %+v", m)
		}
	}
}

func TestSpecFor_GivesEveryProfileACgroupNamespace(t *testing.T) {
	for _, p := range append(shippedProfiles(t).All(), testProfile()) {
		t.Run(p.Name, func(t *testing.T) {
			s := generate(t, SpecFor("job-1", p, JobPaths{Input: "/j/in", Output: "/j/out", Run: "/j/run"})...)
			n := 0
			for _, ns := range s.Linux.Namespaces {
				if ns.Type == specs.CgroupNamespace {
					n++
					if ns.Path != "" {
						t.Errorf("cgroup namespace joins %s, want a new one", ns.Path)
					}
				}
			}
			if n != 1 {
				t.Errorf("%d cgroup namespaces in %+v, want one new one", n, s.Linux.Namespaces)
			}
		})
	}
}

func TestWithMemoryLimit_LeavesNoSwapBeyondTheLimit(t *testing.T) {
	for _, p := range append(shippedProfiles(t).All(), testProfile()) {
		t.Run(p.Name, func(t *testing.T) {
			s := generate(t, SpecFor("job-1", p, JobPaths{Input: "/j/in", Output: "/j/out", Run: "/j/run"})...)
			m := s.Linux.Resources.Memory
			if m == nil || m.Limit == nil || *m.Limit != p.Limits.MemoryBytes {
				t.Fatalf("memory = %+v, want limit %d", m, p.Limits.MemoryBytes)
			}
			// Memory plus swap equal to memory: no swap on v1, and
			// memory.swap.max = 0 on v2 (runc writes swap - limit).
			if m.Swap == nil || *m.Swap != *m.Limit {
				t.Errorf("memory+swap = %v, want %d, the memory limit", m.Swap, *m.Limit)
			}
		})
	}
	if _, err := oci.GenerateSpecWithPlatform(context.Background(), nil, "linux/amd64", &containers.Container{ID: "t"}, WithMemoryLimit(0)); err == nil {
		t.Error("a zero memory limit was accepted")
	}
}

func TestTmpfs_EveryJobTmpfsCapsItsInodes(t *testing.T) {
	option := func(opts []string, key string) string {
		for _, o := range opts {
			if v, ok := strings.CutPrefix(o, key+"="); ok {
				return v
			}
		}
		return ""
	}
	for _, p := range append(shippedProfiles(t).All(), testProfile()) {
		t.Run(p.Name, func(t *testing.T) {
			s := generate(t, SpecFor("job-1", p, JobPaths{Input: "/j/in", Output: "/j/out", Run: "/j/run"})...)
			for _, m := range s.Mounts {
				if m.Type != "tmpfs" || m.Destination == "/dev" {
					continue
				}
				n, err := strconv.ParseInt(option(m.Options, "nr_inodes"), 10, 64)
				if err != nil || n <= 0 || n > maxTmpfsInodes {
					t.Errorf("%s: options %v, want nr_inodes within 1-%d", m.Destination, m.Options, maxTmpfsInodes)
				}
			}
			out := strings.Split(outputOptions(p.Limits.OutputBytes+outputSlack, 1, 1), ",")
			if n, err := strconv.ParseInt(option(out, "nr_inodes"), 10, 64); err != nil || n <= 0 || n > maxTmpfsInodes {
				t.Errorf("/output tmpfs options %v, want nr_inodes within 1-%d", out, maxTmpfsInodes)
			}
		})
	}
}

func TestTmpfsInodes_OnePerPageWithinBounds(t *testing.T) {
	for _, tt := range []struct{ size, want int64 }{
		{4096, minTmpfsInodes},
		{1 << 20, 256},
		{16 << 20, 4096},
		{1 << 30, maxTmpfsInodes},
	} {
		if got := TmpfsInodes(tt.size); got != tt.want {
			t.Errorf("TmpfsInodes(%d) = %d, want %d", tt.size, got, tt.want)
		}
	}
}

func TestSpecFor_NoPseudoTerminals(t *testing.T) {
	for _, p := range append(shippedProfiles(t).All(), testProfile()) {
		t.Run(p.Name, func(t *testing.T) {
			s := generate(t, SpecFor("job-1", p, JobPaths{Input: "/j/in", Output: "/j/out", Run: "/j/run"})...)
			if s.Process.Terminal {
				t.Error("the process has a terminal")
			}
			for _, m := range s.Mounts {
				if m.Type == "devpts" || strings.HasPrefix(m.Destination, "/dev/pts") || m.Destination == "/dev/ptmx" {
					t.Errorf("pseudo-terminal mount %+v", m)
				}
			}
			for _, d := range s.Linux.Devices {
				// 5:2 is /dev/ptmx, 136-143 the pts slaves.
				if d.Type == "c" && (d.Major == 5 && d.Minor == 2 || d.Major >= 136 && d.Major <= 143) {
					t.Errorf("pseudo-terminal device %+v", d)
				}
			}
		})
	}
}

func TestSpecFor_NoSysfsOrCgroupfs(t *testing.T) {
	for _, p := range append(shippedProfiles(t).All(), testProfile()) {
		t.Run(p.Name, func(t *testing.T) {
			s := generate(t, SpecFor("job-1", p, JobPaths{Input: "/j/in", Output: "/j/out", Run: "/j/run"})...)
			for _, m := range s.Mounts {
				if m.Type == "sysfs" || m.Type == "cgroup" || m.Type == "cgroup2" || strings.HasPrefix(m.Destination, "/sys") {
					t.Errorf("mount %+v: the job would see the host's devices, kernel or cgroup tree", m)
				}
			}
		})
	}
}

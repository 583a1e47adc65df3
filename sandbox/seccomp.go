package sandbox

import (
	"context"
	"fmt"
	"slices"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/contrib/seccomp"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// StrictDenied are the syscalls the strict profile takes out of
// containerd's default one. Each is a known escape, introspection or
// kernel-attack-surface path that a text-processing agent never needs; the
// profile's default action makes them fail with EPERM.
var StrictDenied = []string{
	"mount", "umount", "umount2", "unshare", "setns", "pivot_root", "chroot",
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	"keyctl", "add_key", "request_key",
	"bpf", "perf_event_open", "userfaultfd",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"open_by_handle_at", "name_to_handle_at", "fanotify_init", "lookup_dcookie",
	"move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	"clone3",
}

// strictPersonalities are the only personality(2) arguments strict allows:
// the default persona and the query. The others switch off ASLR or change
// the syscall ABI.
var strictPersonalities = []uint64{0x0, 0xffffffff}

// WithSeccomp installs containerd's default seccomp profile, or its strict
// reduction. It must come after the capability options, because the
// default profile grants syscalls by capability.
func WithSeccomp(mode string) oci.SpecOpts {
	return func(ctx context.Context, c oci.Client, ctr *containers.Container, s *specs.Spec) error {
		switch mode {
		case "", "default":
			return seccomp.WithDefaultProfile()(ctx, c, ctr, s)
		case "strict":
			s.Linux.Seccomp = StrictProfile(s)
			return nil
		}
		return fmt.Errorf("seccomp %q: want default or strict", mode)
	}
}

// StrictProfile is containerd's default profile for s minus StrictDenied,
// with personality narrowed. clone with namespace flags is already refused
// by the default profile when CAP_SYS_ADMIN is absent, which Airlock never
// grants; clone3 is refused outright so that rule cannot be bypassed.
func StrictProfile(s *specs.Spec) *specs.LinuxSeccomp {
	p := seccomp.DefaultProfile(s)
	kept := p.Syscalls[:0]
	for _, rule := range p.Syscalls {
		names := slices.DeleteFunc(slices.Clone(rule.Names), func(n string) bool {
			return slices.Contains(StrictDenied, n)
		})
		if len(names) == 0 {
			continue
		}
		if slices.Equal(names, []string{"personality"}) && len(rule.Args) == 1 &&
			!slices.Contains(strictPersonalities, rule.Args[0].Value) {
			continue
		}
		rule.Names = names
		kept = append(kept, rule)
	}
	eperm := uint(1)
	p.Syscalls = append(kept, specs.LinuxSyscall{
		Names:    slices.Clone(StrictDenied),
		Action:   specs.ActErrno,
		ErrnoRet: &eperm,
	})
	return p
}

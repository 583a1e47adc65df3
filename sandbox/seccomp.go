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

// DeniedEverywhere are the syscalls that no seccomp profile Airlock ships
// allows, containerd's default one included. io_uring is the most
// exploited kernel surface of recent years (Docker's default profile
// dropped it); the others read or change another process's memory, or
// compare and steal its files. A text-processing agent needs none of them.
// Some are granted only with CAP_SYS_PTRACE, which no profile can grant;
// they are listed so that a change of containerd's profile cannot bring
// them back.
var DeniedEverywhere = []string{
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"ptrace", "process_vm_readv", "process_vm_writev", "process_madvise",
	"kcmp", "pidfd_getfd",
}

// StrictDenied are the syscalls the strict profile takes out of
// containerd's default one: DeniedEverywhere, and each known escape,
// introspection or kernel-attack-surface path that a text-processing agent
// never needs.
var StrictDenied = append(slices.Clone(DeniedEverywhere),
	"mount", "umount", "umount2", "unshare", "setns", "pivot_root", "chroot",
	"keyctl", "add_key", "request_key",
	"bpf", "perf_event_open", "userfaultfd",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"open_by_handle_at", "name_to_handle_at", "fanotify_init", "lookup_dcookie",
	"move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	"clone3",
)

// strictPersonalities are the only personality(2) arguments strict allows:
// the default persona and the query. The others switch off ASLR or change
// the syscall ABI.
var strictPersonalities = []uint64{0x0, 0xffffffff}

// WithSeccomp installs containerd's default seccomp profile minus
// DeniedEverywhere, or its strict reduction. It must come after the
// capability options, because the default profile grants syscalls by
// capability.
func WithSeccomp(mode string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		switch mode {
		case "", "default":
			s.Linux.Seccomp = DefaultProfile(s)
			return nil
		case "strict":
			s.Linux.Seccomp = StrictProfile(s)
			return nil
		}
		return fmt.Errorf("seccomp %q: want default or strict", mode)
	}
}

// DefaultProfile is containerd's default profile for s minus
// DeniedEverywhere.
func DefaultProfile(s *specs.Spec) *specs.LinuxSeccomp {
	p := seccomp.DefaultProfile(s)
	p.Syscalls = deny(p.Syscalls, DeniedEverywhere)
	return p
}

// StrictProfile is containerd's default profile for s minus StrictDenied,
// with personality narrowed. clone with namespace flags is already refused
// by the default profile when CAP_SYS_ADMIN is absent, which Airlock never
// grants; clone3 is refused outright so that rule cannot be bypassed.
func StrictProfile(s *specs.Spec) *specs.LinuxSeccomp {
	p := seccomp.DefaultProfile(s)
	kept := p.Syscalls[:0]
	for _, rule := range p.Syscalls {
		if slices.Equal(rule.Names, []string{"personality"}) && len(rule.Args) == 1 &&
			!slices.Contains(strictPersonalities, rule.Args[0].Value) {
			continue
		}
		kept = append(kept, rule)
	}
	p.Syscalls = deny(kept, StrictDenied)
	return p
}

// deny takes names out of every rule and ends the list with one rule that
// makes them fail with EPERM, as containerd's default action does. The
// explicit rule changes nothing in the filter (runc folds a rule equal to
// the default action into it); it is there so that the spec, and so
// `airlock policy explain`, names what was taken out.
func deny(rules []specs.LinuxSyscall, names []string) []specs.LinuxSyscall {
	kept := rules[:0]
	for _, rule := range rules {
		rule.Names = slices.DeleteFunc(slices.Clone(rule.Names), func(n string) bool {
			return slices.Contains(names, n)
		})
		if len(rule.Names) > 0 {
			kept = append(kept, rule)
		}
	}
	eperm := uint(1)
	return append(kept, specs.LinuxSyscall{
		Names:    slices.Clone(names),
		Action:   specs.ActErrno,
		ErrnoRet: &eperm,
	})
}

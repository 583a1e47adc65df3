package agent

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrLandlockUnavailable is returned, wrapped, when the kernel (or the
// seccomp profile, or a cgo build) does not let the agent restrict itself.
// The agent then runs on without it: the sandbox does not depend on it.
var ErrLandlockUnavailable = errors.New("landlock unavailable")

// writeAccess is every Landlock right that changes the filesystem, in the
// first ABI; newer ABIs add refer and truncate.
const writeAccess = unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR |
	unix.LANDLOCK_ACCESS_FS_REMOVE_FILE | unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR |
	unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO |
	unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK | unix.LANDLOCK_ACCESS_FS_MAKE_SYM

// Restrict takes away, for the agent and everything it could start, the
// right to execute any file and to write anywhere but below writable. The
// agent runs no program itself (commands go through the tool gateway, and
// run outside this restriction, as processes the runtime starts), so a
// hijacked agent cannot run one either, not even the tools image's busybox.
//
// Landlock binds threads, not processes; every thread is restricted, with
// the kernel's TSYNC flag where it has one, else through the Go runtime.
func Restrict(writable []string) (abi int, err error) {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0, fmt.Errorf("%w: %v", ErrLandlockUnavailable, errno)
	}
	abi = int(v)
	write := uint64(writeAccess)
	if abi >= 2 {
		write |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		write |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	attr := unix.LandlockRulesetAttr{Handled_access_fs: write | unix.LANDLOCK_ACCESS_FS_EXECUTE}
	// The attribute's size tells the kernel which fields this build knows;
	// only the first one is set, and an older kernel takes the short form.
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr.Handled_access_fs), 0)
	if errno != 0 {
		return abi, fmt.Errorf("%w: create ruleset: %v", ErrLandlockUnavailable, errno)
	}
	ruleset := int(fd)
	defer unix.Close(ruleset)
	for _, dir := range writable {
		if err := allowBeneath(ruleset, dir, write); err != nil {
			return abi, err
		}
	}
	// Required without CAP_SYS_ADMIN; the sandbox sets it already.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return abi, fmt.Errorf("no_new_privs: %w", err)
	}
	_, _, errno = unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(ruleset), unix.LANDLOCK_RESTRICT_SELF_TSYNC, 0)
	if errno == unix.EINVAL {
		// A kernel without TSYNC: the runtime makes the call on every
		// thread, which it can only in a build without cgo.
		_, _, errno = syscall.AllThreadsSyscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(ruleset), 0, 0)
	}
	if errno != 0 {
		return abi, fmt.Errorf("%w: restrict self: %v", ErrLandlockUnavailable, errno)
	}
	return abi, nil
}

func allowBeneath(ruleset int, dir string, access uint64) error {
	f, err := os.OpenFile(dir, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("landlock rule for %s: %w", dir, err)
	}
	defer f.Close()
	rule := unix.LandlockPathBeneathAttr{Allowed_access: access, Parent_fd: int32(f.Fd())}
	_, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&rule)), 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("landlock rule for %s: %v", dir, errno)
	}
	return nil
}

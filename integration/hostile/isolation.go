package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func init() {
	ops["proc_status"] = procStatus
	ops["syscalls"] = syscalls
	ops["alloc"] = alloc
	ops["forkbomb"] = forkbomb
}

// statusFields are the security-relevant lines of /proc/self/status.
func statusFields() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "Uid", "Gid", "CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh", "NoNewPrivs", "Seccomp":
			fields[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	// gVisor's status file has no NoNewPrivs line; the flag is asked of
	// the kernel that enforces it, whichever that is.
	if nnp, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); err == nil {
		fields["NoNewPrivs"] = strconv.Itoa(nnp)
	}
	return fields, nil
}

// procStatus reports what the kernel says about the sandboxed process.
func procStatus(map[string]string) (any, error) {
	fields, err := statusFields()
	if err != nil {
		return nil, err
	}
	uidMap, _ := os.ReadFile("/proc/self/uid_map")
	fields["uid_map"] = strings.Join(strings.Fields(string(uidMap)), " ")
	return map[string]any{"status": fields}, nil
}

// probes are syscalls the sandbox must refuse, by the name the `syscalls`
// task reports and the `syscall` attack op takes. Each is made in a form the
// kernel itself would allow, so EPERM can only come from seccomp (or a
// missing capability).
var probes = map[string]func() error{
	// getpid is allowed everywhere: a control that proves the probes can
	// succeed, so that EPERM elsewhere means the filter refused.
	"getpid": func() error {
		_, _, e := unix.RawSyscall(unix.SYS_GETPID, 0, 0, 0)
		return errnoErr(e)
	},
	"mount":   func() error { return unix.Mount("none", "/tmp", "tmpfs", 0, "") },
	"unshare": func() error { return unix.Unshare(unix.CLONE_NEWUTS) },
	"ptrace": func() error {
		_, _, e := unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
		return errnoErr(e)
	},
	"io_uring_setup": func() error {
		var params [120]byte
		fd, _, e := unix.RawSyscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
		if e == 0 {
			unix.Close(int(fd))
		}
		return errnoErr(e)
	},
	"keyctl": func() error {
		_, _, e := unix.RawSyscall(unix.SYS_KEYCTL, 0 /* KEYCTL_GET_KEYRING_ID */, ^uintptr(0) /* thread keyring */, 0)
		return errnoErr(e)
	},
	"userfaultfd": func() error {
		fd, _, e := unix.RawSyscall(unix.SYS_USERFAULTFD, 0, 0, 0)
		if e == 0 {
			unix.Close(int(fd))
		}
		return errnoErr(e)
	},
	"personality_no_aslr": func() error {
		_, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, 0x0040000 /* ADDR_NO_RANDOMIZE */, 0, 0)
		return errnoErr(e)
	},
	"bpf": func() error {
		// bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries.
		attr := [4]uint32{unix.BPF_MAP_TYPE_ARRAY, 4, 4, 1}
		fd, _, e := unix.RawSyscall(unix.SYS_BPF, unix.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr))
		if e == 0 {
			unix.Close(int(fd))
		}
		return errnoErr(e)
	},
	"perf_event_open": func() error {
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
		attr.Size = uint32(unsafe.Sizeof(attr))
		fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err == nil {
			unix.Close(fd)
		}
		return err
	},
	"unshare_user":    unshareUser,
	"ptrace_attach_1": ptraceAttach1,
}

// syscallsReported are the probes the `syscalls` task runs, in order.
var syscallsReported = []string{"getpid", "mount", "unshare", "ptrace", "io_uring_setup", "keyctl", "userfaultfd", "personality_no_aslr"}

// syscalls tries calls that the strict seccomp profile must refuse.
func syscalls(map[string]string) (any, error) {
	res := map[string]string{}
	for _, name := range syscallsReported {
		switch err := probes[name](); {
		case err == nil:
			res[name] = "OK"
		case errors.Is(err, unix.EPERM):
			res[name] = "EPERM"
		default:
			res[name] = err.Error()
		}
	}
	return map[string]any{"syscalls": res}, nil
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// unshareUser starts a copy of this binary in a new user namespace, as
// `unshare -r` would. It cannot call unshare(2) itself: a Go process is
// threaded, and the kernel refuses CLONE_NEWUSER to a threaded caller with
// EINVAL whatever the sandbox allows.
func unshareUser() error {
	c := exec.Command("/proc/self/exe", childArg)
	c.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	if err := c.Start(); err != nil {
		return err
	}
	c.Process.Kill()
	c.Wait()
	return nil
}

// ptraceAttach1 attaches to pid 1 and, if that worked, lets go again. In a
// pid namespace pid 1 may be this very process, which the kernel refuses
// whatever the sandbox allows; the op records our pid for that reason.
func ptraceAttach1() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.PtraceAttach(1); err != nil {
		return err
	}
	var ws unix.WaitStatus
	unix.Wait4(1, &ws, unix.WALL, nil)
	unix.PtraceDetach(1)
	return nil
}

// setns joins the namespace at path on a thread of its own that is thrown
// away afterwards, so a success cannot leak into the rest of the run.
func setns(path string, nstype int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- &os.PathError{Op: "open", Path: path, Err: err}
			return
		}
		defer unix.Close(fd)
		errc <- os.NewSyscallError("setns", unix.Setns(fd, nstype))
	}()
	return <-errc
}

// alloc allocates and touches params["mb"] MiB.
func alloc(params map[string]string) (any, error) {
	mb, err := intParam(params, "mb", 1024)
	if err != nil {
		return nil, err
	}
	return map[string]any{"allocated_mb": touchMiB(mb)}, nil
}

// touchMiB allocates mb MiB and writes to every page, so the memory is
// really charged; it returns how many MiB it got.
func touchMiB(mb int64) int {
	var keep [][]byte
	for i := int64(0); i < mb; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		keep = append(keep, b)
	}
	return len(keep)
}

// childArg makes a copy of this binary sleep instead of reading job.json.
const childArg = "child"

// forkbomb starts copies of itself until the kernel refuses.
func forkbomb(params map[string]string) (any, error) {
	n, err := intParam(params, "n", 10000)
	if err != nil {
		return nil, err
	}
	spawned, stop := spawnCopies(n)
	out := map[string]any{"spawned": spawned}
	if stop != nil {
		out["error"] = fmt.Sprint(stop)
	}
	return out, nil
}

// spawnCopies starts up to n sleeping copies of this binary, then kills
// them. It returns how many started and what stopped it early.
func spawnCopies(n int64) (int, error) {
	var children []*exec.Cmd
	var stop error
	for i := int64(0); i < n; i++ {
		c := exec.Command("/proc/self/exe", childArg)
		if err := c.Start(); err != nil {
			stop = err
			break
		}
		children = append(children, c)
	}
	for _, c := range children {
		c.Process.Kill()
		c.Wait()
	}
	return len(children), stop
}

// childSleep is what a copy started by spawnCopies does.
func childSleep() {
	time.Sleep(time.Minute)
}

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
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

// procStatus reports what the kernel says about the sandboxed process.
func procStatus(map[string]string) (any, error) {
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
	uidMap, _ := os.ReadFile("/proc/self/uid_map")
	fields["uid_map"] = strings.Join(strings.Fields(string(uidMap)), " ")
	return map[string]any{"status": fields}, nil
}

// syscalls tries calls that the strict seccomp profile must refuse, each
// in a form the kernel itself would allow, so EPERM can only come from
// seccomp (or a missing capability).
func syscalls(map[string]string) (any, error) {
	res := map[string]string{}
	record := func(name string, err error) {
		switch {
		case err == nil:
			res[name] = "OK"
		case errors.Is(err, unix.EPERM):
			res[name] = "EPERM"
		default:
			res[name] = err.Error()
		}
	}
	record("mount", unix.Mount("none", "/tmp", "tmpfs", 0, ""))
	record("unshare", unix.Unshare(unix.CLONE_NEWUTS))
	_, _, e := unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
	record("ptrace", errnoErr(e))
	var params [120]byte
	fd, _, e := unix.RawSyscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
	if e == 0 {
		unix.Close(int(fd))
	}
	record("io_uring_setup", errnoErr(e))
	_, _, e = unix.RawSyscall(unix.SYS_KEYCTL, 0 /* KEYCTL_GET_KEYRING_ID */, ^uintptr(0) /* thread keyring */, 0)
	record("keyctl", errnoErr(e))
	fd, _, e = unix.RawSyscall(unix.SYS_USERFAULTFD, 0, 0, 0)
	if e == 0 {
		unix.Close(int(fd))
	}
	record("userfaultfd", errnoErr(e))
	_, _, e = unix.RawSyscall(unix.SYS_PERSONALITY, 0x0040000 /* ADDR_NO_RANDOMIZE */, 0, 0)
	record("personality_no_aslr", errnoErr(e))
	return map[string]any{"syscalls": res}, nil
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// alloc allocates and touches params["mb"] MiB.
func alloc(params map[string]string) (any, error) {
	mb, err := intParam(params, "mb", 1024)
	if err != nil {
		return nil, err
	}
	var keep [][]byte
	for i := int64(0); i < mb; i++ {
		b := make([]byte, 1<<20)
		for j := range b {
			if j%4096 == 0 {
				b[j] = 1
			}
		}
		keep = append(keep, b)
	}
	return map[string]any{"allocated_mb": len(keep)}, nil
}

// forkbomb starts copies of itself until the kernel refuses.
func forkbomb(params map[string]string) (any, error) {
	n, err := intParam(params, "n", 10000)
	if err != nil {
		return nil, err
	}
	if len(os.Args) > 1 && os.Args[1] == "child" {
		time.Sleep(time.Minute)
		return nil, nil
	}
	var children []*exec.Cmd
	var stop error
	for i := int64(0); i < n; i++ {
		c := exec.Command("/proc/self/exe", "child")
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
	out := map[string]any{"spawned": len(children)}
	if stop != nil {
		out["error"] = fmt.Sprint(stop)
	}
	return out, nil
}

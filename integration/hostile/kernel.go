package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

func init() {
	probes["io_uring_enter"] = func() error {
		// fd -1: the kernel itself answers EBADF; only a filter says EPERM.
		_, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, ^uintptr(0), 0, 0, 0, 0, 0)
		return errnoErr(e)
	}
	probes["io_uring_register"] = func() error {
		_, _, e := unix.RawSyscall6(unix.SYS_IO_URING_REGISTER, ^uintptr(0), 0, 0, 0, 0, 0)
		return errnoErr(e)
	}
	probes["process_vm_readv"] = func() error { return processVM(unix.SYS_PROCESS_VM_READV) }
	probes["process_vm_writev"] = func() error { return processVM(unix.SYS_PROCESS_VM_WRITEV) }
	attackOps["proc_views"] = procViews
	attackOps["open_ptmx"] = openPtmx
	attackOps["inode_flood"] = inodeFlood
}

// processVM copies a few bytes of this process's own memory to itself, a
// form the kernel allows any process, so that only the filter can refuse.
func processVM(nr uintptr) error {
	src, dst := []byte("airlock!"), make([]byte, 8)
	local := unix.Iovec{Base: &dst[0], Len: uint64(len(dst))}
	remote := unix.Iovec{Base: &src[0], Len: uint64(len(src))}
	if nr == unix.SYS_PROCESS_VM_WRITEV {
		local, remote = remote, local
	}
	_, _, e := unix.Syscall6(nr, uintptr(os.Getpid()), uintptr(unsafe.Pointer(&local)), 1, uintptr(unsafe.Pointer(&remote)), 1, 0)
	return errnoErr(e)
}

// procViews reports what the kernel shows the job of its place on the
// host: its cgroups and its mounts, with the run ID it was given, so the
// harness can look for host paths and IDs in them.
func procViews(*attacker, step) outcome {
	o := outcome{OK: true, Detail: map[string]any{"run_id": os.Getenv("AIRLOCK_RUN_ID")}}
	for key, path := range map[string]string{"cgroup": "/proc/self/cgroup", "mountinfo": "/proc/self/mountinfo"} {
		b, err := readCapped(path)
		if err != nil {
			o.fail(err)
		}
		o.Detail[key] = string(b)
	}
	return o
}

// openPtmx tries to get a pseudo-terminal, as a job out to drain the
// host's pty pool would.
func openPtmx(*attacker, step) outcome {
	var o outcome
	open := func(path string) func() error {
		return func() error {
			fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
			}
			return os.NewSyscallError("open "+path, err)
		}
	}
	tryAll(&o,
		namedTry{"/dev/ptmx", open("/dev/ptmx")},
		namedTry{"/dev/pts/ptmx", open("/dev/pts/ptmx")},
		namedTry{"mount_devpts", func() error {
			return os.NewSyscallError("mount", unix.Mount("devpts", "/tmp", "devpts", 0, "newinstance,ptmxmode=0666"))
		}},
	)
	return o
}

// inodeFlood creates empty files in "dir" until the kernel refuses, at
// most "n" (100000 unless given), then removes them, so the result can
// still be written. Detail holds how many it made and what stopped it.
func inodeFlood(a *attacker, s step) outcome {
	var o outcome
	n, err := s.int("n", 100000)
	if err != nil {
		o.fail(err)
		return o
	}
	dir, err := os.MkdirTemp(a.path(s.str("dir")), "flood-")
	if err != nil {
		o.fail(err)
		return o
	}
	defer os.RemoveAll(dir)
	created := int64(1) // the directory itself
	var stop error
	for ; created < n; created++ {
		fd, err := unix.Open(filepath.Join(dir, strconv.FormatInt(created, 36)), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		if err != nil {
			stop = err
			break
		}
		unix.Close(fd)
	}
	o.Detail = map[string]any{"created": created}
	if stop == nil {
		stop = errors.New("not refused")
	}
	o.fail(stop) // ok only would mean nothing stopped it
	return o
}

// Package seccompfilter reads the seccomp filter a process runs under, as
// the kernel holds it: the classic BPF program its runtime compiled and
// installed, which ptrace(PTRACE_SECCOMP_GET_FILTER) hands to a tracer
// with CAP_SYS_ADMIN.
package seccompfilter

import (
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxInstructions is the kernel's bound on one filter (BPF_MAXINSNS).
const maxInstructions = 4096

// ErrNotOne is returned for a process under more or fewer than one
// filter: its filter is then not the one its runtime installed alone.
var ErrNotOne = errors.New("process does not run under exactly one seccomp filter")

// Read returns the one seccomp filter pid runs under, as instructions of
// 8 bytes each in host byte order, the form seccomp(2) takes. The process
// is stopped only while it is read (PTRACE_SEIZE and PTRACE_INTERRUPT:
// it is sent no signal), and timeout bounds the wait for it to stop.
func Read(pid int, timeout time.Duration) ([]byte, error) {
	type result struct {
		filter []byte
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		// A tracee belongs to the thread that attached it, so every
		// ptrace call is made from this one. When the detach fails the
		// goroutine ends with the thread still locked, and the thread
		// ends with it, which detaches the tracee.
		runtime.LockOSThread()
		filter, err, detached := read(pid, timeout)
		if detached {
			runtime.UnlockOSThread()
		}
		ch <- result{filter, err}
	}()
	r := <-ch
	return r.filter, r.err
}

func read(pid int, timeout time.Duration) (filter []byte, err error, detached bool) {
	if err := unix.PtraceSeize(pid); err != nil {
		return nil, fmt.Errorf("ptrace seize %d: %w", pid, err), true
	}
	defer func() {
		if derr := unix.PtraceDetach(pid); derr != nil {
			err = errors.Join(err, fmt.Errorf("ptrace detach %d: %w", pid, derr))
			return
		}
		detached = true
	}()
	if err := unix.PtraceInterrupt(pid); err != nil {
		return nil, fmt.Errorf("ptrace interrupt %d: %w", pid, err), false
	}
	if err := waitStop(pid, timeout); err != nil {
		return nil, err, false
	}
	n, err := getFilter(pid, 0, nil)
	if errors.Is(err, unix.ENOENT) {
		return nil, ErrNotOne, false
	}
	if err != nil {
		return nil, err, false
	}
	if n <= 0 || n > maxInstructions {
		return nil, fmt.Errorf("seccomp filter of %d instructions", n), false
	}
	prog := make([]unix.SockFilter, n)
	if m, err := getFilter(pid, 0, prog); err != nil {
		return nil, err, false
	} else if m != n {
		return nil, ErrNotOne, false
	}
	// Only the stopped thread is stopped, and another may add a filter
	// to it (filters are only ever added): one found only after the read
	// shows that what was read may not be the first.
	if _, err := getFilter(pid, 1, nil); !errors.Is(err, unix.ENOENT) {
		return nil, ErrNotOne, false
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), n*int(unsafe.Sizeof(prog[0]))), nil, false
}

// waitStop waits for the seized tracee's stop, which the interrupt
// causes at once unless it is exiting or stuck in the kernel.
func waitStop(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WALL|unix.WNOHANG, nil)
		if err != nil {
			return fmt.Errorf("wait for %d to stop: %w", pid, err)
		}
		if got == pid {
			if ws.Stopped() {
				return nil
			}
			return fmt.Errorf("process %d ended before it was read (%v)", pid, ws)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d did not stop within %s", pid, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// getFilter is PTRACE_SECCOMP_GET_FILTER of filter index (0 is the one
// installed last): with prog nil, the filter's length in instructions.
func getFilter(pid, index int, prog []unix.SockFilter) (int, error) {
	var p unsafe.Pointer
	if len(prog) > 0 {
		p = unsafe.Pointer(&prog[0])
	}
	n, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), uintptr(index), uintptr(p), 0, 0)
	runtime.KeepAlive(prog)
	if errno != 0 {
		return 0, fmt.Errorf("ptrace seccomp get filter %d of %d: %w", index, pid, errno)
	}
	return int(n), nil
}

package seccompfilter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary a process that installs that many
// copies of program, says so, and waits for a line on stdin.
const helperEnv = "SECCOMPFILTER_HELPER_FILTERS"

// program loads the syscall's architecture and allows the call: two
// instructions, so that a read that dropped or reordered one would show.
var program = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4},
	{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
}

func TestMain(m *testing.M) {
	if v := os.Getenv(helperEnv); v != "" {
		n, _ := strconv.Atoi(v)
		os.Exit(helper(n))
	}
	os.Exit(m.Run())
}

func helper(n int) int {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	prog := unix.SockFprog{Len: uint16(len(program)), Filter: &program[0]}
	for range n {
		// Every thread, so that the main one, which the test reads, has it.
		if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); errno != 0 {
			fmt.Println("error:", errno)
			return 1
		}
	}
	fmt.Println("ready")
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil || line != "go on\n" {
		return 2
	}
	return 0
}

// startHelper starts a process under n filters; the returned function
// tells it to go on and returns how it exited.
func startHelper(t *testing.T, n int) (*exec.Cmd, func() error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("reading a seccomp filter needs CAP_SYS_ADMIN: run as root (make test does)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper said %q (%v)", line, err)
	}
	return cmd, func() error {
		if _, err := stdin.Write([]byte("go on\n")); err != nil {
			return err
		}
		return cmd.Wait()
	}
}

func TestRead_ReturnsTheInstalledProgramAndLeavesTheProcessRunning(t *testing.T) {
	cmd, goOn := startHelper(t, 1)
	got, err := Read(cmd.Process.Pid, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := unsafe.Slice((*byte)(unsafe.Pointer(&program[0])), len(program)*int(unsafe.Sizeof(program[0])))
	if !bytes.Equal(got, want) {
		t.Fatalf("read %x, installed %x", got, want)
	}
	// The read stopped the process only while it ran: it reads its line
	// and exits as if nothing happened.
	if err := goOn(); err != nil {
		t.Fatalf("helper after the read: %v", err)
	}
}

func TestRead_RefusesAProcessUnderTwoFilters(t *testing.T) {
	cmd, goOn := startHelper(t, 2)
	if _, err := Read(cmd.Process.Pid, 5*time.Second); !errors.Is(err, ErrNotOne) {
		t.Fatalf("err %v, want ErrNotOne", err)
	}
	if err := goOn(); err != nil {
		t.Fatalf("helper after the read: %v", err)
	}
}

func TestRead_RefusesAProcessWithoutAFilter(t *testing.T) {
	cmd, goOn := startHelper(t, 0)
	if _, err := Read(cmd.Process.Pid, 5*time.Second); err == nil {
		t.Fatal("read a filter from a process that has none")
	}
	if err := goOn(); err != nil {
		t.Fatalf("helper after the read: %v", err)
	}
}

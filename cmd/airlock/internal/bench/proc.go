package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat. Linux fixes
// it at 100 for user space whatever the kernel's own tick rate.
const userHZ = 100

// ProcSample is a process's CPU time so far and resident memory now.
type ProcSample struct {
	// CPU is user plus system time, at a resolution of 10 ms.
	CPU time.Duration
	// RSS is VmRSS in bytes.
	RSS int64
}

// ReadProc samples process pid from /proc.
func ReadProc(pid int) (ProcSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcSample{}, err
	}
	// comm, the second field, is parenthesised and may hold spaces or
	// parentheses itself; the fields after its last ')' are fixed.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return ProcSample{}, fmt.Errorf("/proc/%d/stat: no comm field", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	// After comm: state(3) ... utime(14) stime(15), so indexes 11 and 12.
	if len(f) < 13 {
		return ProcSample{}, fmt.Errorf("/proc/%d/stat: %d fields after comm", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return ProcSample{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	rss, err := readRSS(pid)
	if err != nil {
		return ProcSample{}, err
	}
	return ProcSample{CPU: time.Duration(utime+stime) * time.Second / userHZ, RSS: rss}, nil
}

// readRSS reads VmRSS, in bytes, from /proc/<pid>/status.
func readRSS(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmRSS %q", pid, v)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS (a kernel thread or a zombie?)", pid)
}

// ListenerPID returns the process listening on the unix socket at path:
// the socket's inode from /proc/net/unix, then the process holding a file
// descriptor to it. It finds airlockd and containerd by what they serve,
// which stays right when several run on one host.
func ListenerPID(path string) (int, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, err
	}
	inode, err := listenerInode(abs)
	if err != nil {
		return 0, err
	}
	link := "socket:[" + inode + "]"
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); err == nil && l == link {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process holds the socket listening at %s (are you root?)", abs)
}

// soAcceptCon is the flag /proc/net/unix shows for a listening socket.
const soAcceptCon = 0x10000

// listenerInode finds the inode of the listening unix socket bound at path.
func listenerInode(path string) (string, error) {
	data, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Scan() // header
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[7] != path {
			continue
		}
		flags, err := strconv.ParseUint(f[3], 16, 32)
		if err == nil && flags&soAcceptCon != 0 {
			return f[6], nil
		}
	}
	return "", fmt.Errorf("no unix socket is listening at %s", path)
}

// Cmdline returns process pid's arguments.
func Cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}

// FlagValue returns the value of flag name in args as Go's flag package
// reads it (-name v, --name v, -name=v or --name=v), and whether it is set.
func FlagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--" {
			break
		}
		trimmed := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if trimmed == a {
			continue
		}
		if v, ok := strings.CutPrefix(trimmed, name+"="); ok {
			return v, true
		}
		if trimmed == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// sampler follows one process's resident memory while a run goes on, to
// find its peak; VmHWM would give the lifetime peak instead.
type sampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}

	mu   sync.Mutex
	peak int64
}

// sampleInterval is short next to a spawn, so a sandbox's life is seen.
const sampleInterval = 10 * time.Millisecond

func startSampler(pid int) *sampler {
	s := &sampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(sampleInterval)
		defer t.Stop()
		for {
			if rss, err := readRSS(pid); err == nil {
				s.mu.Lock()
				s.peak = max(s.peak, rss)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the peak RSS seen.
func (s *sampler) Stop() int64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// Package embedded runs the broker's private containerd: its own root, state
// and socket under the broker's state dir, so that Airlock never shares a
// containerd (and its images, snapshots and namespaces) with anything else.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd"
)

// ErrNotInstalled means a required binary is not on PATH.
var ErrNotInstalled = errors.New("not installed")

// Containerd is a running private containerd, restarted if it dies under the
// broker. Stop it exactly once.
type Containerd struct {
	dir     string
	address string
	config  string
	exited  chan struct{}
	log     *os.File

	mu       sync.Mutex
	cmd      *exec.Cmd
	stopping bool
	restarts int
}

// Restarts is how many times containerd died and was started again.
func (d *Containerd) Restarts() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.restarts
}

// Pid is the running containerd's process id.
func (d *Containerd) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Address is the daemon's gRPC socket.
func (d *Containerd) Address() string { return d.address }

// Start starts containerd with root, state and socket under dir, and waits
// until it answers. The daemon is a child of this process and is stopped by
// Stop; should the broker die hard, the next Start replaces it.
func Start(ctx context.Context, dir string) (*Containerd, error) {
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s: %w: install Debian's containerd and runc packages (apt-get install containerd runc)", bin, ErrNotInstalled)
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// Execute-only, not 0700: runc reaches a user-namespaced sandbox's
	// rootfs below this dir as an unprivileged host uid.
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("containerd dir: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	d := &Containerd{dir: dir, address: filepath.Join(dir, "containerd.sock"), exited: make(chan struct{})}
	killStale(dir)
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(config(dir, d.address)), 0o600); err != nil {
		return nil, fmt.Errorf("containerd config: %w", err)
	}
	d.log, err = os.OpenFile(filepath.Join(dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	d.config = cfg
	// containerd creates snapshot and rootfs directories under the umask it
	// inherits; a strict operator umask (077) would make every image
	// unreadable to the sandbox's non-root user.
	//
	// Pdeathsig fires when the forking *thread* exits, not the process, and
	// the Go runtime retires threads that a goroutine locked and left (the
	// netns code does). So containerd is started, and restarted, from one
	// thread locked for the daemon's whole life.
	started := make(chan error, 1)
	// Not recovered: a panic in supervising containerd leaves the
	// daemon's state unknown, and airlockd must not go on without it.
	go d.supervise(started)
	if err := <-started; err != nil {
		d.log.Close()
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	if err := d.waitReady(ctx); err != nil {
		d.Stop(context.WithoutCancel(ctx))
		return nil, err
	}
	return d, nil
}

// supervise runs containerd and starts it again whenever it dies while
// the broker still needs it: jobs in flight fail, but the broker recovers
// without a restart of its own.
func (d *Containerd) supervise(started chan<- error) {
	runtime.LockOSThread()
	first := true
	for {
		// Not CommandContext: the daemon outlives any request context and is
		// stopped by Stop, with a grace period for its shims.
		cmd := exec.Command("containerd", "--config", d.config)
		cmd.Stdout, cmd.Stderr = d.log, d.log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
		old := syscall.Umask(0o022)
		err := cmd.Start()
		syscall.Umask(old)
		if err == nil {
			d.mu.Lock()
			d.cmd = cmd
			d.mu.Unlock()
			_ = os.WriteFile(filepath.Join(d.dir, "containerd.pid"), []byte(fmt.Sprint(cmd.Process.Pid)), 0o600)
		}
		if first {
			started <- err
			first = false
			if err != nil {
				close(d.exited)
				return
			}
		}
		if err == nil {
			_ = cmd.Wait()
		}
		d.mu.Lock()
		stopping := d.stopping
		if !stopping {
			d.restarts++
		}
		d.mu.Unlock()
		if stopping {
			close(d.exited)
			return
		}
		fmt.Fprintf(d.log, "airlock: containerd exited (%v); restarting\n", cmd.ProcessState)
		time.Sleep(200 * time.Millisecond)
		d.mu.Lock()
		stopping = d.stopping
		d.mu.Unlock()
		if stopping {
			close(d.exited)
			return
		}
	}
}

func (d *Containerd) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		select {
		case <-d.exited:
			return fmt.Errorf("containerd exited during start-up; see %s", d.log.Name())
		case <-ctx.Done():
			return fmt.Errorf("containerd did not answer on %s: %w", d.address, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := os.Stat(d.address); err != nil {
			continue
		}
		c, err := containerd.New(d.address, containerd.WithTimeout(time.Second))
		if err != nil {
			continue
		}
		serving, err := c.IsServing(ctx)
		c.Close()
		if err == nil && serving {
			return nil
		}
	}
}

// Stop asks containerd to exit and kills it if it has not within ctx's
// deadline (or 10 seconds).
func (d *Containerd) Stop(ctx context.Context) error {
	defer d.log.Close()
	defer os.Remove(filepath.Join(d.dir, "containerd.pid"))
	d.mu.Lock()
	d.stopping = true
	cmd := d.cmd
	d.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	select {
	case <-d.exited:
		return nil
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("containerd did not stop in time and was killed")
	}
}

// killStale ends a containerd that a predecessor killed with -9 left
// running on our socket, so that two daemons never share one root.
func killStale(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "containerd.pid"))
	if err != nil {
		return
	}
	var pid int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &pid); err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), filepath.Join(dir, "config.toml")) {
		return
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return
	}
	_ = p.Signal(syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = p.Kill()
}

// config is a minimal containerd 1.6 config: private paths, no CRI, and no
// snapshotters Airlock does not use, so start-up is fast and quiet.
func config(dir, address string) string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  address = ""

[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), address, address+".ttrpc")
}

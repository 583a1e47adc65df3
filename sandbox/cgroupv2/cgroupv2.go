// Package cgroupv2 readies the cgroup v2 hierarchy of a container that
// runs airlockd, so that runc can give the jobs' cgroups their memory,
// pids and cpu limits.
//
// The kernel lets a cgroup other than the hierarchy's root hand a
// controller to its children only while no process lives in it (the "no
// internal processes" rule). In a container with a cgroup namespace of
// its own, airlockd, its containerd and the shims live in the container's
// cgroup, which the namespace shows as "/": runc's cgroups for the jobs
// below it would get no controllers, and runc refuses to start a job
// whose limits it cannot set. Delegate does what kind's and
// docker-in-docker's entrypoints do: it moves every process of that
// cgroup into a child, "/init", and then enables the available
// controllers for the children.
package cgroupv2

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrDelegate means the controllers could not be handed to child cgroups:
// the jobs would run without their limits, so airlockd must not start.
var ErrDelegate = errors.New("cgroup v2: cannot delegate controllers to the jobs' cgroups")

// InitCgroup is the child cgroup the namespace root's processes are moved
// to: airlockd, and with it everything it starts but the jobs. The name is
// kind's and docker-in-docker's.
const InitCgroup = "init"

// Outcome says what Delegate found and did.
type Outcome int

// Outcomes. Only Delegated changed anything.
const (
	// NotUnified: the mount is not cgroup v2 alone (a cgroup v1 or hybrid
	// host); runc places the jobs as it always has.
	NotUnified Outcome = iota + 1
	// NotNamespaceRoot: the process lives below the root of its cgroup
	// namespace, as under systemd (a service's slice) or in a container
	// that shares the host's cgroup namespace. Its cgroup belongs to
	// whoever put it there, and is never touched.
	NotNamespaceRoot
	// HierarchyRoot: the cgroup is the hierarchy's true root, to which the
	// rule does not apply; the host's, not airlockd's, to arrange.
	HierarchyRoot
	// AlreadyDelegated: every available controller is already enabled for
	// the children.
	AlreadyDelegated
	// Delegated: the processes were moved to InitCgroup and the
	// controllers enabled.
	Delegated
)

var outcomeNames = map[Outcome]string{
	NotUnified: "not a cgroup v2 host", NotNamespaceRoot: "below its cgroup namespace's root, left alone",
	HierarchyRoot: "at the hierarchy's root, left alone", AlreadyDelegated: "controllers already delegated",
	Delegated: "processes moved to /" + InitCgroup + ", controllers delegated",
}

func (o Outcome) String() string {
	if s, ok := outcomeNames[o]; ok {
		return s
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Result is what Delegate did, for the log.
type Result struct {
	Outcome Outcome
	// Moved is how many processes went to InitCgroup.
	Moved int
	// Enabled are the controllers Delegate enabled.
	Enabled []string
}

// Limits on what Delegate reads. The files are the kernel's, in airlockd's
// own container, but nothing is read without a bound.
const (
	maxFileBytes = 1 << 20
	// movePasses bounds the rounds of moving: a process forked while the
	// first round runs lands in the root and is moved by the next.
	movePasses = 8
)

// config is where Delegate looks; tests point it at a fake cgroupfs.
type config struct {
	root       string
	selfCgroup string
	fs         cgroupFS
	isUnified  func(root string) (bool, error)
}

// Option changes where Delegate looks.
type Option func(*config)

// WithRoot is the cgroup v2 mount; the default is /sys/fs/cgroup.
func WithRoot(dir string) Option { return func(c *config) { c.root = dir } }

// WithSelfCgroup is the file that names the process's cgroups; the default
// is /proc/self/cgroup.
func WithSelfCgroup(path string) Option { return func(c *config) { c.selfCgroup = path } }

// Delegate readies the cgroup hierarchy for the jobs' cgroups when, and
// only when, all of these hold:
//   - the root (/sys/fs/cgroup) is a cgroup v2 mount;
//   - the process's cgroup v2 path (/proc/self/cgroup's "0::" line) is
//     "/", the root of its cgroup namespace: a container's own cgroup;
//   - that cgroup is not the hierarchy's true root (it has cgroup.type,
//     which the kernel gives every cgroup but the root);
//   - an available controller (cgroup.controllers) is not enabled for the
//     children (cgroup.subtree_control).
//
// Then it moves every process of the cgroup into InitCgroup and enables
// every available controller. Any step that fails is an ErrDelegate that
// says which step and why; nothing is half undone, since a process in
// InitCgroup is as well off as in the root.
func Delegate(opts ...Option) (Result, error) {
	c := config{root: "/sys/fs/cgroup", selfCgroup: "/proc/self/cgroup", isUnified: isCgroup2Mount}
	for _, o := range opts {
		o(&c)
	}
	if c.fs == nil {
		c.fs = osFS{root: c.root}
	}
	unified, err := c.isUnified(c.root)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %s: %w", ErrDelegate, c.root, err)
	}
	if !unified {
		return Result{Outcome: NotUnified}, nil
	}
	self, err := readSelfCgroup(c.selfCgroup)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrDelegate, err)
	}
	if self != "/" {
		return Result{Outcome: NotNamespaceRoot}, nil
	}
	if _, err := c.fs.ReadFile("cgroup.type"); errors.Is(err, os.ErrNotExist) {
		return Result{Outcome: HierarchyRoot}, nil
	} else if err != nil {
		return Result{}, fmt.Errorf("%w: %s/cgroup.type: %w", ErrDelegate, c.root, err)
	}
	available, err := readFields(c.fs, "cgroup.controllers")
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrDelegate, err)
	}
	enabled, err := readFields(c.fs, "cgroup.subtree_control")
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrDelegate, err)
	}
	var missing []string
	for _, ctl := range available {
		if !slices.Contains(enabled, ctl) {
			missing = append(missing, ctl)
		}
	}
	if len(missing) == 0 {
		return Result{Outcome: AlreadyDelegated}, nil
	}

	res := Result{Outcome: Delegated}
	if err := c.fs.Mkdir(InitCgroup); err != nil && !errors.Is(err, os.ErrExist) {
		return Result{}, fmt.Errorf("%w: create %s/%s for this container's processes: %w%s", ErrDelegate, c.root, InitCgroup, err, hint(err))
	}
	if res.Moved, err = moveAll(c.fs, InitCgroup); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrDelegate, err)
	}
	for _, ctl := range missing {
		if err := c.fs.WriteFile("cgroup.subtree_control", []byte("+"+ctl)); err != nil {
			return Result{}, fmt.Errorf("%w: enable controller %s in %s/cgroup.subtree_control: %w%s", ErrDelegate, ctl, c.root, err, hint(err))
		}
		res.Enabled = append(res.Enabled, ctl)
	}
	// The kernel's word, not the writes', is what runc will find.
	enabled, err = readFields(c.fs, "cgroup.subtree_control")
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrDelegate, err)
	}
	for _, ctl := range missing {
		if !slices.Contains(enabled, ctl) {
			return Result{}, fmt.Errorf("%w: controller %s is still not enabled in %s/cgroup.subtree_control (%q)", ErrDelegate, ctl, c.root, strings.Join(enabled, " "))
		}
	}
	return res, nil
}

// moveAll moves every process listed in the root's cgroup.procs to dir's,
// one pid per write as the kernel wants, round after round until the root
// is empty. A process that exited meanwhile (ESRCH) needs no moving.
func moveAll(fsys cgroupFS, dir string) (int, error) {
	moved := 0
	for range movePasses {
		pids, err := readFields(fsys, "cgroup.procs")
		if err != nil {
			return moved, err
		}
		if len(pids) == 0 {
			return moved, nil
		}
		for _, pid := range pids {
			if _, err := strconv.ParseUint(pid, 10, 31); err != nil {
				return moved, fmt.Errorf("cgroup.procs lists %q, not a process id", pid)
			}
			err := fsys.WriteFile(dir+"/cgroup.procs", []byte(pid))
			switch {
			case errors.Is(err, syscall.ESRCH):
			case err != nil:
				return moved, fmt.Errorf("move process %s to /%s: %w%s", pid, dir, err, hint(err))
			default:
				moved++
			}
		}
	}
	return moved, fmt.Errorf("processes kept appearing in the container's cgroup over %d rounds of moving them to /%s", movePasses, dir)
}

// hint says what a failure usually means in a container.
func hint(err error) string {
	switch {
	case errors.Is(err, syscall.EROFS):
		return " (the cgroup file system is mounted read-only: airlockd needs a privileged container, see deploy/kubernetes)"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return " (airlockd needs to be root with write access to its cgroup: a privileged container, see deploy/kubernetes)"
	case errors.Is(err, syscall.EBUSY):
		return " (a process is still in the container's cgroup, or the cgroup is threaded)"
	case errors.Is(err, syscall.EOPNOTSUPP):
		return " (the container's cgroup is not a domain cgroup: it is threaded, and cannot hold the jobs' cgroups)"
	}
	return ""
}

// readSelfCgroup is the cgroup v2 path in a /proc/<pid>/cgroup file: its
// "0::" line.
func readSelfCgroup(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxFileBytes))
	sc.Buffer(make([]byte, 0, 4096), maxFileBytes)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return "", fmt.Errorf("%s has no cgroup v2 (0::) line, though the mount is cgroup v2", path)
}

// readFields reads a cgroup file of whitespace-separated words.
func readFields(fsys cgroupFS, name string) ([]string, error) {
	b, err := fsys.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// isCgroup2Mount reports whether dir is a cgroup v2 file system.
func isCgroup2Mount(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC, nil
}

// cgroupFS is the few operations Delegate makes on the hierarchy, by name
// relative to its root.
type cgroupFS interface {
	ReadFile(name string) ([]byte, error)
	// WriteFile is one write(2) to an existing file: the kernel acts on
	// each write, and a cgroup file is never created or truncated.
	WriteFile(name string, data []byte) error
	Mkdir(name string) error
}

// osFS is the real hierarchy under root.
type osFS struct{ root string }

func (f osFS) ReadFile(name string) ([]byte, error) {
	fh, err := os.Open(filepath.Join(f.root, name))
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxFileBytes+1))
	if err == nil && len(b) > maxFileBytes {
		err = fmt.Errorf("%s: over %d bytes", fh.Name(), maxFileBytes)
	}
	return b, err
}

func (f osFS) WriteFile(name string, data []byte) error {
	fh, err := os.OpenFile(filepath.Join(f.root, name), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fh.Write(bytes.TrimSpace(data))
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}

func (f osFS) Mkdir(name string) error { return os.Mkdir(filepath.Join(f.root, name), 0o755) }

package doctor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/airlock/airlock/sandbox/footprint"
)

// lockName is airlockd's state-dir lock (cmd/airlockd/server/lock.go).
// airlockd holds an exclusive flock on it for as long as it lives, and the
// kernel drops the lock when the process dies, kill -9 included. So a held
// lock is a live broker, and the path of the lock names its state dir,
// whose instance ID is in the name of everything that broker creates.
const lockName = "airlockd.lock"

// ownerState is whose a leftover's instance is.
type ownerState int

const (
	// ownerLive is a running broker: what carries its instance is its
	// jobs', not debris.
	ownerLive ownerState = iota
	// ownerDead is no running broker: no live process holds the lock of a
	// state dir with this instance.
	ownerDead
	// ownerUnknown means the doctor cannot tell, and so must not advise
	// removing anything.
	ownerUnknown
)

// liveBroker is an airlockd found by the state-dir lock it holds.
type liveBroker struct {
	pid int
	// stateDir is where its lock is; empty when its open files could not
	// be read.
	stateDir string
}

func (b liveBroker) String() string {
	if b.stateDir == "" {
		return fmt.Sprintf("airlockd pid %d", b.pid)
	}
	return fmt.Sprintf("airlockd pid %d (state dir %s)", b.pid, b.stateDir)
}

// owners tells a live broker's instance from a dead one's. It reads the
// kernel's table of held locks and the lock holders' open files, and takes
// no lock itself: a probe would, for an instant, make a starting airlockd
// fail as if the state dir were in use.
type owners struct {
	// live maps an instance ID to the broker holding its state dir's lock.
	live map[string]liveBroker
	// hidden are lock holders whose open files could not be read (the
	// doctor is not root); an instance not in live may be one of theirs.
	hidden []int
	// err is why the held locks could not be read; then nothing is known.
	err error
	// mine is the instance of the state dir checked, and mineKnown whether
	// its lock was found free by its inode: then hidden holders do not
	// make it unknown.
	mine      string
	mineKnown bool
}

// heldLock is one exclusive flock from /proc/locks.
type heldLock struct {
	pid int
	ino uint64
}

// readOwners finds every broker on the host by the state-dir lock it holds,
// and the broker of stateDir even when its holder's files cannot be read.
func readOwners(stateDir string) *owners {
	o := &owners{live: map[string]liveBroker{}}
	f, err := os.Open(procRoot + "/locks")
	if err != nil {
		o.err = err
		return o
	}
	locks, err := parseLocks(f)
	f.Close()
	if err != nil {
		o.err = err
		return o
	}
	byPID := map[int][]uint64{}
	for _, l := range locks {
		byPID[l.pid] = append(byPID[l.pid], l.ino)
	}
	// stateDir's own lock is recognised by its inode too, which needs no
	// access to the holder's files, and survives a symlink in the path
	// airlockd was given.
	stateDir = absPath(stateDir)
	var mine *syscall.Stat_t
	st, err := os.Stat(filepath.Join(stateDir, lockName))
	if err == nil {
		mine, _ = st.Sys().(*syscall.Stat_t)
	}
	mineID := footprint.InstanceID(stateDir)
	o.mine = mineID
	// No lock file: no airlockd has run on it since it was made.
	o.mineKnown = mine != nil || errors.Is(err, os.ErrNotExist)
	for _, pid := range slices.Sorted(maps.Keys(byPID)) {
		inos := byPID[pid]
		held, err := lockFilesOf(pid, inos)
		if err != nil {
			o.hidden = append(o.hidden, pid)
			if mine != nil && slices.Contains(inos, mine.Ino) {
				o.live[mineID] = liveBroker{pid: pid, stateDir: stateDir}
			}
			continue
		}
		for _, h := range held {
			b := liveBroker{pid: pid, stateDir: filepath.Dir(h.path)}
			for _, dir := range append([]string{b.stateDir}, stateDirArgs(pid)...) {
				o.live[footprint.InstanceID(dir)] = b
			}
			if mine != nil && h.dev == mine.Dev && h.ino == mine.Ino {
				o.live[mineID] = b
			}
		}
	}
	return o
}

// parseLocks reads the exclusive flocks out of /proc/locks, lines such as
// "1: FLOCK  ADVISORY  WRITE 17828 fe:00:9977953 0 EOF". Waiters ("->")
// hold nothing, and airlockd's lock is neither POSIX nor shared.
func parseLocks(r io.Reader) ([]heldLock, error) {
	var out []heldLock
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[1] != "FLOCK" || f[3] != "WRITE" {
			continue
		}
		pid, err := strconv.Atoi(f[4])
		dev := strings.Split(f[5], ":")
		if err != nil || pid <= 0 || len(dev) != 3 {
			continue
		}
		ino, err := strconv.ParseUint(dev[2], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, heldLock{pid: pid, ino: ino})
	}
	return out, sc.Err()
}

// lockFile is an airlockd.lock a process has open.
type lockFile struct {
	path string
	dev  uint64
	ino  uint64
}

// lockFilesOf returns the airlockd.lock files pid has open whose inode is
// among the ones it holds a lock on. An error means its open files could
// not be read.
func lockFilesOf(pid int, inos []uint64) ([]lockFile, error) {
	dir := fmt.Sprintf("%s/%d/fd", procRoot, pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			// It exited since /proc/locks was read, and its lock with it.
			return nil, nil
		}
		return nil, err
	}
	var out []lockFile
	for _, fd := range fds {
		p := filepath.Join(dir, fd.Name())
		target, err := os.Readlink(p)
		// A state dir removed under a running broker leaves its lock
		// open, and held, as "PATH (deleted)".
		target = strings.TrimSuffix(target, " (deleted)")
		if err != nil || filepath.Base(target) != lockName {
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		s, ok := st.Sys().(*syscall.Stat_t)
		if !ok || !slices.Contains(inos, s.Ino) {
			continue
		}
		out = append(out, lockFile{path: target, dev: s.Dev, ino: s.Ino})
	}
	return out, nil
}

// stateDirArgs is the --state-dir pid was started with, made absolute as
// airlockd makes it, or airlockd's default for an airlockd started without
// one. The instance ID comes from the path as given, which the lock's
// resolved path differs from when the path has a symlink in it.
func stateDirArgs(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/cmdline", procRoot, pid))
	if err != nil {
		return nil
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	dir, found := flagValue(args[1:], "state-dir")
	switch {
	case !found && filepath.Base(args[0]) == "airlockd":
		return []string{DefaultStateDir}
	case !found || dir == "":
		return nil
	case !filepath.IsAbs(dir):
		cwd, err := os.Readlink(fmt.Sprintf("%s/%d/cwd", procRoot, pid))
		if err != nil {
			return nil
		}
		dir = filepath.Join(cwd, dir)
	}
	return []string{filepath.Clean(dir)}
}

// flagValue finds a Go flag's value in args: -name v, --name v, -name=v or
// --name=v, the last one winning as with the flag package. It stops at
// "--". Not knowing which other flags take a value, it reads past words
// that are not flags; airlockd takes no arguments besides flags.
func flagValue(args []string, name string) (value string, found bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		switch {
		case a == name && i+1 < len(args):
			value, found = args[i+1], true
			i++
		case strings.HasPrefix(a, name+"="):
			value, found = strings.TrimPrefix(a, name+"="), true
		}
	}
	return value, found
}

// of says whose instance's resources are, and who or why. An empty
// instance is a name that carries none: an older airlockd's, or a veth
// caught between its creation and its alias.
func (o *owners) of(instance string) (ownerState, string) {
	if o.err != nil {
		return ownerUnknown, fmt.Sprintf("cannot read the held locks (%v)", o.err)
	}
	if instance != "" {
		if b, ok := o.live[instance]; ok {
			return ownerLive, b.String()
		}
	}
	if instance == o.mine && o.mineKnown {
		return ownerDead, ""
	}
	if len(o.hidden) > 0 {
		return ownerUnknown, fmt.Sprintf("the open files of lock holders %s cannot be read", pidList(o.hidden))
	}
	if instance == "" && len(o.live) > 0 {
		return ownerUnknown, "their names carry no instance, so the running brokers can neither claim nor disown them"
	}
	return ownerDead, ""
}

// pidList names up to maxListed pids.
func pidList(pids []int) string {
	var s []string
	for i, p := range pids {
		if i == maxListed {
			s = append(s, fmt.Sprintf("and %d more", len(pids)-maxListed))
			break
		}
		s = append(s, "pid "+strconv.Itoa(p))
	}
	return strings.Join(s, ", ")
}

// checkStateDirLock says whether a broker runs on the state dir, by the
// lock airlockd holds on it, and which brokers run on others: the leftovers
// checks tell a running broker's jobs from debris by the same.
func checkStateDirLock(_ context.Context, e *env) result {
	o := e.owners
	lock := filepath.Join(absPath(e.cfg.StateDir), lockName)
	var detail string
	switch st, who := o.of(o.mine); st {
	case ownerLive:
		detail = fmt.Sprintf("%s holds %s: a broker runs on this state dir, and what carries its instance %s is its jobs'", who, lock, o.mine)
	case ownerDead:
		detail = fmt.Sprintf("%s is not held: no broker runs on this state dir (instance %s)", lock, o.mine)
		if _, err := os.Stat(lock); errors.Is(err, os.ErrNotExist) {
			detail = fmt.Sprintf("no %s: no broker has run on this state dir since it was made (instance %s)", lock, o.mine)
		}
	default:
		return result{sev: Warn, detail: fmt.Sprintf("cannot tell whether a broker runs on this state dir: %s", who),
			fix: "run airlock doctor as root, which can read every lock holder's open files"}
	}
	var others []string
	// A broker is in live once per spelling of its state dir.
	seen := map[int]bool{o.live[o.mine].pid: true}
	for _, inst := range slices.Sorted(maps.Keys(o.live)) {
		if b := o.live[inst]; !seen[b.pid] {
			seen[b.pid] = true
			others = append(others, b.String())
		}
	}
	if len(others) > 0 {
		detail += "; other brokers on this host: " + strings.Join(others, ", ")
	}
	return result{ok: true, detail: detail}
}

package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockStateDir takes an exclusive lock on the state dir for this process's
// life. Two brokers on one state dir would share an instance ID, and each
// one's start-up reap would remove the other's live sandboxes. The kernel
// drops the lock when the process dies, kill -9 included, so a crash never
// leaves the dir locked.
func lockStateDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, "airlockd.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state dir lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("state dir %s is in use by another airlockd (pid %s): two brokers on one state dir would reap each other's sandboxes; give each its own --state-dir",
				dir, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("state dir lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}

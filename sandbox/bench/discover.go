package bench

import (
	"fmt"
	"os"
	"path/filepath"
)

// DefaultStateDir is airlockd's default --state-dir.
const DefaultStateDir = "/var/lib/airlock"

// EmbeddedContainerd is the socket of the private containerd that airlockd
// starts under stateDir when it is given no --containerd-address.
func EmbeddedContainerd(stateDir string) string {
	return filepath.Join(stateDir, "containerd", "containerd.sock")
}

// ContainerdAddressOf returns the containerd socket that the airlockd
// process pid uses, read from its command line: its --containerd-address,
// else the embedded containerd under its --state-dir. A relative path is
// taken from airlockd's working directory, as airlockd took it.
func ContainerdAddressOf(pid int) (string, error) {
	args, err := Cmdline(pid)
	if err != nil {
		return "", fmt.Errorf("airlockd pid %d: %w", pid, err)
	}
	if len(args) > 0 {
		args = args[1:]
	}
	addr, ok := FlagValue(args, "containerd-address")
	if !ok || addr == "" {
		dir, ok := FlagValue(args, "state-dir")
		if !ok {
			dir = DefaultStateDir
		}
		addr = EmbeddedContainerd(dir)
	}
	if !filepath.IsAbs(addr) {
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil {
			return "", fmt.Errorf("airlockd pid %d: working directory: %w", pid, err)
		}
		addr = filepath.Join(cwd, addr)
	}
	return addr, nil
}

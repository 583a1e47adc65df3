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
	args, err := airlockdArgs(pid)
	if err != nil {
		return "", err
	}
	addr, ok := FlagValue(args, "containerd-address")
	if !ok || addr == "" {
		dir, ok := FlagValue(args, "state-dir")
		if !ok {
			dir = DefaultStateDir
		}
		addr = EmbeddedContainerd(dir)
	}
	return fromCwdOf(pid, addr)
}

// StateDirOf returns the airlockd process pid's --state-dir, read from its
// command line, else DefaultStateDir; a relative path is taken from
// airlockd's working directory.
func StateDirOf(pid int) (string, error) {
	args, err := airlockdArgs(pid)
	if err != nil {
		return "", err
	}
	dir, ok := FlagValue(args, "state-dir")
	if !ok || dir == "" {
		dir = DefaultStateDir
	}
	return fromCwdOf(pid, dir)
}

// airlockdArgs are the arguments airlockd pid was started with.
func airlockdArgs(pid int) ([]string, error) {
	args, err := Cmdline(pid)
	if err != nil {
		return nil, fmt.Errorf("airlockd pid %d: %w", pid, err)
	}
	if len(args) > 0 {
		args = args[1:]
	}
	return args, nil
}

// fromCwdOf makes path absolute from process pid's working directory.
func fromCwdOf(pid int, path string) (string, error) {
	if filepath.IsAbs(path) {
		return path, nil
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return "", fmt.Errorf("airlockd pid %d: working directory: %w", pid, err)
	}
	return filepath.Join(cwd, path), nil
}

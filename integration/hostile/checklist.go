package main

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	ops["escape_checklist"] = escapeChecklistTask
}

// checklist is what a process inside the sandbox can see of the ways out:
// issue 6's escape checklist, for the suite to print as a table.
type checklist struct {
	// Namespaces are the targets of /proc/self/ns/*, "mnt:[4026531841]".
	Namespaces map[string]string `json:"namespaces"`
	// Status has Uid, Gid, the Cap* masks, NoNewPrivs and Seccomp.
	Status map[string]string `json:"status"`
	PID    int               `json:"pid"`
	// PID1 is the comm of pid 1 as this process sees it.
	PID1    string   `json:"pid1"`
	Mounts  []mount  `json:"mounts"`
	Devices []string `json:"devices"`
	// UnixSockets are the sockets tried, from /proc/net/unix and well-known
	// host paths: "connected" or the errno.
	UnixSockets map[string]string `json:"unix_sockets"`
	// Writable says for each path whether it opens for writing: "writable"
	// or the errno. Nothing is written.
	Writable map[string]string `json:"writable"`
	// ReleaseAgent is each cgroup v1 release_agent found, as Writable.
	ReleaseAgent map[string]string `json:"release_agent"`
	UIDMap       string            `json:"uid_map"`
	GIDMap       string            `json:"gid_map"`
}

// mount is one line of /proc/self/mountinfo. Root is the path inside the
// source filesystem, where a bind mount shows which host path it came from.
type mount struct {
	Point   string `json:"point"`
	Root    string `json:"root"`
	FSType  string `json:"fstype"`
	Source  string `json:"source"`
	Options string `json:"options"`
}

// hostSockets are sockets a host might have that must not be reachable.
var hostSockets = []string{
	"/run/containerd/containerd.sock",
	"/run/containerd/containerd.sock.ttrpc",
	"/var/run/containerd/containerd.sock",
	"/var/run/docker.sock",
	"/run/docker.sock",
	"/run/airlock/airlock.sock",
	"/run/dbus/system_bus_socket",
	"/run/systemd/private",
	"/run/systemd/journal/socket",
}

// writeTargets are files and directories that must not be writable from a
// sandbox. Files are opened for writing and closed again; directories are
// checked with access(2).
var writeTargets = []string{
	"/proc/sys",
	"/proc/sys/kernel/core_pattern",
	"/proc/sys/kernel/modprobe",
	"/proc/sysrq-trigger",
	"/sys",
	"/sys/kernel/uevent_helper",
	"/sys/fs/cgroup",
	"/sys/fs/cgroup/cgroup.procs",
}

func escapeChecklistTask(map[string]string) (any, error) {
	c := escapeChecklist()
	return map[string]any{"title": "checklist", "summary": c.summary(), "checklist": c}, nil
}

func escapeChecklist() checklist {
	c := checklist{
		Namespaces:   map[string]string{},
		PID:          os.Getpid(),
		UnixSockets:  map[string]string{},
		Writable:     map[string]string{},
		ReleaseAgent: map[string]string{},
	}
	entries, _ := os.ReadDir("/proc/self/ns")
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/ns/" + e.Name())
		if err != nil {
			target = errnoOr(err)
		}
		c.Namespaces[e.Name()] = target
	}
	c.Status, _ = statusFields()
	comm, _ := os.ReadFile("/proc/1/comm")
	c.PID1 = strings.TrimSpace(string(comm))
	c.Mounts = mounts()
	c.Devices = devices()
	for _, p := range unixSocketPaths() {
		conn, err := net.DialTimeout("unix", p, time.Second)
		if err != nil {
			c.UnixSockets[p] = errnoOr(err)
			continue
		}
		conn.Close()
		c.UnixSockets[p] = "connected"
	}
	for _, p := range writeTargets {
		c.Writable[p] = writable(p)
	}
	agents, _ := filepath.Glob("/sys/fs/cgroup/*/release_agent")
	if _, err := os.Stat("/sys/fs/cgroup/release_agent"); err == nil {
		agents = append(agents, "/sys/fs/cgroup/release_agent")
	}
	for _, p := range agents {
		c.ReleaseAgent[p] = writable(p)
	}
	c.UIDMap = idMap("/proc/self/uid_map")
	c.GIDMap = idMap("/proc/self/gid_map")
	return c
}

// summary is the checklist in one line.
func (c checklist) summary() string {
	count := func(m map[string]string, want string) int {
		n := 0
		for _, v := range m {
			if v == want {
				n++
			}
		}
		return n
	}
	return fmt.Sprintf("seccomp=%s no_new_privs=%s cap_eff=%s cap_bnd=%s uid_map=%q pid=%d mounts=%d devices=%d sockets_connected=%d writable=%d release_agents_writable=%d",
		c.Status["Seccomp"], c.Status["NoNewPrivs"], c.Status["CapEff"], c.Status["CapBnd"], c.UIDMap, c.PID,
		len(c.Mounts), len(c.Devices), count(c.UnixSockets, "connected"),
		count(c.Writable, "writable"), count(c.ReleaseAgent, "writable"))
}

func mounts() []mount {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	return parseMountinfo(string(b))
}

// parseMountinfo reads lines such as
// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw".
func parseMountinfo(s string) []mount {
	var out []mount
	for _, line := range strings.Split(s, "\n") {
		before, after, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(before), strings.Fields(after)
		if !ok || len(f) < 6 || len(g) < 2 {
			continue
		}
		out = append(out, mount{Point: f[4], Root: f[3], Options: f[5], FSType: g[0], Source: g[1]})
	}
	return out
}

// devices lists /dev, a type letter (c, b, d, l, s, p or -) before each path.
func devices() []string {
	var out []string
	filepath.WalkDir("/dev", func(p string, d fs.DirEntry, err error) error {
		if err != nil || len(out) >= 200 {
			return nil
		}
		t := d.Type()
		letter := "-"
		switch {
		case t&fs.ModeCharDevice != 0:
			letter = "c"
		case t&fs.ModeDevice != 0:
			letter = "b"
		case t.IsDir():
			letter = "d"
		case t&fs.ModeSymlink != 0:
			letter = "l"
		case t&fs.ModeSocket != 0:
			letter = "s"
		case t&fs.ModeNamedPipe != 0:
			letter = "p"
		}
		out = append(out, letter+" "+p)
		return nil
	})
	return out
}

// unixSocketPaths are the well-known host sockets and, at most 100 in all,
// the named sockets /proc/net/unix lists ("@name" for abstract ones).
func unixSocketPaths() []string {
	paths := append([]string(nil), hostSockets...)
	b, _ := os.ReadFile("/proc/net/unix")
	lines := strings.Split(string(b), "\n")
	var listed []string
	for _, line := range lines[min(1, len(lines)):] {
		if f := strings.Fields(line); len(f) >= 8 {
			listed = append(listed, f[7])
		}
	}
	slices.Sort(listed)
	for _, p := range listed {
		if len(paths) >= 100 {
			break
		}
		if !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	return paths
}

// writable is "writable" if path opens for writing (a directory: if
// access(2) allows writing), else the errno. It writes nothing.
func writable(path string) string {
	if info, err := os.Stat(path); err == nil && info.IsDir() {
		if err := unix.Access(path, unix.W_OK); err != nil {
			return errnoOr(err)
		}
		return "writable"
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return errnoOr(err)
	}
	f.Close()
	return "writable"
}

func idMap(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return errnoOr(err)
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

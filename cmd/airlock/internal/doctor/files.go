package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/airlock/airlock/sandbox/footprint"
)

// checkStateDir checks the state dir airlockd keeps job dirs and its
// private containerd in. Whoever can write it, or rename it through a
// parent, can plant a job's input or swap containerd's socket.
func checkStateDir(_ context.Context, e *env) result {
	var f findings
	dir := absPath(e.cfg.StateDir)
	const fixMode = "chown root:root %s && chmod 0711 %s"
	st, err := os.Stat(dir)
	exists := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		f.add(Fail, fmt.Sprintf("cannot stat %s: %v", dir, err), "run airlock doctor as root")
	case !st.IsDir():
		f.add(Fail, dir+" is not a directory", "remove it or pass another --state-dir")
	default:
		if real, err := filepath.EvalSymlinks(dir); err == nil && real != dir {
			dir = real
		}
		fix := fmt.Sprintf(fixMode, dir, dir)
		if uid := owner(st); uid != e.cfg.owner {
			f.add(Fail, fmt.Sprintf("%s is owned by uid %d, not %s, who can then change anything below it", dir, uid, uidName(e.cfg.owner)), fix)
		}
		if p := st.Mode().Perm(); p&0o022 != 0 {
			f.add(Fail, fmt.Sprintf("%s has mode %#o: other users can write job dirs or replace containerd's socket", dir, p), fix)
		} else if p&0o044 != 0 {
			f.add(Warn, fmt.Sprintf("%s has mode %#o: other users can list job ids", dir, p), fix)
		}
		for _, sub := range []string{"jobs", "containerd"} {
			p := filepath.Join(dir, sub)
			if st, err := os.Stat(p); err == nil && st.Mode().Perm()&0o022 != 0 {
				f.add(Fail, fmt.Sprintf("%s has mode %#o: other users can write it", p, st.Mode().Perm()), fmt.Sprintf("chmod 0711 %s", p))
			}
		}
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil {
			p := st.Mode().Perm()
			sticky := st.Mode()&fs.ModeSticky != 0
			switch {
			case p&0o002 != 0 && !sticky:
				f.add(Fail, fmt.Sprintf("parent %s has mode %#o: any user can rename the state dir and put their own in its place", d, p), "chmod o-w "+d+", or pass a --state-dir under a directory only root can write")
			case p&0o020 != 0 && !sticky && gid(st) != 0:
				f.add(Fail, fmt.Sprintf("parent %s is writable by group %d, whose members can rename the state dir", d, gid(st)), "chmod g-w "+d)
			case owner(st) != 0 && owner(st) != e.cfg.owner:
				f.add(Fail, fmt.Sprintf("parent %s is owned by uid %d, who can rename the state dir", d, owner(st)), "pass a --state-dir under directories owned by root")
			}
		}
		if d == "/" {
			break
		}
	}
	// Unknown profiles only warn: profiles.invariants already fails them,
	// and the fixed ones may not use a user namespace.
	users, known := e.needsUserNS()
	if !known || len(users) > 0 {
		sev, who := Fail, "profiles "+strings.Join(users, ", ")+" use isolation.userNamespace or runsc"
		if !known {
			sev, who = Warn, "the profiles did not load; it matters if one uses isolation.userNamespace or runsc"
		}
		if err := footprint.CheckTraversable(dir); err != nil {
			f.add(sev, fmt.Sprintf("%v; %s", err, who), "chmod o+x on each directory named, or move the state dir")
		}
	}
	if !exists {
		return f.result(dir + " does not exist yet; airlockd creates it with mode 0711")
	}
	return f.result(fmt.Sprintf("%s is owned by %s, mode %#o", dir, uidName(e.cfg.owner), st.Mode().Perm()))
}

// checkSocket checks the unix socket airlockd serves on, if it is there.
// Whoever can connect can present tokens, so only root should; and a file
// that is not a socket stops airlockd from starting.
func checkSocket(_ context.Context, e *env) result {
	var f findings
	path := absPath(e.cfg.Socket)
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if e.cfg.Listen != "" {
			return result{ok: true, detail: path + " not present; airlockd serves --listen " + e.cfg.Listen}
		}
		return result{ok: true, detail: path + " not present (airlockd is not running); it creates the socket with mode 0600"}
	case err != nil:
		f.add(Warn, fmt.Sprintf("cannot stat %s: %v", path, err), "run airlock doctor as root")
		return f.result("")
	}
	fix := fmt.Sprintf("restart airlockd, which recreates %s with mode 0600 owned by root", path)
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		f.add(Fail, path+" is a symlink; airlockd would replace whatever it points to", "remove "+path)
	case st.Mode()&fs.ModeSocket == 0:
		f.add(Fail, fmt.Sprintf("%s is not a socket (mode %v); airlockd refuses to start rather than replace it", path, st.Mode()), "remove "+path+" or pass another --socket")
	}
	if p := st.Mode().Perm(); p&0o077 != 0 {
		f.add(Fail, fmt.Sprintf("%s has mode %#o, so other users can connect and guess tokens", path, p), fix)
	}
	if uid := owner(st); uid != e.cfg.owner {
		f.add(Fail, fmt.Sprintf("%s is owned by uid %d, not %s", path, uid, uidName(e.cfg.owner)), fix)
	}
	parent := filepath.Dir(path)
	if pst, err := os.Stat(parent); err == nil && pst.Mode().Perm()&0o002 != 0 && pst.Mode()&fs.ModeSticky == 0 {
		f.add(Fail, fmt.Sprintf("%s has mode %#o: any user can replace the socket with their own", parent, pst.Mode().Perm()), "chmod 0700 "+parent)
	}
	return f.result(fmt.Sprintf("%s is a socket, mode %#o, owned by %s", path, st.Mode().Perm(), uidName(e.cfg.owner)))
}

func owner(st fs.FileInfo) int {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(s.Uid)
	}
	return -1
}

func gid(st fs.FileInfo) int {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(s.Gid)
	}
	return -1
}

func uidName(uid int) string {
	if uid == 0 {
		return "root"
	}
	return fmt.Sprintf("uid %d", uid)
}

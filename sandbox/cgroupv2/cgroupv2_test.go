package cgroupv2

import (
	"bufio"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// fakeCgroupFS is a cgroupfs directory tree (cgroup.procs,
// cgroup.controllers, cgroup.subtree_control, cgroup.type) whose writes
// behave as the kernel's do: a pid written to a cgroup.procs leaves the
// cgroup it was in, a controller is enabled only if available and only
// while the cgroup (unless it is the hierarchy's root) holds no process,
// and a new cgroup gets its parent's enabled controllers as available.
type fakeCgroupFS struct {
	t    *testing.T
	root string
	// readOnly fails every mkdir with EROFS, as a read-only mount does.
	readOnly bool
	// moveErr fails the move of these pids.
	moveErr map[string]error
	// enableErr fails enabling these controllers.
	enableErr map[string]error
	// ignored controllers are accepted by the write but never enabled.
	ignored []string
	// forks are pids that appear in the root, one per move, as processes
	// forked while Delegate runs; forkForever makes a new one every time.
	forks       []string
	forkForever bool
	forked      int
}

// newFake is a namespace root (it has cgroup.type) holding procs, with
// the controllers available and enabled as given.
func newFake(t *testing.T, procs, controllers, subtree string) *fakeCgroupFS {
	t.Helper()
	f := &fakeCgroupFS{t: t, root: t.TempDir()}
	f.put("cgroup.procs", procs)
	f.put("cgroup.controllers", controllers)
	f.put("cgroup.subtree_control", subtree)
	f.put("cgroup.type", "domain\n")
	return f
}

func (f *fakeCgroupFS) put(name, content string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.root, name), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeCgroupFS) fields(name string) []string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.root, name))
	if err != nil {
		f.t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func (f *fakeCgroupFS) ReadFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(f.root, name))
}

func (f *fakeCgroupFS) Mkdir(name string) error {
	if f.readOnly {
		return &fs.PathError{Op: "mkdir", Path: name, Err: syscall.EROFS}
	}
	dir := filepath.Join(f.root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	parent, err := os.ReadFile(filepath.Join(filepath.Dir(dir), "cgroup.subtree_control"))
	if err != nil {
		return err
	}
	f.put(filepath.Join(name, "cgroup.procs"), "")
	f.put(filepath.Join(name, "cgroup.controllers"), string(parent))
	f.put(filepath.Join(name, "cgroup.subtree_control"), "")
	f.put(filepath.Join(name, "cgroup.type"), "domain\n")
	return nil
}

func (f *fakeCgroupFS) WriteFile(name string, data []byte) error {
	v := strings.TrimSpace(string(data))
	dir := filepath.Dir(name)
	switch filepath.Base(name) {
	case "cgroup.procs":
		from := f.cgroupOf(v)
		if err := f.moveErr[v]; err != nil {
			if errors.Is(err, syscall.ESRCH) && from != "" {
				// It exited: the kernel lists it nowhere any more.
				f.setProcs(from, slices.DeleteFunc(f.fields(filepath.Join(from, "cgroup.procs")), func(p string) bool { return p == v }))
			}
			return err
		}
		if from == "" {
			return syscall.ESRCH
		}
		f.setProcs(from, slices.DeleteFunc(f.fields(filepath.Join(from, "cgroup.procs")), func(p string) bool { return p == v }))
		f.setProcs(dir, append(f.fields(filepath.Join(dir, "cgroup.procs")), v))
		if f.forkForever || f.forked < len(f.forks) {
			pid := "9000"
			if f.forked < len(f.forks) {
				pid = f.forks[f.forked]
			}
			f.forked++
			f.setProcs(".", append(f.fields("cgroup.procs"), pid))
		}
		return nil
	case "cgroup.subtree_control":
		ctl, ok := strings.CutPrefix(v, "+")
		if !ok || strings.ContainsAny(ctl, " +-") {
			return syscall.EINVAL
		}
		if err := f.enableErr[ctl]; err != nil {
			return err
		}
		if !slices.Contains(f.fields(filepath.Join(dir, "cgroup.controllers")), ctl) {
			return syscall.ENOENT
		}
		_, err := os.Stat(filepath.Join(f.root, dir, "cgroup.type"))
		if err == nil && len(f.fields(filepath.Join(dir, "cgroup.procs"))) > 0 {
			return syscall.EBUSY // the no-internal-processes rule
		}
		if slices.Contains(f.ignored, ctl) {
			return nil
		}
		f.put(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(append(f.fields(filepath.Join(dir, "cgroup.subtree_control")), ctl), " ")+"\n")
		return nil
	}
	return syscall.EINVAL
}

// cgroupOf is the cgroup, relative to the root, whose cgroup.procs lists
// pid; "" if none.
func (f *fakeCgroupFS) cgroupOf(pid string) string {
	var found string
	filepath.WalkDir(f.root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "cgroup.procs" {
			rel, _ := filepath.Rel(f.root, filepath.Dir(p))
			if slices.Contains(f.fields(filepath.Join(rel, "cgroup.procs")), pid) {
				found = rel
			}
		}
		return err
	})
	return found
}

func (f *fakeCgroupFS) setProcs(dir string, pids []string) {
	f.put(filepath.Join(dir, "cgroup.procs"), strings.Join(pids, "\n"))
}

// snapshot is every file of the tree with its content.
func (f *fakeCgroupFS) snapshot() map[string]string {
	f.t.Helper()
	out := map[string]string{}
	filepath.WalkDir(f.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(f.root, p)
		out[rel] = "dir"
		if !d.IsDir() {
			b, _ := os.ReadFile(p)
			out[rel] = string(b)
		}
		return nil
	})
	return out
}

// run calls Delegate on the fake, unified or not, with /proc/self/cgroup
// saying self.
func (f *fakeCgroupFS) run(unified bool, self string) (Result, error) {
	f.t.Helper()
	selfFile := filepath.Join(f.t.TempDir(), "cgroup")
	if err := os.WriteFile(selfFile, []byte(self), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return Delegate(WithRoot(f.root), WithSelfCgroup(selfFile), func(c *config) {
		c.fs = f
		c.isUnified = func(string) (bool, error) { return unified, nil }
	})
}

const (
	inNamespaceRoot = "0::/\n"
	allControllers  = "cpuset cpu io memory hugetlb pids rdma misc\n"
)

func TestDelegate_MovesTheContainersProcessesAndEnablesEveryController(t *testing.T) {
	f := newFake(t, "1\n17\n42\n", allControllers, "")
	res, err := f.run(true, inNamespaceRoot)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Fields(allControllers)
	if res.Outcome != Delegated || res.Moved != 3 || !slices.Equal(res.Enabled, want) {
		t.Errorf("Delegate = %+v, want Delegated, 3 moved, %v enabled", res, want)
	}
	if got := f.fields("cgroup.procs"); len(got) != 0 {
		t.Errorf("the container's cgroup still holds %v", got)
	}
	if got := f.fields("init/cgroup.procs"); !slices.Equal(got, []string{"1", "17", "42"}) {
		t.Errorf("init holds %v, want 1 17 42", got)
	}
	if got := f.fields("cgroup.subtree_control"); !slices.Equal(got, want) {
		t.Errorf("subtree_control = %v, want %v", got, want)
	}
	// What runc does next for a job: a child cgroup gets the controllers.
	if err := f.Mkdir("airlock"); err != nil {
		t.Fatal(err)
	}
	if got := f.fields("airlock/cgroup.controllers"); !slices.Contains(got, "memory") || !slices.Contains(got, "pids") || !slices.Contains(got, "cpu") {
		t.Errorf("a job's cgroup gets the controllers %v; want memory, pids and cpu among them", got)
	}
}

// TestDelegate_EnablesOnlyWhatIsMissing: controllers already enabled are
// not written again, and a partly delegated cgroup is finished.
func TestDelegate_EnablesOnlyWhatIsMissing(t *testing.T) {
	f := newFake(t, "1\n", "cpu memory pids\n", "memory\n")
	res, err := f.run(true, inNamespaceRoot)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != Delegated || !slices.Equal(res.Enabled, []string{"cpu", "pids"}) {
		t.Errorf("Delegate = %+v, want cpu and pids enabled", res)
	}
}

// TestDelegate_MovesProcessesForkedMeanwhile: a process forked into the
// root while the first round runs is moved by the next; one that exited
// before its move needs none.
func TestDelegate_MovesProcessesForkedMeanwhile(t *testing.T) {
	f := newFake(t, "1\n17\n", allControllers, "")
	f.forks = []string{"18", "19"}
	f.moveErr = map[string]error{"17": syscall.ESRCH}
	res, err := f.run(true, inNamespaceRoot)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.fields("init/cgroup.procs"); !slices.Equal(got, []string{"1", "18", "19"}) || res.Moved != 3 {
		t.Errorf("init holds %v, %d moved; want 1 18 19, 3", got, res.Moved)
	}
}

// TestDelegate_LeavesAloneWhatIsNotItsOwn: nothing is read past the
// checks or written when the hierarchy is not cgroup v2, when the process
// lives below its namespace's root (a systemd slice, or a container in
// the host's cgroup namespace), when its cgroup is the hierarchy's true
// root, or when the controllers are already delegated.
func TestDelegate_LeavesAloneWhatIsNotItsOwn(t *testing.T) {
	tests := []struct {
		name    string
		unified bool
		self    string
		edit    func(*fakeCgroupFS)
		want    Outcome
	}{
		{"a cgroup v1 or hybrid host", false, inNamespaceRoot, nil, NotUnified},
		{"a systemd service", true, "0::/system.slice/airlockd.service\n", nil, NotNamespaceRoot},
		{"a container in the host's cgroup namespace", true, "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope\n", nil, NotNamespaceRoot},
		{"outside its namespace's root", true, "0::/../sibling\n", nil, NotNamespaceRoot},
		{"a hybrid host's lines before the v2 one", true, "12:pids:/\n1:name=systemd:/\n0::/user.slice\n", nil, NotNamespaceRoot},
		{"the hierarchy's true root", true, inNamespaceRoot, func(f *fakeCgroupFS) { os.Remove(filepath.Join(f.root, "cgroup.type")) }, HierarchyRoot},
		{"already delegated", true, inNamespaceRoot, func(f *fakeCgroupFS) { f.put("cgroup.subtree_control", allControllers) }, AlreadyDelegated},
		{"no controllers at all", true, inNamespaceRoot, func(f *fakeCgroupFS) { f.put("cgroup.controllers", "") }, AlreadyDelegated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, "1\n17\n", allControllers, "")
			if tt.edit != nil {
				tt.edit(f)
			}
			before := f.snapshot()
			res, err := f.run(tt.unified, tt.self)
			if err != nil || res.Outcome != tt.want {
				t.Fatalf("Delegate = %+v, %v; want %v", res, err, tt.want)
			}
			if after := f.snapshot(); !maps.Equal(before, after) {
				t.Errorf("the tree changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// TestDelegate_RefusesWithTheReason: every way the delegation can fail is
// an ErrDelegate naming the step and why, never a start without limits.
func TestDelegate_RefusesWithTheReason(t *testing.T) {
	tests := []struct {
		name string
		self string
		edit func(*fakeCgroupFS)
		want []string
	}{
		{"a read-only cgroup mount", inNamespaceRoot, func(f *fakeCgroupFS) { f.readOnly = true },
			[]string{"create", "/init", "read-only", "privileged container"}},
		{"a process that may not be moved", inNamespaceRoot, func(f *fakeCgroupFS) { f.moveErr = map[string]error{"17": syscall.EACCES} },
			[]string{"move process 17 to /init", "permission denied", "privileged container"}},
		{"processes that keep appearing", inNamespaceRoot, func(f *fakeCgroupFS) { f.forkForever = true },
			[]string{"kept appearing", "8 rounds"}},
		{"a controller the kernel refuses", inNamespaceRoot, func(f *fakeCgroupFS) { f.enableErr = map[string]error{"cpu": syscall.EINVAL} },
			[]string{"enable controller cpu", "invalid argument"}},
		{"a controller the kernel does not keep", inNamespaceRoot, func(f *fakeCgroupFS) { f.ignored = []string{"pids"} },
			[]string{"controller pids is still not enabled"}},
		{"a threaded cgroup", inNamespaceRoot, func(f *fakeCgroupFS) { f.moveErr = map[string]error{"1": syscall.EOPNOTSUPP} },
			[]string{"move process 1", "threaded"}},
		{"a pid that is not a number", inNamespaceRoot, func(f *fakeCgroupFS) { f.put("cgroup.procs", "1\nx\n") },
			[]string{`lists "x"`}},
		{"no cgroup.controllers", inNamespaceRoot, func(f *fakeCgroupFS) { os.Remove(filepath.Join(f.root, "cgroup.controllers")) },
			[]string{"cgroup.controllers"}},
		{"no cgroup v2 line on a cgroup v2 mount", "1:name=systemd:/\n", nil,
			[]string{"no cgroup v2 (0::) line"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, "1\n17\n", allControllers, "")
			if tt.edit != nil {
				tt.edit(f)
			}
			_, err := f.run(true, tt.self)
			if !errors.Is(err, ErrDelegate) {
				t.Fatalf("Delegate = %v, want ErrDelegate", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestIsCgroup2Mount_AgreesWithMountinfo checks the real statfs against
// the kernel's mount table, on whatever this host mounts at
// /sys/fs/cgroup (and /sys/fs/cgroup/unified on a hybrid host).
func TestIsCgroup2Mount_AgreesWithMountinfo(t *testing.T) {
	fstypes := mountTypes(t)
	checked := 0
	for _, dir := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		typ, ok := fstypes[dir]
		if !ok {
			continue
		}
		got, err := isCgroup2Mount(dir)
		if err != nil {
			t.Fatal(err)
		}
		if want := typ == "cgroup2"; got != want {
			t.Errorf("isCgroup2Mount(%s) = %v; mountinfo says %s", dir, got, typ)
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("nothing mounted at /sys/fs/cgroup")
	}
	if got, err := isCgroup2Mount(filepath.Join(t.TempDir(), "absent")); got || err != nil {
		t.Errorf("an absent dir: %v, %v; want false, nil", got, err)
	}
}

// TestOSFS_WritesExistingFilesOnly: a cgroup file is written in place,
// never created; a misspelt name must fail, not leave a stray file.
func TestOSFS_WritesExistingFilesOnly(t *testing.T) {
	dir := t.TempDir()
	fsys := osFS{root: dir}
	if err := fsys.WriteFile("cgroup.subtree_contol", []byte("+memory")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("write to a missing file: %v, want ErrNotExist", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fsys.WriteFile("cgroup.procs", []byte("42\n")); err != nil {
		t.Fatal(err)
	}
	if b, _ := fsys.ReadFile("cgroup.procs"); string(b) != "42" {
		t.Errorf("cgroup.procs = %q, want 42 written in one write", b)
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, maxFileBytes+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := fsys.ReadFile("big"); err == nil {
		t.Error("a file over the cap was read")
	}
}

func mountTypes(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, rest := strings.Fields(pre), strings.Fields(post)
		if ok && len(fields) >= 5 && len(rest) >= 1 {
			out[fields[4]] = rest[0]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

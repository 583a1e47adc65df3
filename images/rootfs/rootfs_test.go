package rootfs_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/images/rootfs"
	"github.com/airlock/airlock/images/rootfs/rootfstest"
)

// tree lays out a small root filesystem with what a Debian rootfs has that
// an image must not: a setuid binary, a setgid directory, absolute links
// and a relative one that climbs past the root.
func tree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]os.FileMode{
		"usr/bin/python3.11":                0o755,
		"usr/bin/su":                        0o755 | os.ModeSetuid,
		"lib/x86_64-linux-gnu/libc.so.6":    0o644,
		"usr/lib/python3.11/encodings/a.py": 0o644,
		"app/agent.py":                      0o644,
	}
	for name, mode := range files {
		p := filepath.Join(dir, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(name), 0o644))
		must(t, os.Chmod(p, mode))
	}
	must(t, os.Mkdir(filepath.Join(dir, "var"), 0o755))
	must(t, os.Chmod(filepath.Join(dir, "var"), 0o2775|os.ModeSetgid))
	must(t, os.MkdirAll(filepath.Join(dir, "usr/local/bin"), 0o755))
	must(t, os.Symlink("/usr/bin/python3.11", filepath.Join(dir, "usr/local/bin/python3")))
	must(t, os.Mkdir(filepath.Join(dir, "lib64"), 0o755))
	must(t, os.Symlink("/lib/x86_64-linux-gnu/libc.so.6", filepath.Join(dir, "lib64/libc.so.6")))
	must(t, os.Symlink("../../../../../etc/passwd", filepath.Join(dir, "usr/bin/climber")))
	return dir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var entrypoint = []string{"/usr/local/bin/python3", "-I", "/app/agent.py"}

func build(t *testing.T, dir string, opts ...rootfs.Option) (string, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(out)
	must(t, err)
	_, err = rootfs.Build(f, dir, "python-agent", entrypoint, opts...)
	must(t, f.Close())
	return out, err
}

func TestBuild_AnImportableImageWithNothingAnImportRefuses(t *testing.T) {
	out, err := build(t, tree(t), rootfs.WithEnv([]string{"PATH=/usr/bin"}))
	if err != nil {
		t.Fatal(err)
	}
	img, err := rootfstest.Check(out)
	if err != nil {
		t.Fatalf("the image fails the import's rules: %v", err)
	}
	cfg := img.Config.Config
	if !slices.Equal(cfg.Entrypoint, entrypoint) || cfg.User != images.NobodyUser || !slices.Equal(cfg.Env, []string{"PATH=/usr/bin"}) {
		t.Errorf("config = %+v", cfg)
	}
	if got := img.Annotations["io.containerd.image.name"]; got != images.ImageRef("python-agent") {
		t.Errorf("image name annotation = %q", got)
	}
	for _, tc := range []struct {
		path string
		typ  byte
		mode int64
		link string
	}{
		{"/usr/bin/su", tar.TypeReg, 0o755, ""},
		{"/var", tar.TypeDir, 0o775, ""},
		{"/usr/local/bin/python3", tar.TypeSymlink, 0o777, "../../bin/python3.11"},
		{"/lib64/libc.so.6", tar.TypeSymlink, 0o777, "../lib/x86_64-linux-gnu/libc.so.6"},
		{"/usr/bin/climber", tar.TypeSymlink, 0o777, "../../etc/passwd"},
		{"/tmp", tar.TypeDir, 0o1777, ""},
		{"/input", tar.TypeDir, 0o755, ""},
		{"/output", tar.TypeDir, 0o755, ""},
		{"/proc", tar.TypeDir, 0o555, ""},
	} {
		h, ok := img.Files[tc.path]
		if !ok {
			t.Errorf("%s is missing", tc.path)
			continue
		}
		if h.Typeflag != tc.typ || h.Mode != tc.mode || h.Linkname != tc.link || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: type %q mode %#o link %q mtime %v; want type %q mode %#o link %q at the epoch",
				tc.path, h.Typeflag, h.Mode, h.Linkname, h.ModTime, tc.typ, tc.mode, tc.link)
		}
	}
}

func TestBuild_WithUserSetsTheConfigsUserOnly(t *testing.T) {
	out, err := build(t, tree(t), rootfs.WithUser("0:0"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := rootfstest.Check(out)
	if err != nil {
		t.Fatalf("the image fails the import's rules: %v", err)
	}
	if got := img.Config.Config.User; got != "0:0" {
		t.Errorf("config user = %q, want 0:0", got)
	}
	// The layer's rules are the same whoever the image runs as.
	if h := img.Files["/usr/bin/su"]; h == nil || h.Mode != 0o755 {
		t.Errorf("/usr/bin/su = %+v, want mode 0755 (setuid stripped)", h)
	}
}

func TestBuild_SameTreeSameBytes(t *testing.T) {
	dir := tree(t)
	first, err := build(t, dir)
	must(t, err)
	// A rebuild later, from files touched since, is the same image.
	later := time.Now().Add(time.Hour)
	must(t, os.Chtimes(filepath.Join(dir, "app/agent.py"), later, later))
	second, err := build(t, dir)
	must(t, err)
	a, err := os.ReadFile(first)
	must(t, err)
	b, err := os.ReadFile(second)
	must(t, err)
	if !bytes.Equal(a, b) {
		t.Error("two builds of the same tree differ")
	}
}

func TestBuild_Refuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		opts  []rootfs.Option
		want  string
	}{
		{"a FIFO", func(t *testing.T, dir string) { must(t, unix.Mkfifo(filepath.Join(dir, "app/fifo"), 0o644)) }, nil, "/app/fifo is a FIFO"},
		{"a socket", func(t *testing.T, dir string) {
			l, err := net.Listen("unix", filepath.Join(dir, "app/sock"))
			must(t, err)
			t.Cleanup(func() { l.Close() })
		}, nil, "/app/sock is a socket"},
		{"a whiteout", func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, "app/.wh.agent.py"), nil, 0o644))
		}, nil, "/app/.wh.agent.py is a whiteout"},
		{"a mountpoint that is a file", func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, "output"), nil, 0o644))
		}, nil, "/output must be a directory"},
		{"a missing entrypoint", func(t *testing.T, dir string) {
			must(t, os.Remove(filepath.Join(dir, "usr/bin/python3.11")))
		}, nil, "/usr/bin/python3.11 is not in the image"},
		{"an entrypoint that is not executable", func(t *testing.T, dir string) {
			must(t, os.Chmod(filepath.Join(dir, "usr/bin/python3.11"), 0o644))
		}, nil, "is not an executable file"},
		{"an entrypoint in a symlink loop", func(t *testing.T, dir string) {
			must(t, os.Remove(filepath.Join(dir, "usr/bin/python3.11")))
			must(t, os.Symlink("python3.11", filepath.Join(dir, "usr/bin/python3.11")))
		}, nil, "too many levels of symbolic links"},
		{"files over the cap", func(*testing.T, string) {}, []rootfs.Option{rootfs.WithMaxBytes(16)}, "over 16 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tree(t)
			tc.setup(t, dir)
			_, err := build(t, dir, tc.opts...)
			if !errors.Is(err, rootfs.ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build = %v, want %v mentioning %q", err, rootfs.ErrRefused, tc.want)
			}
		})
	}
}

func TestBuild_LeavesNoScratchBehind(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	if _, err := build(t, tree(t)); err != nil {
		t.Fatal(err)
	}
	// Refused once the layer is half written.
	if _, err := build(t, tree(t), rootfs.WithMaxBytes(16)); err == nil {
		t.Fatal("a tree over the cap was built")
	}
	left, err := os.ReadDir(tmp)
	must(t, err)
	if len(left) != 0 {
		t.Errorf("Build left %v in TMPDIR", left)
	}
}

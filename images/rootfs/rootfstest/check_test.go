package rootfstest_test

import (
	"archive/tar"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/airlock/airlock/images/agentimage"
	"github.com/airlock/airlock/images/agentimage/agentimagetest"
	"github.com/airlock/airlock/images/rootfs/rootfstest"
)

type entry = agentimagetest.Entry

var agent = entry{Name: "app/agent", Mode: 0o555, Data: []byte("#!agent")}

// tarball writes an image of one layer of the mountpoints and entries,
// whose config runs /app/agent, as rootfs lays one out: one manifest, for
// the host's platform unless platform says otherwise.
func tarball(t *testing.T, platform *v1.Platform, entries ...entry) string {
	t.Helper()
	layer := agentimagetest.Layer(t, append(agentimagetest.MountPoints(), entries...)...)
	img := agentimagetest.Image(t, runtime.GOARCH, &v1.Config{Entrypoint: []string{"/app/agent"}}, layer)
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	var opts []layout.Option
	if platform != nil {
		opts = append(opts, layout.WithPlatform(*platform))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		t.Fatal(err)
	}
	return agentimagetest.TarDir(t, dir)
}

var host = &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}

func TestCheck_ReadsAnImageAsAnImportDoes(t *testing.T) {
	img, err := rootfstest.Check(tarball(t, host, agent, entry{Name: "app/run", Type: tar.TypeSymlink, Link: "agent"}))
	if err != nil {
		t.Fatal(err)
	}
	if h := img.Files["/app/agent"]; h == nil || h.Typeflag != tar.TypeReg || h.Mode != 0o555 {
		t.Errorf("/app/agent = %+v", h)
	}
	if got, err := img.Resolve("/app/run"); err != nil || got != "/app/agent" {
		t.Errorf("Resolve(/app/run) = %q, %v", got, err)
	}
}

// TestCheck_RefusesWhatAnImportRefuses: the import's reading decides, and
// says so with agentimage.ErrRefused.
func TestCheck_RefusesWhatAnImportRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry entry
		want  string
	}{
		{"a setuid file", entry{Name: "app/su", Mode: 0o4755, Data: []byte("x")}, "a setuid file"},
		{"a device", entry{Name: "app/null", Type: tar.TypeChar}, "a device node"},
		{"a whiteout", entry{Name: "app/.wh.old", Data: []byte("")}, "a whiteout"},
		{"an absolute symlink", entry{Name: "app/passwd", Type: tar.TypeSymlink, Link: "/etc/passwd"}, "an absolute symlink"},
		{"a symlink out of the root", entry{Name: "app/up", Type: tar.TypeSymlink, Link: "../../x"}, "leads out of the root"},
		{"a file capability", entry{Name: "app/cap", Data: []byte("x"), PAX: map[string]string{"SCHILY.xattr.security.capability": "x"}}, "an extended attribute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rootfstest.Check(tarball(t, host, agent, tc.entry))
			if !errors.Is(err, agentimage.ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check = %v, want %v mentioning %q", err, agentimage.ErrRefused, tc.want)
			}
		})
	}
}

// TestCheck_RefusesWhatRootfsNeverWrites: an import takes each of these
// images, but rootfs promises more.
func TestCheck_RefusesWhatRootfsNeverWrites(t *testing.T) {
	for _, tc := range []struct {
		name     string
		platform *v1.Platform
		entries  []entry
		want     string
	}{
		{"a setgid directory", host, []entry{agent, {Name: "var/", Type: tar.TypeDir, Mode: 0o2775}}, "/var has setuid or setgid"},
		{"a file not root's", host, []entry{agent, {Name: "app/data", Data: []byte("x"), UID: 1000, GID: 1000}}, "owned by 1000:1000"},
		{"a hard link", host, []entry{agent, {Name: "app/again", Type: tar.TypeLink, Link: "app/agent"}}, "/app/again is of tar type"},
		{"a manifest without a platform", nil, []entry{agent}, "manifest platform"},
		{"a missing entrypoint", host, nil, "/app/agent is not in the image"},
		{"an entrypoint that is not executable", host, []entry{{Name: "app/agent", Mode: 0o644, Data: []byte("x")}}, "not an executable file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := tarball(t, tc.platform, tc.entries...)
			if _, done, err := agentimage.Read(file, t.TempDir(), agentimage.DefaultLimits); err != nil {
				t.Fatalf("an import refuses it already: %v", err)
			} else if err := done(); err != nil {
				t.Fatal(err)
			}
			if _, err := rootfstest.Check(file); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestUnpack_WritesTheRootFilesystem(t *testing.T) {
	dst := t.TempDir()
	if _, err := rootfstest.Unpack(tarball(t, host, agent, entry{Name: "app/run", Type: tar.TypeSymlink, Link: "agent"}), dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "app/run")); err != nil || string(b) != "#!agent" {
		t.Errorf("app/run reads %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "tmp")); err != nil || !fi.IsDir() {
		t.Errorf("tmp: %v, %v", fi, err)
	}
}

package agentimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is one file of a hand-built layer.
type entry struct {
	name, link string
	typ        byte
	mode       int64
	data       string
	pax        map[string]string
}

func layerOf(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o755
		}
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: typ, Mode: mode, Size: int64(len(e.data)), PAXRecords: e.pax, Format: tar.FormatPAX}
		if typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// skeleton is a layer with the mount points and an agent.
func skeleton(t *testing.T) v1.Layer {
	dirs := []entry{}
	for _, d := range []string{"dev/", "input/", "output/", "proc/", "run/", "tmp/", "app/"} {
		dirs = append(dirs, entry{name: d, typ: tar.TypeDir})
	}
	return layerOf(t, append(dirs, entry{name: "app/agent", data: "#!agent"})...)
}

func imageOf(t *testing.T, arch string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	cfg.Config.User = "root"
	cfg.Config.Env = []string{"AWS_SECRET_ACCESS_KEY=x"}
	cfg.Config.Entrypoint = []string{"/app/agent"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// ociTarball writes imgs as an OCI layout tarball and returns its path.
func ociTarball(t *testing.T, imgs ...v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		if err := p.AppendImage(img); err != nil {
			t.Fatal(err)
		}
	}
	return tarDir(t, dir)
}

func tarDir(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir).(fs.FS)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

func dockerTarball(t *testing.T, img v1.Image) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image.tar")
	tag, err := name.NewTag("example.com/agent:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		t.Fatal(err)
	}
	return out
}

func read(t *testing.T, file string, lim Limits) (*Image, error) {
	t.Helper()
	work := t.TempDir()
	img, closeFn, err := Read(file, work, lim)
	if err == nil {
		t.Cleanup(func() { _ = closeFn() })
	}
	left, _ := os.ReadDir(work)
	if err != nil && len(left) > 0 {
		t.Errorf("a refused read left %d entries in the work dir", len(left))
	}
	return img, err
}

func TestRead_OCILayout(t *testing.T) {
	want := imageOf(t, "amd64", skeleton(t))
	img, err := read(t, ociTarball(t, want), DefaultLimits)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	d, _ := want.Digest()
	if img.Digest != d.String() {
		t.Errorf("digest %s, want the layout's own manifest digest %s", img.Digest, d)
	}
	if img.Config.Config.User != "root" || img.Size == 0 {
		t.Errorf("config user %q size %d", img.Config.Config.User, img.Size)
	}
}

func TestRead_DockerSave(t *testing.T) {
	img, err := read(t, dockerTarball(t, imageOf(t, "amd64", skeleton(t))), DefaultLimits)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if !strings.HasPrefix(img.Digest, "sha256:") || img.Config.Config.Entrypoint[0] != "/app/agent" {
		t.Errorf("digest %q entrypoint %v", img.Digest, img.Config.Config.Entrypoint)
	}
}

func TestRead_PicksTheHostPlatformFromAnIndex(t *testing.T) {
	amd := imageOf(t, "amd64", skeleton(t))
	arm := imageOf(t, "arm64", skeleton(t))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	img, err := read(t, tarDir(t, dir), DefaultLimits)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if d, _ := amd.Digest(); img.Digest != d.String() {
		t.Errorf("picked %s, want the amd64 image %s", img.Digest, d)
	}
}

// TestRead_Refuses: each image is refused, with its reason.
func TestRead_Refuses(t *testing.T) {
	with := func(entries ...entry) string {
		return ociTarball(t, imageOf(t, "amd64", skeleton(t), layerOf(t, entries...)))
	}
	tests := []struct {
		name string
		file string
		lim  Limits
		want string
	}{
		{"setuid", with(entry{name: "app/su", mode: 0o4755, data: "x"}), DefaultLimits, `"app/su": a setuid file`},
		{"setgid", with(entry{name: "app/sg", mode: 0o2755, data: "x"}), DefaultLimits, `"app/sg": a setgid file`},
		{"device", with(entry{name: "dev/sda", typ: tar.TypeBlock}), DefaultLimits, `"dev/sda": a device node`},
		{"char device", with(entry{name: "app/mem", typ: tar.TypeChar}), DefaultLimits, `"app/mem": a device node`},
		{"fifo", with(entry{name: "app/pipe", typ: tar.TypeFifo}), DefaultLimits, `"app/pipe": a FIFO`},
		{"symlink escape", with(entry{name: "app/host", typ: tar.TypeSymlink, link: "../../etc/shadow"}), DefaultLimits, `leads out of the root filesystem`},
		{"absolute symlink", with(entry{name: "app/abs", typ: tar.TypeSymlink, link: "/etc/shadow"}), DefaultLimits, `an absolute symlink to "/etc/shadow"`},
		{"hardlink escape", with(entry{name: "app/hl", typ: tar.TypeLink, link: "../etc/shadow"}), DefaultLimits, `a hard link to "../etc/shadow"`},
		{"hardlink to nothing", with(entry{name: "app/hl", typ: tar.TypeLink, link: "etc/shadow"}), DefaultLimits, `not a regular file of the image before it`},
		{"dotdot", with(entry{name: "app/../../x", data: "x"}), DefaultLimits, `a '..' component`},
		{"whiteout", with(entry{name: "app/.wh.agent"}), DefaultLimits, `a whiteout`},
		{"opaque whiteout", with(entry{name: "app/.wh..wh..opq"}), DefaultLimits, `a whiteout`},
		{"file capability", with(entry{name: "app/cap", data: "x", pax: map[string]string{"SCHILY.xattr.security.capability": "\x01"}}), DefaultLimits, `an extended attribute`},
		{"wrong platform", ociTarball(t, imageOf(t, "arm64", skeleton(t))), DefaultLimits, `"arm64", not this host's linux/`},
		{"wrong platform, docker", dockerTarball(t, imageOf(t, "s390x", skeleton(t))), DefaultLimits, `the image is for "linux"/"s390x"`},
		{"size cap", with(entry{name: "app/big", data: strings.Repeat("x", 64<<10)}), Limits{MaxBytes: 32 << 10, MaxLayers: 8, MaxEntries: 100}, `over 32768 bytes uncompressed`},
		{"entry cap", with(entry{name: "app/a", data: "x"}), Limits{MaxBytes: 1 << 20, MaxLayers: 8, MaxEntries: 3}, `more than 3 files`},
		{"layer cap", with(entry{name: "app/a", data: "x"}), Limits{MaxBytes: 1 << 20, MaxLayers: 1, MaxEntries: 100}, `2 layers; at most 1`},
		{"no mount points", ociTarball(t, imageOf(t, "amd64", layerOf(t, entry{name: "agent", data: "x"}))), DefaultLimits, `lacks the directories /dev, /input`},
		{"two images", ociTarball(t, imageOf(t, "amd64", skeleton(t)), imageOf(t, "amd64", skeleton(t), layerOf(t, entry{name: "b", data: "b"}))), DefaultLimits, `holds 2 images`},
		{"escape sequence in a name", with(entry{name: "app/\x1b[31mred", mode: 0o4755, data: "x"}), DefaultLimits, `"app/\x1b[31mred": a setuid file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := read(t, tt.file, tt.lim)
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("Read: %v, want ErrRefused", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Read: %v\nwant the reason %q", err, tt.want)
			}
			if strings.ContainsRune(err.Error(), 0x1b) {
				t.Errorf("the reason carries a raw escape: %q", err.Error())
			}
		})
	}
}

func TestRead_RefusesWhatIsNoImage(t *testing.T) {
	f := filepath.Join(t.TempDir(), "x.tar")
	if err := os.WriteFile(f, []byte("not a tarball at all, just text that goes on for a while"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := read(t, f, DefaultLimits); !errors.Is(err, ErrRefused) {
		t.Fatalf("Read: %v, want ErrRefused", err)
	}
	// An OCI layout with a file of its own beside the layout's.
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(imageOf(t, "amd64", skeleton(t))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "evil"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := read(t, tarDir(t, dir), DefaultLimits); err == nil || !strings.Contains(err.Error(), `"evil"`) {
		t.Fatalf("Read: %v, want a refusal naming \"evil\"", err)
	}
}

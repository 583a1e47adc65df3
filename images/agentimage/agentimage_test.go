package agentimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/airlock/airlock/images/agentimage/agentimagetest"
	"github.com/airlock/airlock/images/rootfs"
)

// entry is agentimagetest.Entry, short for the tables below.
type entry = agentimagetest.Entry

func layerOf(t *testing.T, entries ...entry) v1.Layer { return agentimagetest.Layer(t, entries...) }

// skeleton is a layer with the mount points and an agent.
func skeleton(t *testing.T) v1.Layer {
	return layerOf(t, append(agentimagetest.MountPoints(), entry{Name: "app/agent", Data: []byte("#!agent")})...)
}

func imageOf(t *testing.T, arch string, layers ...v1.Layer) v1.Image {
	return agentimagetest.Image(t, arch, &v1.Config{User: "root", Env: []string{"AWS_SECRET_ACCESS_KEY=x"}, Entrypoint: []string{"/app/agent"}}, layers...)
}

var (
	ociTarball    = agentimagetest.OCILayout
	dockerTarball = agentimagetest.DockerSave
	tarDir        = agentimagetest.TarDir
)

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
	img, err := read(t, agentimagetest.OCIIndex(t, idx), DefaultLimits)
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
		{"setuid", with(entry{Name: "app/su", Mode: 0o4755, Data: []byte("x")}), DefaultLimits, `"app/su": a setuid file`},
		{"setgid", with(entry{Name: "app/sg", Mode: 0o2755, Data: []byte("x")}), DefaultLimits, `"app/sg": a setgid file`},
		{"device", with(entry{Name: "dev/sda", Type: tar.TypeBlock}), DefaultLimits, `"dev/sda": a device node`},
		{"char device", with(entry{Name: "app/mem", Type: tar.TypeChar}), DefaultLimits, `"app/mem": a device node`},
		{"fifo", with(entry{Name: "app/pipe", Type: tar.TypeFifo}), DefaultLimits, `"app/pipe": a FIFO`},
		{"symlink escape", with(entry{Name: "app/host", Type: tar.TypeSymlink, Link: "../../etc/shadow"}), DefaultLimits, `leads out of the root filesystem`},
		{"symlink through a symlink", with(entry{Name: "app/x", Type: tar.TypeSymlink, Link: "."}, entry{Name: "app/x/y", Type: tar.TypeSymlink, Link: ".."}), DefaultLimits, `beneath the symlink "app/x"`},
		{"symlink over a directory with entries", with(entry{Name: "app/d/f", Data: []byte("x")}, entry{Name: "app/d", Type: tar.TypeSymlink, Link: "."}), DefaultLimits, `a symlink in place of a directory`},
		{"absolute symlink", with(entry{Name: "app/abs", Type: tar.TypeSymlink, Link: "/etc/shadow"}), DefaultLimits, `an absolute symlink to "/etc/shadow"`},
		{"hardlink escape", with(entry{Name: "app/hl", Type: tar.TypeLink, Link: "../etc/shadow"}), DefaultLimits, `a hard link to "../etc/shadow"`},
		{"hardlink to nothing", with(entry{Name: "app/hl", Type: tar.TypeLink, Link: "etc/shadow"}), DefaultLimits, `not a regular file of the image before it`},
		{"dotdot", with(entry{Name: "app/../../x", Data: []byte("x")}), DefaultLimits, `a '..' component`},
		{"whiteout", with(entry{Name: "app/.wh.agent"}), DefaultLimits, `a whiteout`},
		{"opaque whiteout", with(entry{Name: "app/.wh..wh..opq"}), DefaultLimits, `a whiteout`},
		{"file capability", with(entry{Name: "app/cap", Data: []byte("x"), PAX: map[string]string{"SCHILY.xattr.security.capability": "\x01"}}), DefaultLimits, `an extended attribute`},
		{"wrong platform", ociTarball(t, imageOf(t, "arm64", skeleton(t))), DefaultLimits, `"arm64", not this host's linux/`},
		{"wrong platform, docker", dockerTarball(t, imageOf(t, "s390x", skeleton(t))), DefaultLimits, `the image is for "linux"/"s390x"`},
		{"size cap", with(entry{Name: "app/big", Data: []byte(strings.Repeat("x", 64<<10))}), Limits{MaxBytes: 32 << 10, MaxLayers: 8, MaxEntries: 100}, `over 32768 bytes uncompressed`},
		{"entry cap", with(entry{Name: "app/a", Data: []byte("x")}), Limits{MaxBytes: 1 << 20, MaxLayers: 8, MaxEntries: 3}, `more than 3 files`},
		{"layer cap", with(entry{Name: "app/a", Data: []byte("x")}), Limits{MaxBytes: 1 << 20, MaxLayers: 1, MaxEntries: 100}, `2 layers; at most 1`},
		{"no mount points", ociTarball(t, imageOf(t, "amd64", layerOf(t, entry{Name: "agent", Data: []byte("x")}))), DefaultLimits, `lacks the directories /dev, /input, /output, /proc, /run, /sys, /tmp`},
		{"two images", ociTarball(t, imageOf(t, "amd64", skeleton(t)), imageOf(t, "amd64", skeleton(t), layerOf(t, entry{Name: "b", Data: []byte("b")}))), DefaultLimits, `holds 2 images`},
		{"escape sequence in a name", with(entry{Name: "app/\x1b[31mred", Mode: 0o4755, Data: []byte("x")}), DefaultLimits, `"app/\x1b[31mred": a setuid file`},
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

// TestRead_AcceptsWhatRootfsBuilds: an image built by images/rootfs (what
// images/mkimage and the example agents use) from a tree with what a
// Debian root has and an image must not (a setuid binary, absolute links)
// is one import takes.
func TestRead_AcceptsWhatRootfsBuilds(t *testing.T) {
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"usr/bin/agent": 0o755 | os.ModeSetuid, "lib/libc.so.6": 0o644} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "lib64"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/lib/libc.so.6", filepath.Join(dir, "lib64/libc.so.6")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := rootfs.Build(f, dir, "my-agent", []string{"/usr/bin/agent"})
	if cerr := f.Close(); err != nil || cerr != nil {
		t.Fatalf("rootfs.Build: %v %v", err, cerr)
	}
	img, err := read(t, out, DefaultLimits)
	if err != nil {
		t.Fatalf("Read of what rootfs built: %v", err)
	}
	if img.Digest != want.String() {
		t.Errorf("digest %s, want the builder's %s", img.Digest, want)
	}
}

// A layout's manifest or config blob is read whole by the library: one
// bigger on disk than the cap is refused before it is read, whatever its
// descriptor claims.
func TestRead_RefusesAnOversizedConfigBlob(t *testing.T) {
	img := imageOf(t, "amd64", skeleton(t))
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(dir, "blobs", "sha256", m.Config.Digest.Hex)
	f, err := os.OpenFile(blob, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte(" "), maxMetaBytes)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = read(t, agentimagetest.TarDir(t, dir), DefaultLimits)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "config sha256:"+m.Config.Digest.Hex+" is") {
		t.Fatalf("Read: %v, want the oversized config refused", err)
	}
}

package images

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// hostFile writes data to a fresh file and returns its path.
func hostFile(t *testing.T, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func build(t *testing.T, spec Spec) ([]byte, digest.Digest) {
	t.Helper()
	var buf bytes.Buffer
	d, err := Build(&buf, spec)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return buf.Bytes(), d
}

// tarEntry is one member of a tarball, header and body.
type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, b []byte) (map[string]tarEntry, []string) {
	t.Helper()
	entries := map[string]tarEntry{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries, order
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read tar %s: %v", hdr.Name, err)
		}
		entries[hdr.Name] = tarEntry{hdr, data}
		order = append(order, hdr.Name)
	}
}

// image is a parsed layout tarball.
type image struct {
	outer    map[string]tarEntry
	index    v1.Index
	manifest v1.Manifest
	config   v1.Image
	layer    map[string]tarEntry
	order    []string
}

func blob(t *testing.T, outer map[string]tarEntry, d digest.Digest) []byte {
	t.Helper()
	e, ok := outer["blobs/sha256/"+d.Encoded()]
	if !ok {
		t.Fatalf("blob %s missing", d)
	}
	return e.data
}

func parse(t *testing.T, b []byte) image {
	t.Helper()
	var img image
	img.outer, _ = readTar(t, b)
	unmarshal := func(data []byte, v any) {
		t.Helper()
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatal(err)
		}
	}
	unmarshal(img.outer["index.json"].data, &img.index)
	if len(img.index.Manifests) != 1 {
		t.Fatalf("index has %d manifests, want 1", len(img.index.Manifests))
	}
	unmarshal(blob(t, img.outer, img.index.Manifests[0].Digest), &img.manifest)
	unmarshal(blob(t, img.outer, img.manifest.Config.Digest), &img.config)
	if len(img.manifest.Layers) != 1 {
		t.Fatalf("manifest has %d layers, want 1", len(img.manifest.Layers))
	}
	img.layer, img.order = readTar(t, blob(t, img.outer, img.manifest.Layers[0].Digest))
	return img
}

func TestBuild_SameInputsSameDigest(t *testing.T) {
	spec := Reader(hostFile(t, "agent v1"))
	b1, d1 := build(t, spec)
	b2, d2 := build(t, spec)
	if d1 != d2 {
		t.Errorf("digests differ: %s vs %s", d1, d2)
	}
	if !bytes.Equal(b1, b2) {
		t.Error("tarballs are not byte-identical")
	}
	// A copy of the binary elsewhere, with another mtime, is the same input.
	other := hostFile(t, "agent v1")
	if err := os.Chtimes(other, time1990, time1990); err != nil {
		t.Fatal(err)
	}
	if _, d3 := build(t, Reader(other)); d3 != d1 {
		t.Errorf("host path or mtime changed the digest: %s vs %s", d3, d1)
	}
}

func TestBuild_ChangedInputChangesDigest(t *testing.T) {
	bin := hostFile(t, "agent v1")
	_, base := build(t, Reader(bin))
	tests := []struct {
		name string
		spec Spec
	}{
		{"file content", Reader(hostFile(t, "agent v2"))},
		{"file mode", Spec{Name: "reader", Files: []File{{Path: AgentPath, HostPath: bin, Mode: 0o755}}, Entrypoint: []string{AgentPath}}},
		{"entrypoint args", Spec{Name: "reader", Files: []File{{Path: AgentPath, HostPath: bin, Mode: 0o555}}, Entrypoint: []string{AgentPath, "-v"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, d := build(t, tt.spec); d == base {
				t.Errorf("digest unchanged: %s", d)
			}
		})
	}
}

func TestBuild_LayerHoldsSkeletonAndFiles(t *testing.T) {
	b, _ := build(t, Spec{
		Name: "reader",
		Files: []File{
			{Path: AgentPath, HostPath: hostFile(t, "agent"), Mode: 0o555},
			{Path: "/usr/share/data.txt", HostPath: hostFile(t, "data")},
		},
		Entrypoint: []string{AgentPath},
	})
	img := parse(t, b)
	wantDirs := map[string]int64{
		"dev/": 0o755, "etc/": 0o755, "input/": 0o755, "output/": 0o755, "proc/": 0o555,
		"run/": 0o755, "sys/": 0o555, "tmp/": 0o1777, "usr/": 0o755, "usr/share/": 0o755,
	}
	for name, mode := range wantDirs {
		e, ok := img.layer[name]
		if !ok {
			t.Errorf("layer lacks directory %s", name)
			continue
		}
		if e.hdr.Typeflag != tar.TypeDir || e.hdr.Mode != mode {
			t.Errorf("%s: type %c mode %o, want dir mode %o", name, e.hdr.Typeflag, e.hdr.Mode, mode)
		}
	}
	wantFiles := map[string]struct {
		mode int64
		data string
	}{
		"airlock-agent":      {0o555, "agent"},
		"usr/share/data.txt": {0o444, "data"},
		"etc/passwd":         {0o444, skeletonFiles["/etc/passwd"]},
		"etc/group":          {0o444, skeletonFiles["/etc/group"]},
	}
	for name, want := range wantFiles {
		e, ok := img.layer[name]
		if !ok {
			t.Errorf("layer lacks file %s", name)
			continue
		}
		if e.hdr.Typeflag != tar.TypeReg || e.hdr.Mode != want.mode || string(e.data) != want.data {
			t.Errorf("%s: type %c mode %o data %q, want file mode %o data %q",
				name, e.hdr.Typeflag, e.hdr.Mode, e.data, want.mode, want.data)
		}
	}
	if got, want := len(img.layer), len(wantDirs)+len(wantFiles); got != want {
		t.Errorf("layer has %d entries %v, want %d", got, img.order, want)
	}
	for _, name := range []string{"etc/passwd", "etc/group"} {
		if !strings.Contains(string(img.layer[name].data), ":65534:") {
			t.Errorf("%s has no entry for 65534", name)
		}
	}
	for i, name := range img.order {
		h := img.layer[name].hdr
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || h.ModTime.Unix() != 0 {
			t.Errorf("%s: owner %d:%d %q:%q mtime %v, want 0:0, no names, epoch", name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
		if i > 0 && img.order[i-1] >= name {
			t.Errorf("layer entries out of order: %s before %s", img.order[i-1], name)
		}
	}
}

func TestBuild_BlobsMatchTheirDigests(t *testing.T) {
	b, d := build(t, Reader(hostFile(t, "agent")))
	img := parse(t, b)
	blobs := 0
	for name, e := range img.outer {
		enc, ok := strings.CutPrefix(name, "blobs/sha256/")
		if !ok || enc == "" {
			continue
		}
		blobs++
		if got := digest.FromBytes(e.data).Encoded(); got != enc {
			t.Errorf("blob %s has digest %s", enc, got)
		}
	}
	if blobs != 3 {
		t.Errorf("%d blobs, want 3 (manifest, config, layer)", blobs)
	}
	descs := []v1.Descriptor{img.index.Manifests[0], img.manifest.Config, img.manifest.Layers[0]}
	for _, desc := range descs {
		if got := int64(len(blob(t, img.outer, desc.Digest))); got != desc.Size {
			t.Errorf("%s: descriptor size %d, blob size %d", desc.MediaType, desc.Size, got)
		}
	}
	if img.index.Manifests[0].Digest != d {
		t.Errorf("Build returned %s, index names %s", d, img.index.Manifests[0].Digest)
	}
	if img.config.RootFS.DiffIDs[0] != img.manifest.Layers[0].Digest {
		t.Error("diff ID of the uncompressed layer is not its digest")
	}
}

func TestBuild_LayoutIsOCIImageLayout(t *testing.T) {
	b, _ := build(t, Hostile(hostFile(t, "hostile")))
	img := parse(t, b)
	if got := string(img.outer["oci-layout"].data); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %s", got)
	}
	m := img.index.Manifests[0]
	if m.MediaType != v1.MediaTypeImageManifest || img.manifest.Layers[0].MediaType != v1.MediaTypeImageLayer {
		t.Errorf("media types: manifest %s, layer %s", m.MediaType, img.manifest.Layers[0].MediaType)
	}
	if got := m.Annotations[AnnotationImageName]; got != "airlock.local/hostile:latest" {
		t.Errorf("containerd image name = %q", got)
	}
	if got := m.Annotations[v1.AnnotationRefName]; got != "latest" {
		t.Errorf("OCI ref name = %q", got)
	}
	for name, e := range img.outer {
		if e.hdr.ModTime.Unix() != 0 || e.hdr.Uid != 0 || e.hdr.Uname != "" {
			t.Errorf("outer entry %s has mtime %v uid %d uname %q", name, e.hdr.ModTime, e.hdr.Uid, e.hdr.Uname)
		}
	}
}

func TestBuild_ConfigRunsAgentAsNobody(t *testing.T) {
	b, _ := build(t, Reader(hostFile(t, "agent")))
	cfg := parse(t, b).config
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
	}
	c := cfg.Config
	if c.User != "65534:65534" || c.WorkingDir != "/" ||
		strings.Join(c.Env, ",") != "PATH=/" || strings.Join(c.Entrypoint, ",") != "/airlock-agent" {
		t.Errorf("config = %+v", c)
	}
	if cfg.Created != nil {
		t.Error("config carries a creation time, which breaks reproducibility")
	}
}

func TestBuild_RefusesUnsoundSpec(t *testing.T) {
	bin := hostFile(t, "agent")
	spec := func(files ...File) Spec {
		return Spec{Name: "reader", Files: files, Entrypoint: []string{AgentPath}}
	}
	agent := File{Path: AgentPath, HostPath: bin, Mode: 0o555}
	tests := []struct {
		name    string
		spec    Spec
		wantErr error
		wantMsg string
	}{
		{"missing host file", spec(File{Path: AgentPath, HostPath: filepath.Join(t.TempDir(), "nope"), Mode: 0o555}), fs.ErrNotExist, "no such file"},
		{"host path is a directory", spec(File{Path: AgentPath, HostPath: t.TempDir(), Mode: 0o555}), ErrInvalidSpec, "not a regular file"},
		{"empty host path", spec(File{Path: AgentPath, Mode: 0o555}), ErrInvalidSpec, "empty host path"},
		{"relative image path", spec(agent, File{Path: "etc/x", HostPath: bin}), ErrInvalidSpec, `"etc/x" is not absolute`},
		{"unclean image path", spec(agent, File{Path: "/tmp/../x", HostPath: bin}), ErrInvalidSpec, "not clean"},
		{"root path", spec(agent, File{Path: "/", HostPath: bin}), ErrInvalidSpec, "root directory"},
		{"duplicate path", spec(agent, agent), ErrInvalidSpec, "already in the image"},
		{"overwrites skeleton file", spec(agent, File{Path: "/etc/passwd", HostPath: bin}), ErrInvalidSpec, "already in the image"},
		{"replaces skeleton dir", spec(agent, File{Path: "/tmp", HostPath: bin}), ErrInvalidSpec, "already in the image"},
		{"below a file", spec(agent, File{Path: "/airlock-agent/x", HostPath: bin}), ErrInvalidSpec, "which is a file"},
		{"setuid mode", spec(File{Path: AgentPath, HostPath: bin, Mode: 0o555 | fs.ModeSetuid}), ErrInvalidSpec, "beyond rwx"},
		{"entrypoint not in image", spec(File{Path: "/other", HostPath: bin, Mode: 0o555}), ErrInvalidSpec, "not an executable file"},
		{"entrypoint not executable", spec(File{Path: AgentPath, HostPath: bin, Mode: 0o444}), ErrInvalidSpec, "not an executable file"},
		{"entrypoint is a directory", Spec{Name: "reader", Files: []File{agent}, Entrypoint: []string{"/tmp"}}, ErrInvalidSpec, "not an executable file"},
		{"relative entrypoint", Spec{Name: "reader", Files: []File{agent}, Entrypoint: []string{"airlock-agent"}}, ErrInvalidSpec, "not absolute"},
		{"empty entrypoint", Spec{Name: "reader", Files: []File{agent}}, ErrInvalidSpec, "empty entrypoint"},
		{"empty name", Spec{Files: []File{agent}, Entrypoint: []string{AgentPath}}, ErrInvalidSpec, "name"},
		{"name with a slash", Spec{Name: "a/b", Files: []File{agent}, Entrypoint: []string{AgentPath}}, ErrInvalidSpec, "name"},
		{"uppercase name", Spec{Name: "Reader", Files: []File{agent}, Entrypoint: []string{AgentPath}}, ErrInvalidSpec, "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			_, err := Build(&buf, tt.spec)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Build error = %v, want %v mentioning %q", err, tt.wantErr, tt.wantMsg)
			}
			if buf.Len() != 0 {
				t.Errorf("Build wrote %d bytes before failing", buf.Len())
			}
		})
	}
}

func TestImageRef_NamesAirlockLocalLatest(t *testing.T) {
	if got := ImageRef("reader"); got != "airlock.local/reader:latest" {
		t.Errorf("ImageRef(reader) = %q", got)
	}
}

var time1990 = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)

func TestTools_CarriesOnlyTheToolAppletsAsLinks(t *testing.T) {
	spec, err := Tools("tools-x", hostFile(t, "agent"), hostFile(t, "busybox"), []string{"cat", "grep"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := build(t, spec)
	img := parse(t, b)
	// Execute-only, and only for the tools group: the agent cannot run
	// busybox by its own name and reach every applet.
	if e, ok := img.layer["bin/busybox"]; !ok || e.hdr.Mode != 0o010 || e.hdr.Gid != ToolsGID || string(e.data) != "busybox" {
		t.Fatalf("bin/busybox = %+v", e.hdr)
	}
	var links []string
	for name, e := range img.layer {
		if e.hdr.Typeflag == tar.TypeSymlink {
			links = append(links, name)
			if e.hdr.Linkname != "busybox" {
				t.Errorf("%s -> %s, want busybox", name, e.hdr.Linkname)
			}
		}
	}
	slices.Sort(links)
	if !slices.Equal(links, []string{"bin/cat", "bin/grep"}) {
		t.Errorf("links = %v, want exactly bin/cat and bin/grep", links)
	}
	for _, forbidden := range []string{"bin/sh", "bin/wget", "bin/nc", "bin/ash", "bin/head"} {
		if _, ok := img.layer[forbidden]; ok {
			t.Errorf("%s is in the tools image", forbidden)
		}
	}
}

func TestBuild_RefusesSymlinkLeavingTheImage(t *testing.T) {
	spec := Reader(hostFile(t, "agent"))
	spec.Symlinks = []Symlink{{Path: "/bin/shadow", Target: "/host/etc/shadow"}}
	if _, err := Build(io.Discard, spec); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("err = %v, want ErrInvalidSpec", err)
	}
}

func TestCheckStatic(t *testing.T) {
	if err := CheckStatic("/bin/sh"); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("dynamic /bin/sh: err = %v, want ErrInvalidSpec", err)
	}
	if err := CheckStatic(hostFile(t, "#!/bin/sh\n")); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("script: err = %v, want ErrInvalidSpec", err)
	}
}

func TestTools_RefusesAShell(t *testing.T) {
	if _, err := Tools("tools-x", "a", "b", []string{"cat", "sh"}); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("err = %v, want ErrInvalidSpec", err)
	}
}

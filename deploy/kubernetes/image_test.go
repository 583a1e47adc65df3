//go:build airlockdimage

package kubernetes

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock/airlock/cmd/airlockd/server"
	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/images/rootfs/rootfstest"
	"github.com/airlock/airlock/images/rootfs/runctest"
)

var imageFile = flag.String("image", "../../bin/airlockd-image.tar", "where make airlockd-image put airlockd's image")

// imageUser is who the image runs as: containerd and runc need root, as
// the DaemonSet's runAsUser says too.
const imageUser = "0:0"

// imageBinaries are what airlockd runs, and what an operator inspects a
// pod with, found on the image's PATH as airlockd's exec.LookPath finds
// them.
var imageBinaries = []string{
	"containerd", "containerd-shim-runc-v2", "runc", "crun", "runsc", "nft", "ip",
	"airlockd", "airlock", "airlock-agent",
}

// imageRuns are commands run inside the unpacked image under runc, each
// with what its output must hold: each starts only if its dynamic
// libraries resolve in the image.
var imageRuns = []struct {
	args []string
	want string
}{
	{[]string{imageEntrypoint, "-h"}, "-state-dir"},
	{[]string{"/usr/local/bin/airlock", "--help"}, "usage: airlock"},
	{[]string{"containerd", "--version"}, "containerd github.com/containerd/containerd"},
	{[]string{"containerd-shim-runc-v2", "-v"}, "Version:"},
	{[]string{"runc", "--version"}, "runc version"},
	{[]string{"crun", "--version"}, "crun version"},
	{[]string{"runsc", "--version"}, "runsc version"},
	{[]string{"nft", "--version"}, "nftables v"},
	{[]string{"ip", "-V"}, "iproute2"},
	{[]string{"/bin/busybox", "echo", "busybox-ok"}, "busybox-ok"},
}

// TestAirlockdImage_ReadsBackAsTheDaemonSetsImage: one linux manifest for
// this platform, airlockd as entrypoint and root as user, the binaries on
// its PATH, and nothing setuid, setgid, a device or a hard link, which
// rootfstest.Check refuses.
func TestAirlockdImage_ReadsBackAsTheDaemonSetsImage(t *testing.T) {
	img, err := rootfstest.Check(*imageFile)
	if err != nil {
		t.Fatalf("%s: %v", *imageFile, err)
	}
	cfg := img.Config.Config
	if !slices.Equal(cfg.Entrypoint, []string{imageEntrypoint}) || len(cfg.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want [%s] alone", cfg.Entrypoint, cfg.Cmd, imageEntrypoint)
	}
	if cfg.User != imageUser {
		t.Errorf("user %q, want %s", cfg.User, imageUser)
	}
	if got := img.Annotations[images.AnnotationImageName]; got != images.ImageRef("airlockd") {
		t.Errorf("containerd image name %q, want %s (README.md's ctr import names it so)", got, images.ImageRef("airlockd"))
	}
	for _, b := range imageBinaries {
		if _, err := lookPath(img, b); err != nil {
			t.Error(err)
		}
	}
	if got, err := lookPath(img, "airlock-agent"); err == nil && path.Dir(got) != path.Dir(imageEntrypoint) {
		t.Errorf("airlock-agent is at %s, not next to airlockd (--agent-binary's default)", got)
	}
	if got, err := img.Resolve("/var/run"); err != nil || got != "/run" {
		t.Errorf("/var/run leads to %q (%v), want /run, the pod's writable emptyDir", got, err)
	}
}

// TestAirlockdImage_HoldsWhatTheDaemonSetNames: for the base and every
// overlay, the command is the image's airlockd, every volume mounts over a
// directory of the image, and the files airlockd's flags name by default
// (busybox, the agent next to airlockd) are in it; /var/run/netns, where
// airlockd binds the jobs' network namespaces, is on a writable volume.
func TestAirlockdImage_HoldsWhatTheDaemonSetNames(t *testing.T) {
	img, err := rootfstest.Check(*imageFile)
	if err != nil {
		t.Fatalf("%s: %v", *imageFile, err)
	}
	for _, dir := range kustomizations(t) {
		t.Run(dir, func(t *testing.T) {
			m, err := render(dir)
			if err != nil {
				t.Fatal(err)
			}
			pod := m.daemonSet.Spec.Template.Spec
			c := pod.Containers[0]
			if len(c.Command) != 1 {
				t.Fatalf("command %q", c.Command)
			}
			if ep, err := img.Resolve(c.Command[0]); err != nil || !isExecutable(img, ep) {
				t.Errorf("command %s is not an executable of the image (%v)", c.Command[0], err)
			}
			for _, vm := range c.VolumeMounts {
				if p, err := img.Resolve(vm.MountPath); err != nil || img.Files[p].Typeflag != tar.TypeDir {
					t.Errorf("volume %s mounts at %s, which is no directory of the image (%v)", vm.Name, vm.MountPath, err)
				}
			}
			var o server.Options
			fset, _ := server.FlagSet("airlockd", flag.ContinueOnError, &o)
			if err := fset.Parse(expandArgs(t, c)); err != nil {
				t.Fatal(err)
			}
			agent := o.AgentBinary
			if agent == "" {
				agent = path.Join(path.Dir(c.Command[0]), "airlock-agent")
			}
			for flagName, p := range map[string]string{"--busybox": o.Busybox, "--agent-binary": agent} {
				if got, err := img.Resolve(p); err != nil || !isExecutable(img, got) {
					t.Errorf("%s %s is not an executable of the image (%v)", flagName, p, err)
				}
			}
			netns, err := img.Resolve("/var/run")
			if err != nil {
				t.Fatal(err)
			}
			if vm, _ := mountOf(c, pod, path.Join(netns, "netns")); vm == nil || vm.ReadOnly {
				t.Errorf("/var/run/netns (%s/netns in the image) is on no writable volume", netns)
			}
		})
	}
}

// TestAirlockdImage_BinariesRunInsideIt runs airlockd, the runtimes and
// the tools inside the unpacked image under runc, with the image's PATH:
// each prints its usage or version only if the image holds its dynamic
// libraries.
func TestAirlockdImage_BinariesRunInsideIt(t *testing.T) {
	runctest.NeedRoot(t)
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := rootfstest.Unpack(*imageFile, root)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range imageRuns {
		t.Run(r.args[0], func(t *testing.T) {
			// runc's default spec: its own namespaces, /proc, /dev and
			// /sys, and a read-only root.
			spec := runctest.DefaultSpec(t)
			spec.Root = &specs.Root{Path: root, Readonly: true}
			spec.Process.Args = r.args
			spec.Process.Env = img.Config.Config.Env
			res := runctest.Run(t, spec, 30*time.Second)
			if res.Exit != 0 {
				t.Fatalf("%q: exit %d\n%s", r.args, res.Exit, res.Output)
			}
			if !strings.Contains(res.Output, r.want) {
				t.Errorf("%q printed\n%s\nwant it to hold %q", r.args, res.Output, r.want)
			}
		})
	}
	// What update-ca-certificates would have made: the egress proxy's
	// trust for https service upstreams (Go reads this file).
	pem, err := os.ReadFile(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if pool := x509.NewCertPool(); !pool.AppendCertsFromPEM(pem) || bytes.Count(pem, []byte("BEGIN CERTIFICATE")) < 100 {
		t.Errorf("the CA bundle holds %d certificates; want Debian's (over 100)", bytes.Count(pem, []byte("BEGIN CERTIFICATE")))
	}
}

// crane is go-containerregistry's crane at the version go.mod pins, as
// README.md runs it.
var crane = []string{"go", "run", "github.com/google/go-containerregistry/cmd/crane@v0.22.1"}

// TestAirlockdImage_PublishesAsREADMESays: the tarball, unpacked with tar
// and pushed with crane as deploy/kubernetes/README.md says, reaches a
// registry (an in-process one on loopback) as the tarball's own digest.
func TestAirlockdImage_PublishesAsREADMESays(t *testing.T) {
	want, err := rootfstest.Check(*imageFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if out, err := exec.Command("tar", "-xf", *imageFile, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/airlock/airlockd:0.1.0"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, crane[0], append(crane[1:], "push", "--insecure", dir, ref)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("crane push: %v\n%s", err, stderr.String())
	}
	// crane prints the pushed reference by digest.
	pushed := strings.TrimSpace(stdout.String())
	if wantRef := strings.TrimSuffix(ref, ":0.1.0") + "@" + want.Digest.String(); pushed != wantRef {
		t.Errorf("crane pushed %q, want %s", pushed, wantRef)
	}
	stdout.Reset()
	cmd = exec.CommandContext(ctx, crane[0], append(crane[1:], "digest", "--insecure", ref)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("crane digest: %v\n%s", err, stderr.String())
	}
	if got := strings.TrimSpace(stdout.String()); got != want.Digest.String() {
		t.Errorf("the registry has %s, the tarball %s", got, want.Digest)
	}
}

func isExecutable(img *rootfstest.Image, p string) bool {
	h := img.Files[p]
	return h != nil && h.Typeflag == tar.TypeReg && h.Mode&0o111 != 0
}

// lookPath finds an executable named file on the image config's PATH.
func lookPath(img *rootfstest.Image, file string) (string, error) {
	var dirs string
	for _, e := range img.Config.Config.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			dirs = v
		}
	}
	for d := range strings.SplitSeq(dirs, ":") {
		if got, err := img.Resolve(path.Join(d, file)); err == nil && isExecutable(img, got) {
			return got, nil
		}
	}
	return "", fmt.Errorf("%s is on no directory of the image's PATH %q", file, dirs)
}

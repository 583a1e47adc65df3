//go:build integration

package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/leases"
	"github.com/containerd/containerd/snapshots"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/cmd/airlockd/server"
	"github.com/airlock/airlock/images/agentimage/agentimagetest"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/footprint"
)

// hostileSecret is what the hostile image's config puts in its ENV.
const hostileSecret = "AKIAHOSTILEIMAGECONFIG"

// hostileImage is the hostile agent as an operator's image whose config
// asks for everything Airlock must not give: root, a secret in ENV, a
// volume, ports, a healthcheck and a stop signal.
func hostileImage(t *testing.T) v1.Image {
	t.Helper()
	bin, err := os.ReadFile(filepath.Join(env.bin, "hostile"))
	if err != nil {
		t.Fatal(err)
	}
	files := append(agentimagetest.MountPoints(), agentimagetest.Entry{Name: "etc/", Type: tar.TypeDir}, agentimagetest.Entry{Name: "data/", Type: tar.TypeDir},
		agentimagetest.Entry{Name: "app/agent", Mode: 0o555, Data: bin})
	return agentimagetest.Image(t, "amd64", &v1.Config{
		User:         "root",
		Env:          []string{"AWS_SECRET_ACCESS_KEY=" + hostileSecret, "PATH=/evil"},
		Volumes:      map[string]struct{}{"/data": {}},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		Healthcheck:  &v1.HealthConfig{Test: []string{"CMD", "/app/agent", "health"}},
		StopSignal:   "SIGUSR1",
		WorkingDir:   "/app",
		Labels:       map[string]string{"evil": "\x1b]0;pwned\x07"},
		Entrypoint:   []string{"/app/agent"},
	}, agentimagetest.Layer(t, files...))
}

// airlockCLI runs the airlock CLI against the suite's airlockd.
func airlockCLI(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	socket := env.server.Addr().String()
	cmd := exec.Command(filepath.Join(env.bin, "airlock"), append([]string{"--socket", socket, "--token-file", env.server.Options().TokenFile}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%v: %s", err, stderr.String())
	}
	return out, nil
}

// contentSnapshot lists the content digests and committed snapshots of the
// suite's containerd.
func contentSnapshot(t *testing.T, ctx context.Context) (map[digest.Digest]bool, map[string]bool) {
	t.Helper()
	blobs := map[digest.Digest]bool{}
	if err := env.ctrd.ContentStore().Walk(ctx, func(i content.Info) error { blobs[i.Digest] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	snaps := map[string]bool{}
	if err := env.ctrd.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, i snapshots.Info) error { snaps[i.Name] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return blobs, snaps
}

// requireNoNewContent fails for content or snapshots containerd holds now
// and did not before.
func requireNoNewContent(t *testing.T, ctx context.Context, blobsBefore map[digest.Digest]bool, snapsBefore map[string]bool) {
	t.Helper()
	blobs, snaps := contentSnapshot(t, ctx)
	for d := range blobs {
		if !blobsBefore[d] {
			t.Errorf("content %s is new since the test began", d)
		}
	}
	for s := range snaps {
		if !snapsBefore[s] {
			t.Errorf("snapshot %s is new since the test began", s)
		}
	}
}

// TestImportedImage_HostileConfigChangesNothing imports the hostile agent
// as an operator's image whose config asks for root, a secret in ENV, a
// volume, ports and a healthcheck, runs it under profiles that name it by
// digest, and shows that the profile's walls hold: uid 65534, no such
// env, no volume, a read-only root, and the escape checklist as for the
// reference agent. Then rm leaves nothing of it in containerd.
func TestImportedImage_HostileConfigChangesNothing(t *testing.T) {
	ctx := testContext(t)
	blobsBefore, snapsBefore := contentSnapshot(t, ctx)
	img := hostileImage(t)

	out, err := airlockCLI(t, "image", "import", agentimagetest.DockerSave(t, img), "--name", "hostile-byo")
	if err != nil {
		t.Fatalf("airlock image import: %v", err)
	}
	var imported struct {
		Image struct {
			Name, Digest, SizeBytes string
		}
		Created bool
	}
	if err := json.Unmarshal(out, &imported); err != nil {
		t.Fatalf("import output %s: %v", out, err)
	}
	dgst := imported.Image.Digest
	if imported.Image.Name != "hostile-byo" || !strings.HasPrefix(dgst, "sha256:") || !imported.Created {
		t.Fatalf("import printed %s", out)
	}
	t.Logf("imported hostile-byo@%s (%s bytes)", dgst, imported.Image.SizeBytes)
	removed := false
	t.Cleanup(func() {
		if !removed {
			_, _ = env.brokerOf.RemoveImage(context.Background(), &airlockv1.RemoveImageRequest{Name: "hostile-byo"})
		}
	})
	// The same image again is no error, and nothing new.
	// protojson leaves out a false created, so it is read into a fresh
	// value.
	again, err := airlockCLI(t, "image", "import", agentimagetest.DockerSave(t, img), "--name", "hostile-byo")
	var second struct {
		Image   struct{ Digest string }
		Created bool
	}
	if err == nil {
		err = json.Unmarshal(again, &second)
	}
	if err != nil || second.Created || second.Image.Digest != dgst {
		t.Errorf("a second import: %s %v", again, err)
	}
	list, err := env.brokerOf.ListImages(ctx, &airlockv1.ListImagesRequest{})
	if err != nil || len(list.Images) != 1 || list.Images[0].Digest != dgst || list.Images[0].SizeBytes == 0 || list.Images[0].Imported == nil {
		t.Fatalf("ListImages: %v %v", list, err)
	}

	// A profile whose digest is not the imported one stops airlockd.
	wrong := "hostile-byo@sha256:" + strings.Repeat("0", 64)
	// (Had it started, the suite's stops would shut it down.)
	_, _, err = startServer(serverDir(t), map[string]string{"byo.yaml": byoProfile("vanilla", wrong)}, func(o *server.Options) {})
	if err == nil || !strings.Contains(err.Error(), "profile byo") || !strings.Contains(err.Error(), "is imported with digest "+dgst) {
		t.Fatalf("airlockd with a profile pinning another digest: %v", err)
	}

	srv, conn, err := startServer(serverDir(t), map[string]string{
		"byo.yaml":        byoProfile("vanilla", "hostile-byo@"+dgst),
		"byo-secure.yaml": byoProfile("secureclaw", "hostile-byo@"+dgst),
	}, func(o *server.Options) { o.Pools = map[string]int{"byo": 1} })
	if err != nil {
		t.Fatalf("airlockd with the image's profiles: %v", err)
	}
	for _, profile := range []string{"byo", "byo-secure"} {
		t.Run(profile, func(t *testing.T) { checkHostileImage(t, conn, profile, dgst) })
	}
	// Loaded profiles run it: rm is refused while they do.
	if _, err := conn.Broker.RemoveImage(ctx, &airlockv1.RemoveImageRequest{Name: "hostile-byo"}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "profile byo") {
		t.Errorf("rm while a profile runs it: %v, want FailedPrecondition naming the profile", err)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cfgFile, _ := img.ConfigFile()
	chain := identity.ChainID([]digest.Digest{digest.Digest(cfgFile.RootFS.DiffIDs[0].String())}).String()
	if out, err := airlockCLI(t, "image", "rm", "hostile-byo@"+dgst); err != nil || !strings.Contains(string(out), dgst) {
		t.Fatalf("airlock image rm: %s %v", out, err)
	}
	removed = true
	blobs, snaps := contentSnapshot(t, ctx)
	for _, d := range []string{dgst, m.Config.Digest.String(), m.Layers[0].Digest.String()} {
		if blobs[digest.Digest(d)] {
			t.Errorf("content %s is left after rm", d)
		}
	}
	if snaps[chain] {
		t.Errorf("snapshot %s is left after rm", chain)
	}
	requireNoNewContent(t, ctx, blobsBefore, snapsBefore)
	if _, err := env.brokerOf.RemoveImage(ctx, &airlockv1.RemoveImageRequest{Name: "hostile-byo"}); status.Code(err) != codes.NotFound {
		t.Errorf("a second rm: %v, want NotFound", err)
	}
}

// serverDir is a directory for one more airlockd: short enough for its
// socket, and traversable for its user-namespaced profiles.
func serverDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "airlock-byo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := footprint.MkdirTraversable(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// byoProfile extends base with exec denied and the agent image.
func byoProfile(base, image string) string {
	return "extends: " + base + "\nexec: {security: deny, allowedPatterns: [], ask: 'off'}\nagent:\n  image: " + image + "\n"
}

func checkHostileImage(t *testing.T, conn *client.Conn, profile, dgst string) {
	run := func(op string) *airlockv1.SpawnResponse {
		t.Helper()
		req := hostileReq(op, nil)
		req.Profile = profile
		resp, err := conn.Broker.Spawn(testContext(t), req)
		if err != nil {
			t.Fatalf("%s: Spawn: %v", op, err)
		}
		if resp.Verdict != airlockv1.Verdict_VERDICT_OK {
			t.Fatalf("%s: verdict %s: %s", op, resp.Verdict, resp.Message)
		}
		return resp
	}
	envResp := run("env")
	var vars []string
	for _, v := range envResp.Result.Fields["env"].GetListValue().GetValues() {
		vars = append(vars, v.GetStringValue())
	}
	for _, v := range vars {
		if strings.Contains(v, "AWS_SECRET") || strings.Contains(v, hostileSecret) || v == "PATH=/evil" {
			t.Errorf("the image's ENV reached the agent: %q", v)
		}
	}
	// Nothing but the reference agent's environment, the contract's.
	allowed := map[string]bool{}
	for _, v := range append(sandbox.Env(""), sandbox.ProxyEnv("http://proxy")...) {
		k, _, _ := strings.Cut(v, "=")
		allowed[k] = true
	}
	for _, v := range vars {
		if k, _, _ := strings.Cut(v, "="); !allowed[k] {
			t.Errorf("env %q is not the contract's", v)
		}
	}
	if !slices.Contains(vars, "PATH=/bin") {
		t.Errorf("env %v lacks PATH=/bin", vars)
	}

	c := run("escape_checklist").Result.Fields["checklist"].GetStructValue().AsMap()
	st, _ := c["status"].(map[string]any)
	if uid := fmt.Sprint(st["Uid"]); !strings.HasPrefix(uid, "65534") {
		t.Errorf("uid %q, want 65534 whatever the image's USER says", uid)
	}
	if st["Seccomp"] != "2" || st["NoNewPrivs"] != "1" || st["CapEff"] != "0000000000000000" {
		t.Errorf("status %v", st)
	}
	for _, mm := range c["mounts"].([]any) {
		m := mm.(map[string]any)
		point, opts := fmt.Sprint(m["point"]), fmt.Sprint(m["options"])
		if point == "/data" || strings.HasPrefix(point, "/data/") {
			t.Errorf("the image's VOLUME was mounted: %v", m)
		}
		if point == "/" && !strings.HasPrefix(opts, "ro") {
			t.Errorf("root mounted %s, want read-only", opts)
		}
		if fstype := fmt.Sprint(m["fstype"]); !map[string]bool{"proc": true, "sysfs": true, "tmpfs": true, "devtmpfs": true, "devpts": true, "mqueue": true, "cgroup": true, "cgroup2": true, "overlay": true}[fstype] &&
			point != "/input" && point != "/output" && point != "/" {
			t.Errorf("host mount in the sandbox: %v", m)
		}
	}
	for p, v := range c["unix_sockets"].(map[string]any) {
		if v == "connected" {
			t.Errorf("reached unix socket %s", p)
		}
	}
	for _, key := range []string{"writable", "release_agent"} {
		w, _ := c[key].(map[string]any)
		for p, v := range w {
			if v == "writable" {
				t.Errorf("%s is writable", p)
			}
		}
	}

	attempts := run("write_rootfs").Result.Fields["attempts"].GetListValue().GetValues()
	for _, a := range attempts {
		m := a.GetStructValue().AsMap()
		p := fmt.Sprint(m["path"])
		if m["ok"] == true && !strings.HasPrefix(p, "/tmp/") && !strings.HasPrefix(p, "/output/") {
			t.Errorf("wrote %s", p)
		}
	}

	ex, err := conn.Broker.ExplainProfile(testContext(t), &airlockv1.ExplainProfileRequest{Profile: profile})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`image USER \"root\"`, `image ENV \"AWS_SECRET_ACCESS_KEY\" dropped`, `image VOLUME \"/data\" ignored`, `image EXPOSE \"8080/tcp\" ignored`, "image HEALTHCHECK ignored", `"airlock.image": "hostile-byo@` + dgst} {
		if !strings.Contains(ex.OciSpecJson, want) {
			t.Errorf("explain lacks %s:\n%s", want, ex.OciSpecJson)
		}
	}
	if strings.Contains(ex.OciSpecJson, hostileSecret) {
		t.Error("explain shows the image's ENV value")
	}
}

// TestImportedImage_RefusedLeavesNothing: an image with a setuid binary is
// refused with its reason, and nothing of it is in containerd or the state
// dir.
func TestImportedImage_RefusedLeavesNothing(t *testing.T) {
	ctx := testContext(t)
	blobsBefore, snapsBefore := contentSnapshot(t, ctx)
	img := agentimagetest.Image(t, "amd64", nil, agentimagetest.Layer(t, append(agentimagetest.MountPoints(),
		agentimagetest.Entry{Name: "app/agent", Data: []byte("x")}, agentimagetest.Entry{Name: "app/su", Mode: 0o4755, Data: []byte("root")})...))
	_, err := airlockCLI(t, "image", "import", agentimagetest.OCILayout(t, img), "--name", "setuid")
	if err == nil || !strings.Contains(err.Error(), `"app/su": a setuid file`) || !strings.Contains(err.Error(), "InvalidArgument") {
		t.Fatalf("import of a setuid image: %v", err)
	}
	requireNoNewContent(t, ctx, blobsBefore, snapsBefore)
	for _, d := range []string{"uploads", "imports"} {
		if left, _ := os.ReadDir(filepath.Join(env.stateDir, d)); len(left) > 0 {
			t.Errorf("%s holds %d files after a refused import", d, len(left))
		}
	}
	if l, err := env.ctrd.LeasesService().List(ctx); err != nil || slices.ContainsFunc(l, func(l leases.Lease) bool { return strings.HasPrefix(l.ID, "airlock-import-") }) {
		t.Errorf("an import lease is left: %v %v", l, err)
	}
}

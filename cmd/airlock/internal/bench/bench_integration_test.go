//go:build integration

package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/embedded"
	"github.com/airlock/airlock/sandbox/footprint"
)

// benchEnv is a private containerd holding the reader image, as airlockd
// would leave it, and the profile the baselines run under.
type benchEnv struct {
	address string
	dir     string
	image   string
	base    Baseline
}

// setupBench starts containerd and imports the reader image built from
// the repository's agent. It needs root, containerd and runc.
func setupBench(b testing.TB) benchEnv {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	dir, err := mkWorkDir("", "airlock-bench-it-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	agentBin := filepath.Join(dir, "airlock-agent")
	build := exec.Command("go", "build", "-trimpath", "-o", agentBin, "../../cmd/airlock-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build agent: %v\n%s", err, out)
	}
	ctx := context.Background()
	d, err := embedded.Start(ctx, filepath.Join(dir, "containerd"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Stop(context.Background()) })

	var tarball bytes.Buffer
	if _, err := images.Build(&tarball, images.Reader(agentBin)); err != nil {
		b.Fatal(err)
	}
	client, err := containerd.New(d.Address(), containerd.WithDefaultNamespace(footprint.Namespace))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	nctx := namespaces.WithNamespace(ctx, footprint.Namespace)
	imported, err := client.Import(nctx, &tarball)
	if err != nil || len(imported) != 1 {
		b.Fatalf("import: %v, %v", imported, err)
	}
	if err := containerd.NewImage(client, imported[0]).Unpack(nctx, snapshotter); err != nil {
		b.Fatal(err)
	}

	set, err := policy.Load(policies.FS, policy.WithSchemaCheck(result.CheckSchema))
	if err != nil {
		b.Fatal(err)
	}
	p, err := set.Get("ironclaw")
	if err != nil {
		b.Fatal(err)
	}
	return benchEnv{address: d.Address(), dir: dir, image: imported[0].Name, base: Baseline{Profile: p}}
}

// BenchmarkContainerd times one container's create, start, wait and
// delete through the Go client, under ironclaw's spec.
func BenchmarkContainerd(b *testing.B) {
	env := setupBench(b)
	ctx := context.Background()
	cb, err := newContainerdBench(ctx, env.address, env.image, env.base)
	if err != nil {
		b.Fatal(err)
	}
	defer cb.Close()
	for b.Loop() {
		if err := cb.run(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunc times one `runc run` of the same image and spec.
func BenchmarkRunc(b *testing.B) {
	env := setupBench(b)
	ctx := context.Background()
	if err := ExtractRootfs(ctx, env.address, env.image, env.dir); err != nil {
		b.Fatal(err)
	}
	rb, err := newRuncBench(ctx, env.dir, env.base, "runc")
	if err != nil {
		b.Fatal(err)
	}
	defer rb.Close()
	for b.Loop() {
		if err := rb.run(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBaselines_LeaveNothingBehind runs each baseline at concurrency and
// checks that every run succeeded and that containerd holds no container,
// lease or snapshot of theirs afterwards, nor the host their cgroups.
func TestBaselines_LeaveNothingBehind(t *testing.T) {
	env := setupBench(t)
	ctx := context.Background()
	b := env.base
	b.N, b.Concurrency = 4, 2
	st, err := RunContainerd(ctx, env.address, env.image, b)
	if err != nil || st.Failures > 0 {
		t.Fatalf("containerd baseline: %v, %+v", err, st)
	}
	if err := ExtractRootfs(ctx, env.address, env.image, env.dir); err != nil {
		t.Fatal(err)
	}
	if st, err = RunRunc(ctx, env.dir, b); err != nil || st.Failures > 0 {
		t.Fatalf("runc baseline: %v, %+v", err, st)
	}

	client, err := containerd.New(env.address, containerd.WithDefaultNamespace(footprint.Namespace))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	nctx := namespaces.WithNamespace(ctx, footprint.Namespace)
	if cs, err := client.Containers(nctx); err != nil || len(cs) > 0 {
		t.Errorf("containers left: %d, %v", len(cs), err)
	}
	if ls, err := client.LeasesService().List(nctx); err != nil || len(ls) > 0 {
		t.Errorf("leases left: %v, %v", ls, err)
	}
	var active int
	err = client.SnapshotService(snapshotter).Walk(nctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted {
			active++
		}
		return nil
	})
	if err != nil || active > 0 {
		t.Errorf("%d view or active snapshots left, %v", active, err)
	}
	if left, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupParent); len(left) > 0 || exists("/sys/fs/cgroup"+cgroupParent) {
		t.Errorf("cgroups left: %v", left)
	}
	if left, _ := filepath.Glob("/run/airlock-bench-runc-*"); len(left) > 0 {
		t.Errorf("runc state left: %v", left)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

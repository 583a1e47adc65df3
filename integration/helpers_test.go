//go:build integration

package integration

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/snapshots"
	"google.golang.org/protobuf/types/known/structpb"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/netns"
)

const anyObject = `{"type":"object"}`

func listenUnix(path string) (net.Listener, error) {
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	return lis, os.Chmod(path, 0o600)
}

// hostileReq asks the hostile image to carry out op.
func hostileReq(op string, params map[string]string) *airlockv1.SpawnRequest {
	return &airlockv1.SpawnRequest{
		Profile:      "vanilla",
		Task:         &airlockv1.Task{Name: op, Params: params},
		Content:      []*airlockv1.Content{{Data: []byte("hostile"), MediaType: "text/plain"}},
		ResultSchema: anyObject,
	}
}

func spawn(t *testing.T, req *airlockv1.SpawnRequest) *airlockv1.SpawnResponse {
	t.Helper()
	resp, err := env.brokerOf.Spawn(testContext(t), req)
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	return resp
}

// leftovers lists what a finished job must not leave: containers, tasks,
// active snapshots, leases, job dirs and mounts under the state dir.
func leftovers(ctx context.Context) ([]string, error) {
	out, err := containerdLeftovers(ctx, env.ctrd)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(env.stateDir + "/jobs")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		out = append(out, "job dir "+e.Name())
	}
	if nsEntries, err := os.ReadDir(netns.Dir); err == nil {
		for _, e := range nsEntries {
			if strings.HasPrefix(e.Name(), netns.NamePrefix) {
				out = append(out, "netns "+e.Name())
			}
		}
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, netns.LinkPrefix) {
			out = append(out, "veth "+i.Name)
		}
	}
	out = append(out, cgroupLeftovers(env.stateDir)...)
	out = append(out, runscLeftovers(env.stateDir)...)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && (strings.HasPrefix(fields[4], env.stateDir) || strings.HasPrefix(fields[4], env.taskDir)) {
			out = append(out, "mount "+fields[4])
		}
	}
	return out, sc.Err()
}

// containerdLeftovers lists what a finished job must not leave in
// containerd: containers, tasks, active snapshots and run leases.
func containerdLeftovers(ctx context.Context, c *containerd.Client) ([]string, error) {
	var out []string
	cs, err := c.Containers(ctx)
	if err != nil {
		return nil, err
	}
	for _, x := range cs {
		out = append(out, "container "+x.ID())
	}
	tasks, err := c.TaskService().List(ctx, nil)
	if err != nil {
		return nil, err
	}
	for _, tk := range tasks.Tasks {
		out = append(out, "task "+tk.ID)
	}
	err = c.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted {
			out = append(out, "snapshot "+info.Name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ls, err := c.LeasesService().List(ctx)
	if err != nil {
		return nil, err
	}
	for _, l := range ls {
		if _, ok := l.Labels[sandbox.LabelRun]; ok {
			out = append(out, "lease "+l.ID)
		}
	}
	return out, nil
}

// cgroupLeftovers lists the run cgroups of the broker on stateDir: a
// run's cgroup outlives a teardown that lost track of its task.
func cgroupLeftovers(stateDir string) []string {
	var out []string
	inst := footprint.InstanceID(stateDir)
	for _, pattern := range []string{"/sys/fs/cgroup/*/airlock/" + inst + "/*/", "/sys/fs/cgroup/airlock/" + inst + "/*/"} {
		dirs, _ := filepath.Glob(pattern)
		for _, d := range dirs {
			out = append(out, "cgroup "+d)
		}
	}
	return out
}

// runscLeftovers lists what gVisor left of the sandboxes of the airlockd on
// stateDir: its processes (the sandbox, its stubs and the gofer carry
// runsc's root, which is under the state dir, on their command lines) and
// the state runsc keeps there.
func runscLeftovers(stateDir string) []string {
	var out []string
	root := filepath.Join(stateDir, "runsc", "root")
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if cmd := string(b); strings.Contains(cmd, "--root="+root+"/") || strings.Contains(cmd, "--root\x00"+root+"/") {
			out = append(out, "runsc process "+e.Name())
		}
	}
	state, _ := filepath.Glob(filepath.Join(root, "*", "*"))
	for _, s := range state {
		out = append(out, "runsc state "+s)
	}
	return out
}

// requireNothingLeft waits briefly for teardown (a cancelled RPC's cleanup
// runs after the caller has gone) and fails on anything left behind.
func requireNothingLeft(t *testing.T) {
	t.Helper()
	ctx := testContext(t)
	var left []string
	var err error
	if !waitFor(30*time.Second, func() bool { left, err = leftovers(ctx); return err == nil && len(left) == 0 }) {
		t.Fatalf("left behind: %v (err %v)", left, err)
	}
}

// outcome is what a SpawnResponse and a finished Job both hold, for the
// helpers that read either.
type outcome interface {
	GetJobId() string
	GetVerdict() airlockv1.Verdict
	GetMessage() string
	GetResult() *structpb.Struct
	GetEgress() []*airlockv1.EgressAttempt
	GetExec() []*airlockv1.ExecDecision
	GetUsage() *airlockv1.Usage
}

func str(resp outcome, key string) string {
	return resp.GetResult().GetFields()[key].GetStringValue()
}

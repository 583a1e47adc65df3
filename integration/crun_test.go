//go:build integration

package integration

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/footprint"
)

// TestCrun_SandboxesReuseTheSeccompProgramCrunCompiled runs the reference
// agent on crun with a warm pool. The first sandbox of the profile has crun
// compile its seccomp section; the broker reads the program back from it,
// and the sandboxes after it hand crun that program instead. The pool's
// newest sandbox shows it: its spec carries the program and still the
// section, its agent runs under exactly one filter, and the jobs that ran
// on such sandboxes (the first of which the broker checked byte for byte)
// passed the agent's own self-check of its confinement.
func TestCrun_SandboxesReuseTheSeccompProgramCrunCompiled(t *testing.T) {
	d, err := newDaemon("crun", "--pool", "vanilla=1", "--egress-pool", "10.218.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	d.reference = true
	t.Cleanup(func() { d.stop() })
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	ready := `airlock_pool_ready{profile="vanilla"} 1`
	eventually(t, 60*time.Second, func() bool { return strings.Contains(scrapeMetrics(t, d), ready) }, "the pool fills")

	const jobs = 4
	for i := range jobs {
		resp, err := d.conn.Broker.Spawn(testContext(t), pageJob(i))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetVerdict() != airlockv1.Verdict_VERDICT_OK {
			t.Fatalf("job %d: %v: %s", i, resp.GetVerdict(), resp.GetMessage())
		}
		if !strings.Contains(resp.GetPolicy().GetSummary(), "runtime=crun") {
			t.Fatalf("job %d ran on %q", i, resp.GetPolicy().GetSummary())
		}
		eventually(t, 60*time.Second, func() bool { return strings.Contains(scrapeMetrics(t, d), ready) }, "the pool refills")
	}
	// The pool's first sandbox compiled; every later one, the jobs' and
	// the one waiting now, was handed the program.
	if n := precompiled(t, d); n != jobs {
		t.Fatalf("%d sandboxes handed the program, want %d", n, jobs)
	}
	// secureclaw's sandboxes are cold and user-namespaced. Its section
	// is vanilla's or its own: either way the second of its jobs, if not
	// the first, is handed a program.
	var after []int
	for i := range 2 {
		req := pageJob(i)
		req.Profile = "secureclaw"
		resp, err := d.conn.Broker.Spawn(testContext(t), req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetVerdict() != airlockv1.Verdict_VERDICT_OK {
			t.Fatalf("secureclaw job %d: %v: %s", i, resp.GetVerdict(), resp.GetMessage())
		}
		after = append(after, precompiled(t, d))
	}
	if after[1] != after[0]+1 {
		t.Fatalf("sandboxes handed a program: %d before secureclaw's jobs, then %v: want its second job handed one", jobs, after)
	}

	ctx := namespaces.WithNamespace(testContext(t), footprint.Namespace)
	c, err := containerd.New(filepath.Join(d.dir, "state", "containerd", "containerd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The pool's sandbox is the one made for no job whose agent runs; a
	// job's, or a claimed one, may still be on its way out.
	all, err := c.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ctrs []containerd.Container
	for _, x := range all {
		labels, err := x.Labels(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := labels[sandbox.LabelJob]; ok {
			continue
		}
		// A claimed one's agent has exited.
		if task, err := x.Task(ctx, nil); err == nil {
			if st, err := task.Status(ctx); err == nil && st.Status == containerd.Running {
				ctrs = append(ctrs, x)
			}
		}
	}
	if len(ctrs) != 1 {
		t.Fatalf("%d sandboxes made for no job, want the pool's one", len(ctrs))
	}
	spec, err := ctrs[0].Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := base64.StdEncoding.DecodeString(spec.Annotations["run.oci.seccomp_bpf_data"])
	if err != nil || len(prog) == 0 || len(prog)%8 != 0 {
		t.Fatalf("the waiting sandbox's program: %d bytes (%v), want whole instructions", len(prog), err)
	}
	if spec.Linux.Seccomp == nil || len(spec.Linux.Seccomp.Syscalls) == 0 {
		t.Fatal("the spec lost its seccomp section")
	}
	task, err := ctrs[0].Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", task.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nSeccomp:\t2\n", "\nSeccomp_filters:\t1\n", "\nNoNewPrivs:\t1\n"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("the waiting agent's status lacks %q:\n%s", strings.TrimSpace(want), status)
		}
	}
}

// precompiled is d's count of sandboxes handed a compiled seccomp
// program.
func precompiled(t *testing.T, d *daemonProc) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^airlock_sandbox_seccomp_precompiled_total (\d+)$`).FindStringSubmatch(scrapeMetrics(t, d))
	if m == nil {
		t.Fatal("no airlock_sandbox_seccomp_precompiled_total")
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

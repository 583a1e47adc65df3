//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/agent"
	"github.com/airlock/airlock/sandbox/egress"
	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/job"
)

// poolWorld is a runner of its own with warm pools, on the suite's
// containerd, so its ready sandboxes never count as the suite's leftovers.
type poolWorld struct {
	runner   *sandbox.Runner
	profiles *policy.Set
	stateDir string
	closed   bool
}

func newPoolWorld(t *testing.T, pools map[string]sandbox.PoolConfig) *poolWorld {
	t.Helper()
	ctx := testContext(t)
	// Not t.TempDir, whose parent only root may search: gVisor's sentry
	// reaches the jobs' mounts as the host's nobody.
	dir, err := os.MkdirTemp("", "airlock-pool-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := footprint.MkdirTraversable(dir); err != nil {
		t.Fatal(err)
	}
	// The pools' mechanics do not depend on the runtime: these tests run
	// ironclaw's settings on runc here, on the suite's shared containerd,
	// whose gofer cannot reach the jobs' mounts under runsc (a stat of the
	// /tmp bind fails with EACCES). airlockd's runsc pools are tested on
	// its own containerd (TestShippedDaemon_PoolsAsConfigured,
	// TestAirlockdKilled_WarmPoolsReapedAndHeldShut).
	ironRunc := filepath.Join(dir, "ironclaw-runc.yaml")
	if err := os.WriteFile(ironRunc, []byte("extends: ironclaw\nisolation:\n  runtime: runc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	profiles, err := policy.Lint(policies.FS, []string{env.profileFile, ironRunc}, policy.WithDevMode(true), policy.WithSchemaCheck(result.CheckSchema))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := sandbox.ImagesFor(profiles.All(), filepath.Join(env.bin, "airlock-agent"), "/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	for i := range specs {
		specs[i].WaitsForStart = true
	}
	w := &poolWorld{profiles: profiles, stateDir: filepath.Join(dir, "state")}
	w.runner, err = sandbox.New(ctx, sandbox.Config{
		Address: env.address, StateDir: w.stateDir, Images: specs,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Egress:     egress.Config{Resolver: testResolver{}},
		VethPrefix: netip.MustParsePrefix("10.214.250.0/24"), ProxyPort: 3130,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !w.closed {
			w.runner.Close()
		}
		// A failed test must not leave its sandboxes on the host: a new
		// runner on the same state dir reaps whatever is left of it.
		if r, err := sandbox.New(context.Background(), sandbox.Config{Address: env.address, StateDir: w.stateDir}); err == nil {
			r.Close()
		}
	})
	for name, cfg := range pools {
		if err := w.runner.StartPool(w.profile(t, name), cfg); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *poolWorld) profile(t *testing.T, name string) *policy.Profile {
	t.Helper()
	p, err := w.profiles.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// job is a broker job as the broker would hand it over, with no overrides.
func (w *poolWorld) job(t *testing.T, profile, task string, params map[string]string, content string) *job.Job {
	p := w.profile(t, profile)
	services := map[string]job.Service{}
	for alias, svc := range p.Network.Services {
		services[alias] = job.Service{Upstream: svc.Upstream, Header: svc.Inject.Header, Secret: []byte(world.serviceKey)}
	}
	return &job.Job{
		ID: "pool-" + randHex(4), Image: p.Image(), Task: task, Params: params,
		Content: []job.Content{{Data: []byte(content), MediaType: "text/html"}},
		Tools:   p.EffectiveTools(policy.KnownTools), Policy: p, Services: services,
	}
}

// waitReady waits for the pool to hold n sandboxes. It only waits for
// the refill; no duration is asserted.
func (w *poolWorld) waitReady(t *testing.T, profile string, n int) {
	t.Helper()
	if !waitFor(60*time.Second, func() bool { return w.runner.PoolReady(profile) == n }) {
		t.Fatalf("pool %s holds %d sandboxes, want %d", profile, w.runner.PoolReady(profile), n)
	}
}

// containers lists the IDs of the containers on the suite's containerd,
// with the status of their tasks.
func poolContainers(t *testing.T) map[string]containerd.ProcessStatus {
	t.Helper()
	ctx := namespaces.WithNamespace(testContext(t), footprint.Namespace)
	cs, err := env.ctrd.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]containerd.ProcessStatus{}
	for _, c := range cs {
		st := containerd.ProcessStatus("no task")
		if task, err := c.Task(ctx, nil); err == nil {
			if s, err := task.Status(ctx); err == nil {
				st = s.Status
			}
		}
		out[c.ID()] = st
	}
	return out
}

func resultTitle(t *testing.T, out *job.Outcome) string {
	t.Helper()
	var r struct {
		Title string `json:"title"`
	}
	if err := json.Unmarshal(out.Result, &r); err != nil {
		t.Fatalf("result %q (%s): %v", out.Result, out.ResultProblem, err)
	}
	return r.Title
}

func TestWarmPool_JobsClaimFreshSandboxesNeverReused(t *testing.T) {
	w := newPoolWorld(t, map[string]sandbox.PoolConfig{"ironclaw-runc": {Size: 2}})
	w.waitReady(t, "ironclaw-runc", 2)
	ready := poolContainers(t)
	if len(ready) != 2 {
		t.Fatalf("containers with a full pool: %v, want 2", ready)
	}
	for id, st := range ready {
		// Started, and its agent waits for the start line with nothing
		// of a job in its input.
		if st != containerd.Running {
			t.Errorf("pooled sandbox %s is %s, want running", id, st)
		}
		if in := inputOf(t, id); len(in) != 1 || in[0] != "content" {
			t.Errorf("pooled sandbox %s's input holds %v before any job, want only the empty content dir", id, in)
		}
	}

	seen := map[string]bool{}
	for id := range ready {
		seen[id] = true
	}
	for i, title := range []string{"First Page", "Second Page", "Third Page"} {
		ctx := testContext(t)
		before := poolContainers(t)
		out, err := w.runner.Run(ctx, w.job(t, "ironclaw-runc", "extract_text", nil, "<title>"+title+"</title><p>body</p>"))
		if err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
		if !out.Warm {
			t.Errorf("job %d ran cold with a pool of 2", i)
		}
		// Each job sees its own input, not a predecessor's.
		if got := resultTitle(t, out); got != title {
			t.Errorf("job %d title %q, want %q", i, got, title)
		}
		if len(out.Phases) == 0 || out.Phases[0].Name != "bind" {
			t.Errorf("warm job phases %v, want them to start at bind", out.Phases)
		}
		// The claimed sandbox goes (its teardown may run just after the
		// job returns), and nothing that ran a job remains.
		var after map[string]containerd.ProcessStatus
		if !waitFor(30*time.Second, func() bool { after = poolContainers(t); return onlyUnclaimed(after) }) {
			t.Errorf("sandboxes after job %d: %v, want only unclaimed ones left", i, after)
		}
		if len(after) > len(before) {
			t.Errorf("containers %d -> %d over one job", len(before), len(after))
		}
		w.waitReady(t, "ironclaw-runc", 2)
		for id := range poolContainers(t) {
			if _, old := before[id]; !old && seen[id] {
				t.Errorf("sandbox %s came back after it ran a job", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != 2+3 {
		t.Errorf("%d distinct sandboxes for a pool of 2 and 3 jobs, want 5", len(seen))
	}
}

func TestWarmPool_OverriddenPolicyRunsCold(t *testing.T) {
	w := newPoolWorld(t, map[string]sandbox.PoolConfig{"ironclaw-runc": {Size: 1}})
	w.waitReady(t, "ironclaw-runc", 1)
	j := w.job(t, "ironclaw-runc", "extract_text", nil, "<title>Cold</title>")
	tight, err := j.Policy.Tighten(policy.Overrides{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	j.Policy = tight
	out, err := w.runner.Run(testContext(t), j)
	if err != nil {
		t.Fatal(err)
	}
	if out.Warm {
		t.Error("a job with overrides claimed a sandbox made for the plain profile")
	}
	if got := resultTitle(t, out); got != "Cold" {
		t.Errorf("title %q", got)
	}
	if w.runner.PoolReady("ironclaw-runc") != 1 {
		t.Errorf("pool holds %d after a cold job, want its 1 untouched", w.runner.PoolReady("ironclaw-runc"))
	}
}

func TestWarmPool_EgressIsTheClaimingJobs(t *testing.T) {
	w := newPoolWorld(t, map[string]sandbox.PoolConfig{"egresstest": {Size: 1}})
	w.waitReady(t, "egresstest", 1)
	var attempts []job.EgressAttempt
	j := w.job(t, "egresstest", "fetch", map[string]string{"url": world.allowed.URL + "/page"}, "fetch it")
	j.OnEgress = func(a job.EgressAttempt) { attempts = append(attempts, a) }
	before := world.allowed.hits.Load()
	out, err := w.runner.Run(testContext(t), j)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Warm {
		t.Fatal("job ran cold")
	}
	if got := resultTitle(t, out); got != "Allowed Page" {
		t.Errorf("title %q (logs %s)", got, out.Logs)
	}
	if world.allowed.hits.Load() != before+1 {
		t.Errorf("allowed server hits %d -> %d, want one more", before, world.allowed.hits.Load())
	}
	if len(out.Egress) == 0 || len(attempts) != len(out.Egress) {
		t.Errorf("egress log %v, callbacks %v: want the job's attempts in both", out.Egress, attempts)
	}

	forbiddenBefore := world.forbidden.conns.Load()
	w.waitReady(t, "egresstest", 1)
	j = w.job(t, "egresstest", "fetch", map[string]string{"url": world.forbidden.URL + "/"}, "fetch it")
	out, err = w.runner.Run(testContext(t), j)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Warm || len(out.Egress) == 0 || out.Egress[0].Allowed {
		t.Errorf("warm=%v egress %v: want a denied attempt", out.Warm, out.Egress)
	}
	if n := world.forbidden.conns.Load() - forbiddenBefore; n != 0 {
		t.Errorf("forbidden server got %d connections from a warm sandbox", n)
	}
}

func TestWarmPool_IdleAndMemoryPressureDrain(t *testing.T) {
	w := newPoolWorld(t, map[string]sandbox.PoolConfig{
		"ironclaw-runc": {Size: 1, MaxIdle: 2 * time.Second},
		"secureclaw":    {Size: 1, MinAvailable: 1 << 62}, // more than any host has
	})
	w.waitReady(t, "ironclaw-runc", 1)
	// Idle: drained without a claim, and nothing of it is left once the
	// drain's teardown is through.
	w.waitReady(t, "ironclaw-runc", 0)
	var got map[string]containerd.ProcessStatus
	if !waitFor(30*time.Second, func() bool { got = poolContainers(t); return len(got) == 0 }) {
		t.Errorf("containers after the idle drain: %v", got)
	}
	if w.runner.PoolReady("secureclaw") != 0 {
		t.Error("a pool under memory pressure filled")
	}
	// A claim wakes the idle pool: the job runs cold, the pool refills.
	out, err := w.runner.Run(testContext(t), w.job(t, "ironclaw-runc", "extract_text", nil, "<title>Wake</title>"))
	if err != nil {
		t.Fatal(err)
	}
	if out.Warm {
		t.Error("a job claimed from a drained pool")
	}
	w.waitReady(t, "ironclaw-runc", 1)
}

func TestWarmPool_CloseLeavesNothing(t *testing.T) {
	w := newPoolWorld(t, map[string]sandbox.PoolConfig{"ironclaw-runc": {Size: 2}, "egresstest": {Size: 2}})
	w.waitReady(t, "ironclaw-runc", 2)
	w.waitReady(t, "egresstest", 2)
	if got := poolContainers(t); len(got) != 4 {
		t.Fatalf("containers with full pools: %v, want 4", got)
	}
	w.closed = true
	if err := w.runner.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(w.stateDir, "jobs"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		dirs = append(dirs, e.Name())
	}
	if len(dirs) != 0 {
		t.Errorf("job dirs left by the pools: %v", dirs)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), w.stateDir) {
		t.Error("mounts left under the pool runner's state dir")
	}
	if got := poolContainers(t); len(got) != 0 {
		t.Errorf("containers after Close: %v", slices.Sorted(maps.Keys(got)))
	}
	requireNothingLeft(t)
}

// onlyUnclaimed says whether every sandbox is a pool's that has run no
// job: created, or started and waiting for its start line.
func onlyUnclaimed(cs map[string]containerd.ProcessStatus) bool {
	for _, st := range cs {
		if st != containerd.Created && st != containerd.Running {
			return false
		}
	}
	return true
}

// inputOf lists what the container's /input holds, read on the host.
func inputOf(t *testing.T, id string) []string {
	t.Helper()
	ctx := namespaces.WithNamespace(testContext(t), footprint.Namespace)
	c, err := env.ctrd.LoadContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range spec.Mounts {
		if m.Destination != agent.InputDir {
			continue
		}
		entries, err := os.ReadDir(m.Source)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if sub, err := os.ReadDir(filepath.Join(m.Source, "content")); err != nil || len(sub) != 0 {
			names = append(names, fmt.Sprintf("content holds %d entries (%v)", len(sub), err))
		}
		return names
	}
	t.Fatalf("container %s has no %s mount", id, agent.InputDir)
	return nil
}

// TestWarmPool_AgentGoneBeforeItsJobRunsCold: a warm sandbox whose agent,
// started ahead of its job, died (out of memory, say) is not given the job:
// the job runs cold, and the dead sandbox goes.
func TestWarmPool_AgentGoneBeforeItsJobRunsCold(t *testing.T) {
	w := newPoolWorld(t, map[string]sandbox.PoolConfig{"ironclaw-runc": {Size: 1}})
	w.waitReady(t, "ironclaw-runc", 1)
	ctx := namespaces.WithNamespace(testContext(t), footprint.Namespace)
	ready := poolContainers(t)
	if len(ready) != 1 {
		t.Fatalf("containers with a pool of 1: %v", ready)
	}
	var dead string
	for id := range ready {
		dead = id
		c, err := env.ctrd.LoadContainer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		task, err := c.Task(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	if !waitFor(30*time.Second, func() bool { return poolContainers(t)[dead] == containerd.Stopped }) {
		t.Fatalf("killed sandbox is %s, want stopped", poolContainers(t)[dead])
	}
	out, err := w.runner.Run(testContext(t), w.job(t, "ironclaw-runc", "extract_text", nil, "<title>After</title>"))
	if err != nil {
		t.Fatal(err)
	}
	if out.Warm {
		t.Error("the job was given the sandbox whose agent had died")
	}
	if got := resultTitle(t, out); got != "After" {
		t.Errorf("title %q", got)
	}
	if !waitFor(30*time.Second, func() bool { _, ok := poolContainers(t)[dead]; return !ok }) {
		t.Errorf("the dead warm sandbox %s is still there", dead)
	}
}

// TestColdJob_RunAheadWhenItsAgentWaits: a cold job of an image whose
// agent waits for its start line is run ahead, as a pool's sandbox is:
// its sandbox is started with the task's creation, before the job is
// bound to it, and the job only writes the start line. A sandbox started
// by the shim's start instead would show one start, after the bind.
func TestColdJob_RunAheadWhenItsAgentWaits(t *testing.T) {
	w := newPoolWorld(t, nil)
	for _, profile := range []string{"vanilla", "egresstest"} {
		out, err := w.runner.Run(testContext(t), w.job(t, profile, "extract_text", nil, "<title>Ahead</title>"))
		if err != nil {
			t.Fatal(err)
		}
		if out.Warm {
			t.Fatalf("%s: a job with no pool ran warm", profile)
		}
		if got := resultTitle(t, out); got != "Ahead" {
			t.Errorf("%s: title %q", profile, got)
		}
		var names []string
		for _, p := range out.Phases {
			names = append(names, p.Name)
		}
		bind := slices.Index(names, "bind")
		first := slices.Index(names, "start")
		if bind < 0 || first < 0 || first > bind || !slices.Contains(names[bind:], "start") {
			t.Errorf("%s: phases %v, want the sandbox started before the bind and the start line written after it", profile, names)
		}
	}
}

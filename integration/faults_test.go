//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

func sleepReq(profile string) *airlockv1.SpawnRequest {
	return &airlockv1.SpawnRequest{
		Profile:      profile,
		Task:         &airlockv1.Task{Name: "attack", Params: map[string]string{"attack": `[{"op":"sleep","seconds":600}]`}},
		Content:      []*airlockv1.Content{{Data: []byte("x")}},
		ResultSchema: corpusSchema,
		Overrides:    &airlockv1.Overrides{Timeout: durationpb.New(14 * time.Second)},
	}
}

// agentsUnder counts sandboxed agent processes whose containerd is d's.
func agentsUnder(d *daemonProc) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.HasPrefix(string(b), "/usr/bin/containerd-shim-runc-v2") {
			continue
		}
		if strings.Contains(string(b), d.dir) {
			n++
		}
	}
	return n
}

func TestAirlockdKilled_RestartReapsWithin10s(t *testing.T) {
	d, err := startDaemon()
	if err != nil {
		t.Fatal(err)
	}
	defer d.stop()
	var wg sync.WaitGroup
	profiles := []string{"vanilla", "secureclaw", "ironclaw", "egresstest", "egresstest"}
	for _, p := range profiles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// The call dies with airlockd; what matters is what it leaves.
			_, _ = d.conn.Broker.Spawn(ctx, sleepReq(p))
		}()
	}
	if !waitFor(60*time.Second, func() bool { return agentsUnder(d) >= len(profiles) }) {
		t.Fatalf("only %d of %d jobs started\n%s", agentsUnder(d), len(profiles), d.log.String())
	}
	d.kill9()
	wg.Wait()
	if len(daemonLeftovers(d)) == 0 && agentsUnder(d) == 0 {
		t.Fatal("the killed airlockd left nothing: the test proves nothing")
	}

	start := time.Now()
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	var left []string
	if !waitFor(10*time.Second, func() bool {
		left = daemonLeftovers(d)
		if agentsUnder(d) > 0 {
			left = append(left, "sandbox shims running")
		}
		return len(left) == 0
	}) {
		out, _ := exec.Command("sh", "-c", "ps -eo pid,ppid,stat,args | grep -E \"shim|airlock-agent\" | grep -v grep").CombinedOutput()
		t.Fatalf("10s after restart, still left: %v\n%s\n%s", left, out, d.log.String())
	}
	t.Logf("reaped %d jobs' sandboxes within %v of restart", len(profiles), time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := d.conn.Broker.Spawn(ctx, &airlockv1.SpawnRequest{
		Profile: "ironclaw", Task: &airlockv1.Task{Name: "attack", Params: map[string]string{"attack": `[{"op":"write_result","result":{"title":"after","summary":"restart"}}]`}},
		Content: []*airlockv1.Content{{Data: []byte("x")}}, ResultSchema: corpusSchema,
	})
	if err != nil || resp.Verdict != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("a new job after restart: %v %v", resp, err)
	}
}

func TestContainerdKilled_JobsFailClearlyAndBrokerRecovers(t *testing.T) {
	d, err := startDaemon()
	if err != nil {
		t.Fatal(err)
	}
	defer d.stop()
	const jobs = 3
	verdicts := make(chan *airlockv1.SpawnResponse, jobs)
	for i := 0; i < jobs; i++ {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			resp, err := d.conn.Broker.Spawn(ctx, sleepReq("vanilla"))
			if err != nil {
				resp = &airlockv1.SpawnResponse{Message: "rpc error: " + err.Error()}
			}
			verdicts <- resp
		}()
	}
	eventually(t, 60*time.Second, func() bool { return agentsUnder(d) >= jobs }, "fewer than %d jobs started", jobs)
	pid, err := os.ReadFile(d.dir + "/state/containerd/containerd.pid")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("kill", "-9", strings.TrimSpace(string(pid))).CombinedOutput(); err != nil {
		t.Fatalf("kill containerd: %v %s", err, out)
	}
	for i := 0; i < jobs; i++ {
		r := <-verdicts
		if r.Verdict != airlockv1.Verdict_VERDICT_SANDBOX_ERROR || r.Message == "" {
			t.Errorf("job in flight when containerd died: verdict %s message %q, want SANDBOX_ERROR with a reason", r.Verdict, r.Message)
		}
	}
	// The broker recovers by itself: a new job succeeds.
	var last error
	if !waitFor(30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		resp, err := d.conn.Broker.Spawn(ctx, &airlockv1.SpawnRequest{
			Profile: "vanilla", Task: &airlockv1.Task{Name: "attack", Params: map[string]string{"attack": `[{"op":"write_result","result":{"title":"back","summary":"ok"}}]`}},
			Content: []*airlockv1.Content{{Data: []byte("x")}}, ResultSchema: corpusSchema,
		})
		last = fmt.Errorf("%v %v", resp, err)
		return err == nil && resp.Verdict == airlockv1.Verdict_VERDICT_OK
	}) {
		t.Fatalf("broker did not recover: %v", last)
	}
	requireDaemonNothingLeft(t, d)
	eventually(t, 30*time.Second, func() bool { return agentsUnder(d) == 0 }, "sandboxes still running after recovery")
}

func TestAirlockdSIGTERM_DrainsRunningJobs(t *testing.T) {
	d, err := startDaemon()
	if err != nil {
		t.Fatal(err)
	}
	defer d.stop()
	results := make(chan *airlockv1.SpawnResponse, 2)
	for i := 0; i < 2; i++ {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			resp, err := d.conn.Broker.Spawn(ctx, &airlockv1.SpawnRequest{
				Profile: "vanilla", Task: &airlockv1.Task{Name: "attack", Params: map[string]string{
					"attack": `[{"op":"sleep","seconds":2},{"op":"write_result","result":{"title":"finished","summary":"ok"}}]`}},
				Content: []*airlockv1.Content{{Data: []byte("x")}}, ResultSchema: corpusSchema,
			})
			if err != nil {
				resp = &airlockv1.SpawnResponse{Message: err.Error()}
			}
			results <- resp
		}()
	}
	eventually(t, time.Minute, func() bool { return agentsUnder(d) >= 2 }, "jobs did not start")
	d.cmd.Process.Signal(syscall.SIGTERM)
	for i := 0; i < 2; i++ {
		if r := <-results; r.Verdict != airlockv1.Verdict_VERDICT_OK || r.Result.Fields["title"].GetStringValue() != "finished" {
			t.Errorf("a job running at SIGTERM: %s %s, want it to finish", r.Verdict, r.Message)
		}
	}
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("airlockd did not exit after draining")
	}
	if left := daemonLeftovers(d); len(left) != 0 && !(len(left) == 1 && strings.HasPrefix(left[0], "metrics unreachable")) {
		t.Errorf("left after a drained shutdown: %v", left)
	}
	if n := agentsUnder(d); n != 0 {
		t.Errorf("%d sandboxes running after shutdown", n)
	}
	if pids, _ := exec.Command("pgrep", "-f", d.dir+"/state/containerd/config.toml").Output(); len(pids) != 0 {
		t.Errorf("the embedded containerd still runs: %s", pids)
	}
}

// poolReady sums airlock_pool_ready over the daemon's pools.
func poolReady(t *testing.T, d *daemonProc) int {
	t.Helper()
	body := scrapeMetrics(t, d)
	n := 0
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, "airlock_pool_ready{"); ok {
			if f := strings.Fields(rest); len(f) == 2 {
				v, _ := strconv.Atoi(f[1])
				n += v
			}
		}
	}
	return n
}

func waitPoolReady(t *testing.T, d *daemonProc, want int) {
	t.Helper()
	if !waitFor(60*time.Second, func() bool { return poolReady(t, d) == want }) {
		t.Fatalf("pools hold %d sandboxes, want %d\n%s", poolReady(t, d), want, d.log.String())
	}
}

// A warm sandbox holds what a cold one does, under the hostile agent, and
// a kill -9 of airlockd with full pools leaves nothing after a restart. A
// second airlockd on the same state dir is refused rather than reaping
// the first's sandboxes.
func TestAirlockdKilled_WarmPoolsReapedAndHeldShut(t *testing.T) {
	d, err := startDaemon("--pool", "ironclaw=2,egresstest=2")
	if err != nil {
		t.Fatal(err)
	}
	defer d.stop()
	waitPoolReady(t, d, 4)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, profile := range []string{"ironclaw", "egresstest"} {
		req := hostileReq("env", nil)
		req.Profile = profile
		resp, err := d.conn.Broker.Spawn(ctx, req)
		if err != nil || resp.Verdict != airlockv1.Verdict_VERDICT_OK {
			t.Fatalf("%s: warm env job: %v %v", profile, resp, err)
		}
		var names []string
		for _, v := range resp.Result.Fields["env"].GetListValue().GetValues() {
			names = append(names, strings.SplitN(v.GetStringValue(), "=", 2)[0])
		}
		slices.Sort(names)
		want := []string{"AIRLOCK_RUN_ID", "HOME", "LANG", "PATH"}
		if profile == "egresstest" {
			want = []string{"AIRLOCK_RUN_ID", "HOME", "HTTPS_PROXY", "HTTP_PROXY", "LANG", "NO_PROXY", "PATH", "http_proxy", "https_proxy", "no_proxy"}
		}
		if !slices.Equal(names, want) {
			t.Errorf("%s: warm sandbox env %v, want %v", profile, names, want)
		}
		if strings.Contains(resp.String(), d.canary) || strings.Contains(resp.String(), world.serviceKey) {
			t.Errorf("%s: a secret crossed from a warm sandbox", profile)
		}
	}
	if !strings.Contains(scrapeMetrics(t, d), `airlock_pool_claims_total{profile="ironclaw",result="hit"} 1`) {
		t.Errorf("the ironclaw job did not run warm:\n%s", scrapeMetrics(t, d))
	}
	waitPoolReady(t, d, 4)

	second := exec.Command(filepath.Join(env.bin, "airlockd"), append(d.flags(), "--socket", filepath.Join(d.dir, "second.sock"))...)
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another airlockd") {
		t.Fatalf("a second airlockd on the same state dir: %v\n%s", err, out)
	}
	if n := poolReady(t, d); n != 4 {
		t.Errorf("pools hold %d after the refused second broker, want 4", n)
	}

	d.kill9()
	if left := daemonLeftovers(d); len(left) < 4 {
		t.Fatalf("the killed airlockd left %v: the test proves nothing", left)
	}
	d.args = nil
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	var left []string
	if !waitFor(10*time.Second, func() bool { left = daemonLeftovers(d); return len(left) == 0 }) {
		t.Fatalf("10s after restart, still left: %v\n%s", left, d.log.String())
	}
}

func scrapeMetrics(t *testing.T, d *daemonProc) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", d.metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"google.golang.org/grpc"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/audit"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/policies"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/agent"
	"github.com/airlock/airlock/sandbox/toolgw"
)

// toolApprovalTimeout is the tool world's approval timeout: short, so the
// timeout case runs in seconds, and long enough for the checks made while
// a job waits for an approval.
const toolApprovalTimeout = 15 * time.Second

// askProfile is vanilla with a narrower allowlist and ask on-miss: head is
// in its image but allowed only as "head -c ...", so "head -n" is a miss
// that can run once approved.
const askProfile = `extends: vanilla
exec:
  allowedPatterns: [/bin/cat, /bin/wc, "/bin/head -c *"]
  ask: on-miss
  askFallback: deny
`

// toolWorld is a broker of its own on the suite's containerd, with a short
// approval timeout, so that the suite's broker keeps its defaults. Its
// profiles have no network, so it needs no address pool of the suite's.
type toolWorld struct {
	broker   airlockv1.BrokerClient
	stateDir string
	audit    *lockedBuffer
}

// newToolWorld starts the tool world. Like the suite's runner, its runner
// reaps the namespace on start: nothing else may be running then.
func newToolWorld(t *testing.T) *toolWorld {
	t.Helper()
	ctx := testContext(t)
	dir := t.TempDir()
	if err := sandbox.MkdirTraversable(dir); err != nil {
		t.Fatal(err)
	}
	profFile := filepath.Join(dir, "toolsask.yaml")
	if err := os.WriteFile(profFile, []byte(askProfile), 0o600); err != nil {
		t.Fatal(err)
	}
	profiles, err := policy.Lint(policies.FS, []string{profFile})
	if err != nil {
		t.Fatal(err)
	}
	specs, err := sandbox.ImagesFor(profiles.All(), filepath.Join(env.bin, "airlock-agent"), "/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	stateDir := filepath.Join(dir, "state")
	runner, err := sandbox.New(ctx, sandbox.Config{
		Address: env.address, StateDir: stateDir, Images: specs, Logger: log,
		Pool: netip.MustParsePrefix("10.214.251.0/24"), ProxyPort: 3129,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { runner.Close() })
	auditBuf := &lockedBuffer{}
	srv, err := broker.New(broker.Config{Runner: runner, Profiles: profiles, Logger: log, ApprovalTimeout: toolApprovalTimeout, Audit: audit.New(auditBuf)})
	if err != nil {
		t.Fatal(err)
	}
	token := randHex(32)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := broker.NewGRPCServer(srv, []byte(token))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "airlock.sock")
	lis, err := listenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := client.Dial(sock, "", tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &toolWorld{broker: conn.Broker, stateDir: stateDir, audit: auditBuf}
}

// runReq asks the reference agent to make calls through its gateway.
func runReq(profile string, calls ...[]string) *airlockv1.SpawnRequest {
	b, err := json.Marshal(calls)
	if err != nil {
		panic(err)
	}
	return &airlockv1.SpawnRequest{
		Profile:      profile,
		Task:         &airlockv1.Task{Name: "run", Params: map[string]string{"calls": string(b)}},
		Content:      []*airlockv1.Content{{Data: []byte("twelve bytes"), MediaType: "text/plain"}},
		ResultSchema: anyObject,
	}
}

// callsOf decodes the run task's result.
func callsOf(t *testing.T, resp *airlockv1.SpawnResponse) []agent.CallResult {
	t.Helper()
	if resp.Verdict != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("verdict %v: %s", resp.Verdict, resp.Message)
	}
	b, err := resp.Result.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var res agent.RunResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return res.Calls
}

func execVerdicts(resp *airlockv1.SpawnResponse) string {
	var v []string
	for _, e := range resp.GetExec() {
		v = append(v, strings.TrimPrefix(e.Verdict.String(), "EXEC_VERDICT_"))
	}
	return strings.Join(v, ",")
}

func TestToolGateway(t *testing.T) {
	w := newToolWorld(t)

	t.Run("an allowlisted command runs and a denied one is refused", func(t *testing.T) {
		resp, err := w.broker.Spawn(testContext(t), runReq("vanilla",
			[]string{"wc", "-c", "/input/content/0"},
			[]string{"sh", "-c", "id"},
			[]string{"/bin/busybox", "sh", "-c", "id"},
			[]string{"/bin/../tmp/cat", "/input/job.json"},
			[]string{"cat", "/input/content/0"},
		))
		if err != nil {
			t.Fatal(err)
		}
		calls := callsOf(t, resp)
		if len(calls) != 5 {
			t.Fatalf("calls = %+v", calls)
		}
		if c := calls[0]; !c.Allowed || c.ExitCode != 0 || strings.TrimSpace(c.Stdout) != "12 /input/content/0" {
			t.Errorf("wc -c: %+v", c)
		}
		for _, c := range calls[1:4] {
			if c.Allowed || c.ExitCode != -1 || c.Stdout != "" ||
				!(strings.Contains(c.Reason, "matches no allowed pattern") || strings.Contains(c.Reason, "cannot be resolved")) {
				t.Errorf("%q: %+v, want refused by the allowlist", c.Argv, c)
			}
		}
		if c := calls[4]; !c.Allowed || c.Stdout != "twelve bytes" {
			t.Errorf("cat: %+v", c)
		}
		if v := execVerdicts(resp); v != "ALLOWED,DENIED,DENIED,DENIED,ALLOWED" {
			t.Errorf("exec decisions = %s", v)
		}
		if resp.Exec[0].ExitCode != 0 || !resp.Exec[0].Allowed {
			t.Errorf("decision of wc: %v", resp.Exec[0])
		}
		// The agent restricts itself with Landlock where the kernel can;
		// elsewhere it says so on stderr, which reaches the audit log.
		if strings.Contains(w.audit.String(), "without a Landlock restriction") {
			t.Logf("the agent ran without Landlock on this kernel")
		} else {
			t.Logf("the agent ran under Landlock")
		}
	})

	headN := []string{"head", "-n", "1", "/input/content/0"}

	t.Run("on-miss asks; allow once runs once, a repeat asks again, deny refuses; hostile moves fail", func(t *testing.T) {
		ctx := testContext(t)
		stream, err := w.broker.SpawnStream(ctx, &airlockv1.SpawnStreamRequest{Spawn: runReq("toolsask",
			headN, headN, []string{"head", "-c", "6", "/input/content/0"})})
		if err != nil {
			t.Fatal(err)
		}
		allow, deny := airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE, airlockv1.ApprovalDecision_APPROVAL_DECISION_DENY
		asked, resp := approveEach(t, w.broker, stream, func(jobID string) {
			hostileMoves(t, ctx, w, jobID)
		}, allow, deny)
		if len(asked) != 2 {
			t.Fatalf("asked %d times, want 2: the approved command again, and never the match", len(asked))
		}
		for _, a := range asked {
			if strings.Join(a.Argv, " ") != strings.Join(headN, " ") || a.Cwd != "/" || !strings.Contains(a.Reason, "matches no allowed pattern") {
				t.Errorf("approval event: %v", a)
			}
		}
		calls := callsOf(t, resp)
		if c := calls[0]; !c.Allowed || c.ExitCode != 0 || c.Stdout != "twelve bytes" {
			t.Errorf("approved head -n: %+v", c)
		}
		if c := calls[1]; c.Allowed || !strings.Contains(c.Reason, "denied by the caller") {
			t.Errorf("repeat, denied: %+v", c)
		}
		if c := calls[2]; !c.Allowed || c.Stdout != "twelve" {
			t.Errorf("head -c, a match: %+v", c)
		}
		if v := execVerdicts(resp); v != "APPROVED,DENIED_BY_CALLER,ALLOWED" {
			t.Errorf("exec decisions = %s", v)
		}
	})

	t.Run("an unanswered approval times out to the fallback", func(t *testing.T) {
		stream, err := w.broker.SpawnStream(testContext(t), &airlockv1.SpawnStreamRequest{Spawn: runReq("toolsask", headN)})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		asked, resp := approveEach(t, w.broker, stream, nil)
		if len(asked) != 1 || time.Since(start) < toolApprovalTimeout {
			t.Fatalf("asked %d times, finished after %s", len(asked), time.Since(start))
		}
		if c := callsOf(t, resp)[0]; c.Allowed || !strings.Contains(c.Reason, "no answer within") {
			t.Errorf("call: %+v", c)
		}
		if v := execVerdicts(resp); v != "FALLBACK" {
			t.Errorf("exec decisions = %s", v)
		}
	})

	t.Run("a unary Spawn cannot be asked and falls back at once", func(t *testing.T) {
		resp, err := w.broker.Spawn(testContext(t), runReq("toolsask", headN))
		if err != nil {
			t.Fatal(err)
		}
		if c := callsOf(t, resp)[0]; c.Allowed || !strings.Contains(c.Reason, "unary") {
			t.Errorf("call: %+v", c)
		}
		if v := execVerdicts(resp); v != "FALLBACK" {
			t.Errorf("exec decisions = %s", v)
		}
	})

	t.Run("the broker is healthy and nothing is left", func(t *testing.T) {
		if _, err := w.broker.ListProfiles(testContext(t), &airlockv1.ListProfilesRequest{}); err != nil {
			t.Fatal(err)
		}
		requireNothingLeft(t)
		if left, _ := filepath.Glob(filepath.Join(w.stateDir, "jobs", "*")); len(left) != 0 {
			t.Fatalf("job dirs left: %v", left)
		}
	})
}

// hostileMoves is what a compromised agent would try while its job waits
// for an approval: exec a binary directly, use another job's capability,
// flood the gateway. Each must fail, and the job must go on.
func hostileMoves(t *testing.T, ctx context.Context, w *toolWorld, jobID string) {
	t.Helper()
	c := jobContainer(t, ctx, jobID)
	// Direct exec with the agent's own credentials: busybox, whatever it
	// is called, is execute-only for the tools group; there is no shell.
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"/bin/busybox", "sh", "-c", "id"}, "permission denied"},
		{[]string{"/bin/cat", "/input/job.json"}, "permission denied"},
		{[]string{"/bin/sh", "-c", "id"}, "no such file"},
		{[]string{"/bin/id"}, "no such file"},
	} {
		err := execAsAgent(t, ctx, c, tc.argv...)
		t.Logf("direct exec of %q as the agent: %v", tc.argv, err)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), tc.want) {
			t.Errorf("direct exec of %q: %v, want %q", tc.argv, err, tc.want)
		}
	}

	sock, ownCap := socketOf(t, w.stateDir, jobID)
	// Another job's capability, taken from a second job waiting for its
	// own approval.
	otherID, otherCap, release := waitingJob(t, w)
	defer release()
	if otherCap == ownCap || otherID == jobID {
		t.Fatal("two jobs share a capability")
	}
	resp, err := toolgw.Call(sock, toolgw.Request{Cap: otherCap, Argv: []string{"cat", "/input/job.json"}}, 10*time.Second)
	if err != nil || resp.Allowed || resp.Reason != toolgw.ReasonBadCapability {
		t.Errorf("another job's capability: %+v, %v", resp, err)
	}
	// A flood of connections: most are refused at once, none reach the
	// broker, and the gateway keeps serving.
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := map[string]int{}
	for range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("unix", sock)
			if err != nil {
				mu.Lock()
				refused["dial: "+errClass(err)]++
				mu.Unlock()
				return
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = conn.Write([]byte{0, 0, 0, 4, 'j', 'u', 'n', 'k'})
			var r toolgw.Response
			reason := "no answer"
			if toolgw.ReadFrame(conn, &r, toolgw.MaxResponseBytes) == nil {
				reason = r.Reason
			}
			mu.Lock()
			refused[reason]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("flood of 300: %v", refused)
	if refused[toolgw.ReasonRateLimited]+refused[toolgw.ReasonBusy] == 0 {
		t.Errorf("the flood was not throttled: %v", refused)
	}
	if _, err := w.broker.ListProfiles(ctx, &airlockv1.ListProfilesRequest{}); err != nil {
		t.Errorf("broker during the flood: %v", err)
	}
	// The bucket refills before the job's next calls.
	time.Sleep(2500 * time.Millisecond)
}

// waitingJob starts a job that waits for an approval and returns its ID
// and capability; release denies the approval and waits for the job.
func waitingJob(t *testing.T, w *toolWorld) (string, string, func()) {
	t.Helper()
	ctx := testContext(t)
	stream, err := w.broker.SpawnStream(ctx, &airlockv1.SpawnStreamRequest{Spawn: runReq("toolsask", []string{"head", "-n", "2", "/input/content/0"})})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("second job: %v", err)
		}
		if a := ev.GetApprovalNeeded(); a != nil {
			_, capability := socketOf(t, w.stateDir, ev.JobId)
			return ev.JobId, capability, func() {
				_, _ = w.broker.Approve(ctx, &airlockv1.ApproveRequest{JobId: ev.JobId, RequestId: a.RequestId,
					Decision: airlockv1.ApprovalDecision_APPROVAL_DECISION_DENY})
				for {
					if _, err := stream.Recv(); err != nil {
						return
					}
				}
			}
		}
	}
}

func errClass(err error) string {
	if errors.Is(err, syscall.EAGAIN) {
		return "EAGAIN"
	}
	return err.Error()
}

// approveEach reads a stream to its end, answering the n-th approval with
// answers[n] (none: let it time out), and calling during(jobID) at the
// first one, while the job waits.
func approveEach(t *testing.T, b airlockv1.BrokerClient, stream grpc.ServerStreamingClient[airlockv1.SpawnStreamResponse],
	during func(jobID string), answers ...airlockv1.ApprovalDecision) ([]*airlockv1.ApprovalNeeded, *airlockv1.SpawnResponse) {
	t.Helper()
	var asked []*airlockv1.ApprovalNeeded
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("stream ended before the finished event: %v", err)
		}
		if f := ev.GetFinished(); f != nil {
			return asked, f
		}
		a := ev.GetApprovalNeeded()
		if a == nil {
			continue
		}
		asked = append(asked, a)
		if len(asked) == 1 && during != nil {
			during(ev.JobId)
		}
		if n := len(asked) - 1; n < len(answers) {
			if _, err := b.Approve(testContext(t), &airlockv1.ApproveRequest{JobId: ev.JobId, RequestId: a.RequestId, Decision: answers[n]}); err != nil {
				t.Fatalf("Approve %s: %v", a.RequestId, err)
			}
		}
	}
}

// jobContainer finds the running container of a broker job.
func jobContainer(t *testing.T, ctx context.Context, jobID string) containerd.Container {
	t.Helper()
	cs, err := env.ctrd.Containers(ctx, fmt.Sprintf("labels.%q==%s", sandbox.LabelJob, jobID))
	if err != nil || len(cs) != 1 {
		t.Fatalf("containers of job %s: %v, %v", jobID, cs, err)
	}
	return cs[0]
}

// execAsAgent runs argv in the job's container with the agent's own
// process spec (user, groups, capabilities), as a hostile agent that tried
// to exec it directly would, and returns the error of starting it.
func execAsAgent(t *testing.T, ctx context.Context, c containerd.Container, argv ...string) error {
	t.Helper()
	task, err := c.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ps := *spec.Process
	ps.Args = argv
	id := "direct-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	p, err := task.Exec(ctx, id, &ps, cio.NullIO)
	if err != nil {
		return err
	}
	defer p.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
	exitCh, err := p.Wait(ctx)
	if err != nil {
		return err
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	select {
	case st := <-exitCh:
		return fmt.Errorf("%q started and exited %d", argv, st.ExitCode())
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%q started and is still running", argv)
	}
}

// socketOf returns a host path of a running job's gateway socket and the
// capability in its job.json.
func socketOf(t *testing.T, stateDir, jobID string) (string, string) {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(stateDir, "jobs", "airlock-*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "input", "job.json"))
		if err != nil {
			continue
		}
		var j agent.Job
		if json.Unmarshal(b, &j) == nil && j.ID == jobID && j.Gateway != nil {
			// The socket's host path is longer than connect takes; a
			// short link to its directory reaches it.
			link := filepath.Join(os.TempDir(), "tgw-"+randHex(6))
			if err := os.Symlink(filepath.Join(d, "run", "airlock"), link); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(link) })
			return filepath.Join(link, "tools.sock"), j.Gateway.Capability
		}
	}
	t.Fatalf("no job dir of %s under %s", jobID, stateDir)
	return "", ""
}

// lockedBuffer is an audit log the test can read while the broker writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

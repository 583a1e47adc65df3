//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"google.golang.org/grpc"

	"github.com/airlock/airlock/broker/audit"
	"github.com/airlock/airlock/cmd/airlockd/server"
	"github.com/airlock/airlock/images"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/agent"
	"github.com/airlock/airlock/sandbox/footprint"
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

// fileToolsProfile is vanilla with the file tools; fetch stays denied.
// fileToolsAskProfile asks the caller on a miss.
const (
	fileToolsProfile = `extends: vanilla
tools:
  allowed: [group:agent, exec, read, write, edit]
`
	fileToolsAskProfile = `extends: filetools
exec:
  ask: on-miss
  askFallback: deny
`
)

// toolWorld is an airlockd of its own on the suite's containerd, with a
// short approval timeout, so that the suite's broker keeps its defaults.
// Its profiles have no network, so it needs no address pool of the
// suite's.
type toolWorld struct {
	broker    airlockv1.BrokerClient
	stateDir  string
	auditPath string
	// socket and tokenFile reach it from outside the test process.
	socket, tokenFile string
}

var toolWorldOnce struct {
	sync.Once
	w   *toolWorld
	err error
}

// sharedToolWorld starts the tool world on first use, for every
// TestToolGateway_ test; TestMain's teardown stops it. Like the suite's
// runner, its runner reaps the namespace on start: nothing else may be
// running then, which holds since the suite's tests run one at a time.
func sharedToolWorld(t *testing.T) *toolWorld {
	t.Helper()
	toolWorldOnce.Do(func() { toolWorldOnce.w, toolWorldOnce.err = newToolWorld() })
	if toolWorldOnce.err != nil {
		t.Fatalf("tool world: %v", toolWorldOnce.err)
	}
	return toolWorldOnce.w
}

func newToolWorld() (*toolWorld, error) {
	dir, err := os.MkdirTemp("", "airlock-tools-")
	if err != nil {
		return nil, err
	}
	stops = append(stops, func() error { return os.RemoveAll(dir) })
	if err := footprint.MkdirTraversable(dir); err != nil {
		return nil, err
	}
	w := &toolWorld{auditPath: filepath.Join(dir, "audit.jsonl")}
	srv, conn, err := startServer(dir, map[string]string{
		"toolsask.yaml": askProfile, "filetools.yaml": fileToolsProfile, "filetoolsask.yaml": fileToolsAskProfile,
	}, func(o *server.Options) {
		o.AuditLog = w.auditPath
		o.ApprovalTimeout = toolApprovalTimeout
		o.EgressPool = netip.MustParsePrefix("10.214.251.0/24")
		o.ProxyPort = 3129
	})
	if err != nil {
		return nil, err
	}
	w.stateDir = srv.Options().StateDir
	w.socket, w.tokenFile = srv.Options().Socket, srv.Options().TokenFile
	w.broker = conn.Broker
	return w, nil
}

// runReq asks the reference agent to make calls through its gateway.
func runReq(profile string, calls ...[]string) *airlockv1.SpawnRequest {
	mixed := make([]any, len(calls))
	for i, c := range calls {
		mixed[i] = c
	}
	return toolCallsReq(profile, mixed...)
}

// toolCallsReq is runReq with calls that are argv arrays or tool objects.
func toolCallsReq(profile string, calls ...any) *airlockv1.SpawnRequest {
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
func callsOf(t *testing.T, resp outcome) []agent.CallResult {
	t.Helper()
	if resp.GetVerdict() != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("verdict %v: %s", resp.GetVerdict(), resp.GetMessage())
	}
	b, err := resp.GetResult().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var res agent.RunResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return res.Calls
}

func execVerdicts(resp outcome) string {
	var v []string
	for _, e := range resp.GetExec() {
		v = append(v, strings.TrimPrefix(e.Verdict.String(), "EXEC_VERDICT_"))
	}
	return strings.Join(v, ",")
}

// headN is the command the on-miss tests have the job ask for.
var headN = []string{"head", "-n", "1", "/input/content/0"}

// TestToolGateway_AllowlistedCommandRunsDeniedIsRefused: an allowlisted command runs and a denied one is refused.
func TestToolGateway_AllowlistedCommandRunsDeniedIsRefused(t *testing.T) {
	w := sharedToolWorld(t)
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
	if b, _ := os.ReadFile(w.auditPath); strings.Contains(string(b), "without a Landlock restriction") {
		t.Logf("the agent ran without Landlock on this kernel")
	} else {
		t.Logf("the agent ran under Landlock")
	}
}

// TestToolGateway_OnMissAsksAllowOnceRunsOnceDenyRefusesHostileMovesFail: on-miss asks; allow once runs once, a repeat asks again, deny refuses; hostile moves fail.
func TestToolGateway_OnMissAsksAllowOnceRunsOnceDenyRefusesHostileMovesFail(t *testing.T) {
	w := sharedToolWorld(t)
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
		// Exactly the argv that will run, its binary resolved.
		if strings.Join(a.Argv, " ") != "/bin/"+strings.Join(headN, " ") || a.Cwd != "/" || !strings.Contains(a.Reason, "matches no allowed pattern") {
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
}

// TestToolGateway_UnansweredApprovalTimesOutToTheFallback: an unanswered approval times out to the fallback.
func TestToolGateway_UnansweredApprovalTimesOutToTheFallback(t *testing.T) {
	w := sharedToolWorld(t)
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
}

// TestToolGateway_UnarySpawnFallsBackAtOnce: a unary Spawn cannot be asked and falls back at once.
func TestToolGateway_UnarySpawnFallsBackAtOnce(t *testing.T) {
	w := sharedToolWorld(t)
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
}

// TestToolGateway_FileToolsWriteToTmpReadsBackElsewhereRefused: file tools: a write to /tmp reads back; writes elsewhere are refused, and fetch is not the job's.
func TestToolGateway_FileToolsWriteToTmpReadsBackElsewhereRefused(t *testing.T) {
	w := sharedToolWorld(t)
	resp, err := w.broker.Spawn(testContext(t), toolCallsReq("filetools",
		writeCall("/tmp/note", "hello tools"),
		readCall("/tmp/note"),
		editCall("/tmp/note", "hello", "bye"),
		readCall("/tmp/note"),
		writeCall("/output/out.txt", "kept"),
		readCall("/input/content/0"),
		writeCall("/etc/x", "pwned"),
		writeCall("/input/x", "pwned"),
		editCall("/tmp/../etc/passwd", "root", "toor"),
		map[string]string{"tool": "fetch", "url": "http://example.com/"},
	))
	if err != nil {
		t.Fatal(err)
	}
	calls := callsOf(t, resp)
	if len(calls) != 10 {
		t.Fatalf("calls = %+v", calls)
	}
	for i, want := range []string{"", "hello tools", "", "bye tools", "", "twelve bytes"} {
		if c := calls[i]; !c.Allowed || c.ExitCode != 0 || c.Text != want {
			t.Errorf("call %d (%s %s): %+v, want allowed with text %q", i, c.Tool, c.Path, c, want)
		}
	}
	for i, want := range []string{"outside /tmp, /output; exec.ask is off", "outside /tmp, /output; exec.ask is off", "not clean"} {
		if c := calls[6+i]; c.Allowed || c.ExitCode != -1 || !strings.Contains(c.Reason, want) {
			t.Errorf("call %d (%s %s): %+v, want refused by the broker: %q", 6+i, c.Tool, c.Path, c, want)
		}
	}
	// Not among the job's tools: the agent refuses it without asking.
	if c := calls[9]; c.Allowed || !strings.Contains(c.Reason, "refused by the agent") {
		t.Errorf("fetch: %+v", c)
	}
	if v := execVerdicts(resp); v != "ALLOWED,ALLOWED,ALLOWED,ALLOWED,ALLOWED,ALLOWED,DENIED,DENIED,DENIED" {
		t.Errorf("decisions = %s", v)
	}
	if e := resp.Exec[6]; strings.Join(e.Argv, " ") != "write /etc/x" || e.Allowed || e.Cwd != "" {
		t.Errorf("decision on write /etc/x: %v", e)
	}
	rec := auditRecordOf(t, w, resp.JobId)
	if rec.Exec["EXEC_VERDICT_ALLOWED"] != 6 || rec.Exec["EXEC_VERDICT_DENIED"] != 3 {
		t.Errorf("audit exec counts = %v", rec.Exec)
	}
}

// TestToolGateway_FileToolsOnMissAskKernelRefusesApprovedWriteOutsideRoots: file tools on-miss: a miss asks; an approved write outside /tmp and /output fails in the kernel; a denied tool is refused.
func TestToolGateway_FileToolsOnMissAskKernelRefusesApprovedWriteOutsideRoots(t *testing.T) {
	w := sharedToolWorld(t)
	ctx := testContext(t)
	stream, err := w.broker.SpawnStream(ctx, &airlockv1.SpawnStreamRequest{Spawn: toolCallsReq("filetoolsask",
		writeCall("/etc/x", "pwned"),
		writeCall("/input/x", "pwned"),
		writeCall("/dev/shm/x", "pwned"),
		readCall("/etc/hostname"),
		writeCall("/tmp/ok", "fine"),
	)})
	if err != nil {
		t.Fatal(err)
	}
	allow, deny := airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE, airlockv1.ApprovalDecision_APPROVAL_DECISION_DENY
	var inputDir string
	asked, resp := approveEach(t, w.broker, stream, func(jobID string) {
		dir, j := jobOf(t, w.stateDir, jobID)
		inputDir = filepath.Join(dir, "input")
		if want := []string{"classify", "edit", "exec", "extract_links", "extract_text", "read", "summarize", "write"}; !slices.Equal(j.Tools, want) {
			t.Errorf("job.json tools = %v, want the profile's effective tools %v", j.Tools, want)
		}
		hostileFileMoves(t, ctx, w, jobID)
	}, allow, allow, allow, deny)
	if len(asked) != 4 {
		t.Fatalf("asked %d times, want 4: every miss, never the write to /tmp", len(asked))
	}
	for i, want := range []string{"write /etc/x", "write /input/x", "write /dev/shm/x", "read /etc/hostname"} {
		if a := asked[i]; a.Request != want || strings.Join(a.Argv, " ") != want || a.Cwd != "" || !strings.Contains(a.Reason, "outside") {
			t.Errorf("approval %d: %v, want %q", i, a, want)
		}
	}
	calls := callsOf(t, resp)
	// Approved, so the agent tried: the read-only root and input
	// refuse it whatever the broker said.
	for _, c := range calls[:2] {
		if c.Allowed || c.ExitCode != -1 || !strings.Contains(c.Reason, "approved once") || !strings.Contains(c.Reason, "read-only file system") {
			t.Errorf("%s %s: %+v, want approved and refused by the kernel", c.Tool, c.Path, c)
		}
	}
	if _, err := os.Stat(filepath.Join(inputDir, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/input/x reached the job's input dir: %v", err)
	}
	// /dev/shm is not mounted, so there is no writable place outside
	// /tmp and /output to reach; Landlock would refuse one anyway.
	if c := calls[2]; c.Allowed || c.ExitCode != -1 || !strings.Contains(c.Reason, "approved once") ||
		!(strings.Contains(c.Reason, "no such file") || strings.Contains(c.Reason, "permission denied")) {
		t.Errorf("write /dev/shm/x: %+v, want approved and refused by the sandbox", c)
	}
	if c := calls[3]; c.Allowed || !strings.Contains(c.Reason, "denied by the caller") {
		t.Errorf("read /etc/hostname, denied: %+v", c)
	}
	if c := calls[4]; !c.Allowed || c.ExitCode != 0 {
		t.Errorf("write /tmp/ok: %+v", c)
	}
	// The job's own calls, and the hostile requests made while the
	// first one waited, each decided once.
	got := map[string]string{}
	for _, e := range resp.Exec {
		got[strings.Join(e.Argv, " ")] = strings.TrimPrefix(e.Verdict.String(), "EXEC_VERDICT_")
	}
	want := map[string]string{
		"write /etc/x": "APPROVED", "write /input/x": "APPROVED", "write /dev/shm/x": "APPROVED",
		"read /etc/hostname": "DENIED_BY_CALLER", "write /tmp/ok": "ALLOWED",
		"fetch hxxp[:]//example[.]com/": "DENIED", "write /tmp/../etc/x": "DENIED", "edit input": "DENIED",
	}
	if !maps.Equal(got, want) {
		t.Errorf("decisions = %v\nwant %v", got, want)
	}
	if rec := auditRecordOf(t, w, resp.JobId); rec.Exec["EXEC_VERDICT_APPROVED"] != 3 || rec.Exec["EXEC_VERDICT_DENIED"] != 3 {
		t.Errorf("audit exec counts = %v", rec.Exec)
	}
}

// TestToolGateway_FileToolsOnUnarySpawnFallBackAtOnce: file tools on a unary Spawn: a miss falls back at once.
func TestToolGateway_FileToolsOnUnarySpawnFallBackAtOnce(t *testing.T) {
	w := sharedToolWorld(t)
	resp, err := w.broker.Spawn(testContext(t), toolCallsReq("filetoolsask", writeCall("/input/x", "pwned"), readCall("/input/content/0")))
	if err != nil {
		t.Fatal(err)
	}
	calls := callsOf(t, resp)
	if c := calls[0]; c.Allowed || !strings.Contains(c.Reason, "unary") || !strings.Contains(c.Reason, "askFallback (deny)") {
		t.Errorf("write /input/x: %+v", c)
	}
	if c := calls[1]; !c.Allowed || c.Text != "twelve bytes" {
		t.Errorf("read /input/content/0: %+v", c)
	}
	if v := execVerdicts(resp); v != "FALLBACK,ALLOWED" {
		t.Errorf("decisions = %s", v)
	}
}

// TestToolGateway_CommandLineChainShortCircuits: a command line: an allowlisted chain runs both; && and || short-circuit on the exit code; ; runs on.
func TestToolGateway_CommandLineChainShortCircuits(t *testing.T) {
	w := sharedToolWorld(t)
	lines := []string{
		"cat /input/content/0 && wc -c /input/content/0",
		"grep -q absent /input/content/0 && cat /input/content/0",
		"grep -q absent /input/content/0 || wc -c /input/content/0",
		"grep -q twelve /input/content/0 || cat /input/content/0",
		"cat /input/absent ; head -c 6 /input/content/0",
	}
	calls := make([]any, len(lines))
	for i, l := range lines {
		calls[i] = map[string]string{"command": l}
	}
	resp, err := w.broker.Spawn(testContext(t), toolCallsReq("vanilla", calls...))
	if err != nil {
		t.Fatal(err)
	}
	got := callsOf(t, resp)
	want := []struct {
		code   int
		stdout string
	}{
		{0, "twelve bytes12 /input/content/0\n"},
		{1, ""},
		{0, "12 /input/content/0\n"},
		{0, ""},
		{0, "twelve"},
	}
	if len(got) != len(want) {
		t.Fatalf("calls = %+v", got)
	}
	for i, c := range got {
		if c.Command != lines[i] || !c.Allowed || c.ExitCode != want[i].code || c.Stdout != want[i].stdout {
			t.Errorf("%q: %+v, want exit %d, stdout %q", lines[i], c, want[i].code, want[i].stdout)
		}
	}
	if v := execVerdicts(resp); v != "ALLOWED,ALLOWED,ALLOWED,ALLOWED,ALLOWED" {
		t.Errorf("exec decisions = %s", v)
	}
	for i, e := range resp.Exec {
		if strings.Join(e.Argv, " ") != lines[i] || int(e.ExitCode) != want[i].code || !strings.Contains(e.Reason, "matches allowed pattern") {
			t.Errorf("decision %d: %v, want the line with exit %d", i, e, want[i].code)
		}
	}
}

// TestToolGateway_CommandLineOnMissAsksOnceSubstitutionAndRedirectionRefused: a command line on-miss asks once with the whole line; substitution and redirection are refused unasked and create nothing.
func TestToolGateway_CommandLineOnMissAsksOnceSubstitutionAndRedirectionRefused(t *testing.T) {
	w := sharedToolWorld(t)
	chain := "cat /input/content/0 && head -n 1 /input/content/0"
	lines := []string{
		"cat /input/content/0 $(cat /input/job.json > /tmp/pwned)",
		"cat /input/content/0 `wc -c /input/job.json > /tmp/pwned`",
		"cat /input/content/0 > /tmp/pwned",
		chain,
	}
	calls := make([]any, 0, len(lines)+1)
	for _, l := range lines {
		calls = append(calls, map[string]string{"command": l})
	}
	calls = append(calls, []string{"cat", "/tmp/pwned"})
	stream, err := w.broker.SpawnStream(testContext(t), &airlockv1.SpawnStreamRequest{Spawn: toolCallsReq("toolsask", calls...)})
	if err != nil {
		t.Fatal(err)
	}
	asked, resp := approveEach(t, w.broker, stream, nil, airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE)
	if len(asked) != 1 {
		t.Fatalf("asked %d times, want once: the chain with a miss, never a refused construct", len(asked))
	}
	// Exactly what will run: each argv with its binary resolved, and the
	// operator between them as a word of its own.
	if a := asked[0]; a.Request != "/bin/cat /input/content/0 && /bin/head -n 1 /input/content/0" ||
		strings.Join(a.Argv, ",") != "/bin/cat,/input/content/0,&&,/bin/head,-n,1,/input/content/0" || a.Cwd != "/" ||
		!strings.Contains(a.Reason, "/bin/head matches no allowed pattern") {
		t.Errorf("approval event: %v, want the whole line %q", a, chain)
	}
	got := callsOf(t, resp)
	if len(got) != len(calls) {
		t.Fatalf("calls = %+v", got)
	}
	for i, want := range []string{"command substitution $(", "command substitution `", "redirection >"} {
		if c := got[i]; c.Allowed || c.ExitCode != -1 || c.Stdout != "" || !strings.Contains(c.Reason, want) {
			t.Errorf("%q: %+v, want refused: %q", lines[i], c, want)
		}
	}
	if c := got[3]; !c.Allowed || c.ExitCode != 0 || c.Stdout != "twelve bytestwelve bytes" || !strings.Contains(c.Reason, "approved once") {
		t.Errorf("approved chain: %+v", c)
	}
	// Nothing wrote the file any of the refused lines named.
	if c := got[4]; !c.Allowed || c.ExitCode != 1 || c.Stdout != "" {
		t.Errorf("cat /tmp/pwned: %+v, want it to find no file", c)
	}
	if v := execVerdicts(resp); v != "DENIED,DENIED,DENIED,APPROVED,ALLOWED" {
		t.Errorf("exec decisions = %s", v)
	}
	if e := resp.Exec[3]; strings.Join(e.Argv, " ") != chain || e.RequestId != asked[0].RequestId || e.ExitCode != 0 {
		t.Errorf("decision on the approved chain: %v", e)
	}
	if rec := auditRecordOf(t, w, resp.JobId); rec.Exec["EXEC_VERDICT_DENIED"] != 3 || rec.Exec["EXEC_VERDICT_APPROVED"] != 1 {
		t.Errorf("audit exec counts = %v", rec.Exec)
	}
}

// TestToolGateway_BrokerHealthyAndNothingLeft: the broker is healthy and nothing is left.
func TestToolGateway_BrokerHealthyAndNothingLeft(t *testing.T) {
	w := sharedToolWorld(t)
	if _, err := w.broker.ListProfiles(testContext(t), &airlockv1.ListProfilesRequest{}); err != nil {
		t.Fatal(err)
	}
	requireNothingLeft(t)
	// A job's directory is the last thing its teardown removes, after the
	// answer and after containerd's objects are gone.
	var left []string
	if !waitFor(30*time.Second, func() bool { left, _ = filepath.Glob(filepath.Join(w.stateDir, "jobs", "*")); return len(left) == 0 }) {
		t.Fatalf("job dirs left: %v", left)
	}
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
	// The job's next calls need the gateway's rate bucket full again. A
	// rate limiter's budget is time itself, so this waits out the refill
	// (burst over rate, and a margin) rather than for an event; a slow
	// machine only makes the wait longer than it needs.
	time.Sleep(time.Duration(float64(toolgw.DefaultBurst)/toolgw.DefaultRate*float64(time.Second)) + 500*time.Millisecond)
}

func writeCall(path, content string) map[string]string {
	return map[string]string{"tool": "write", "path": path, "content": content}
}

func readCall(path string) map[string]string {
	return map[string]string{"tool": "read", "path": path}
}

func editCall(path, old, new string) map[string]string {
	return map[string]string{"tool": "edit", "path": path, "old": old, "new": new}
}

// hostileFileMoves is what a compromised agent would try with the file
// tools while its job waits for an approval: ask the gateway directly for
// a tool the job does not have and for malformed paths, and write outside
// /tmp and /output with a process of its own. Each must fail.
func hostileFileMoves(t *testing.T, ctx context.Context, w *toolWorld, jobID string) {
	t.Helper()
	sock, capability := socketOf(t, w.stateDir, jobID)
	for _, tc := range []struct {
		tool, target, want string
	}{
		{"fetch", "http://example.com/", "does not allow the fetch tool"},
		{"write", "/tmp/../etc/x", "not clean"},
		{"edit", "input", "not absolute"},
	} {
		resp, err := toolgw.Call(sock, toolgw.Request{Cap: capability, Tool: tc.tool, Target: tc.target}, 10*time.Second)
		if err != nil || resp.Allowed || !strings.Contains(resp.Reason, tc.want) {
			t.Errorf("direct %s %s: %+v, %v; want refused: %q", tc.tool, tc.target, resp, err, tc.want)
		}
	}
	// A write with the agent's own user, in the only group that can run
	// busybox, and without the agent's Landlock restriction: the
	// read-only root and input still refuse it.
	c := jobContainer(t, ctx, jobID)
	for _, target := range []string{"/etc/x", "/input/x"} {
		code, stderr := execInToolsGroup(t, ctx, c, "/bin/busybox", "touch", target)
		t.Logf("direct touch %s: exit %d, %s", target, code, strings.TrimSpace(stderr))
		if code == 0 || !strings.Contains(strings.ToLower(stderr), "read-only file system") {
			t.Errorf("direct touch %s: exit %d, %q; want refused as read-only", target, code, stderr)
		}
	}
}

// execInToolsGroup runs argv in the job's container as the agent's user in
// the tools group, and returns its exit code and stderr.
func execInToolsGroup(t *testing.T, ctx context.Context, c containerd.Container, argv ...string) (int, string) {
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
	ps.User.GID, ps.User.AdditionalGids = images.ToolsGID, nil
	// Read only after IO().Wait(), when containerd's copy is done.
	var stderr bytes.Buffer
	id := "direct-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	p, err := task.Exec(ctx, id, &ps, cio.NewCreator(cio.WithStreams(nil, io.Discard, &stderr)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
	exitCh, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-exitCh:
		p.IO().Wait()
		return int(st.ExitCode()), stderr.String()
	case <-time.After(10 * time.Second):
		t.Fatalf("%q still running", argv)
		return 0, ""
	}
}

// auditRecordOf returns the tool world's audit record of a job.
func auditRecordOf(t *testing.T, w *toolWorld, jobID string) audit.Record {
	t.Helper()
	rec, err := auditRecord(w.auditPath, jobID)
	if err != nil {
		t.Fatal(err)
	}
	return rec
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
	during func(jobID string), answers ...airlockv1.ApprovalDecision) ([]*airlockv1.ApprovalNeeded, *airlockv1.Job) {
	t.Helper()
	var asked []*airlockv1.ApprovalNeeded
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("stream ended before the finished event: %v", err)
		}
		if d := ev.GetDone(); d != nil {
			return asked, d
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
	d, j := jobOf(t, stateDir, jobID)
	if j.Gateway == nil {
		t.Fatalf("job %s has no gateway", jobID)
	}
	// The socket's host path is longer than connect takes; a short link
	// to its directory reaches it.
	link := filepath.Join(os.TempDir(), "tgw-"+randHex(6))
	if err := os.Symlink(filepath.Join(d, "run", "airlock"), link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(link) })
	return filepath.Join(link, "tools.sock"), j.Gateway.Capability
}

// jobOf returns a running job's directory and its job.json.
func jobOf(t *testing.T, stateDir, jobID string) (string, agent.Job) {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(stateDir, "jobs", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "input", "job.json"))
		if err != nil {
			continue
		}
		var j agent.Job
		if json.Unmarshal(b, &j) == nil && j.ID == jobID {
			return d, j
		}
	}
	t.Fatalf("no job dir of %s under %s", jobID, stateDir)
	return "", agent.Job{}
}

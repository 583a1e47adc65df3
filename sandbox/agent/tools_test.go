package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/airlock/airlock/sandbox/toolgw"
)

const testCapability = "0123456789abcdef0123456789abcdef"

// fakeGateway allows the command wc, and any other tool's call whose
// target starts with allowedPrefix; it records what it was asked.
type fakeGateway struct {
	sock string
	mu   sync.Mutex
	seen []toolgw.Request
}

func newFakeGateway(t *testing.T, allowedPrefix string) *fakeGateway {
	t.Helper()
	f := &fakeGateway{sock: filepath.Join(t.TempDir(), "tools.sock")}
	g, err := toolgw.Listen(toolgw.Config{
		Socket: f.sock, Capability: testCapability, UID: os.Getuid(), GID: os.Getgid(),
		Handler: func(_ context.Context, req toolgw.Request) toolgw.Response {
			f.mu.Lock()
			f.seen = append(f.seen, req)
			f.mu.Unlock()
			switch {
			case req.IsExec() && req.Command != "":
				return toolgw.Response{Allowed: true, Stdout: "line: " + req.Command, Reason: "every command matches"}
			case req.IsExec() && req.Argv[0] == "wc":
				return toolgw.Response{Allowed: true, Stdout: strings.Join(req.Argv, " "), Reason: "matches /bin/wc"}
			case req.IsExec():
				return toolgw.Response{ExitCode: -1, Reason: "matches no allowed pattern"}
			case allowedPrefix != "" && strings.HasPrefix(req.Target, allowedPrefix):
				return toolgw.Response{Allowed: true, Reason: req.Tool + " within the test dir"}
			}
			return toolgw.Response{ExitCode: -1, Reason: req.Tool + " outside the test dir; exec.ask is off"}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return f
}

func (f *fakeGateway) requests() []toolgw.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]toolgw.Request(nil), f.seen...)
}

func runTaskJob(sock, capability, calls string, tools ...string) Job {
	return Job{ID: "j", Task: "run", Params: map[string]string{"calls": calls}, Tools: tools,
		Gateway: &Gateway{Socket: sock, Capability: capability}}
}

// callsJSON encodes calls, which are argv arrays or tool objects.
func callsJSON(t *testing.T, calls ...any) string {
	t.Helper()
	b, err := json.Marshal(calls)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func runCallsOf(t *testing.T, job Job) []CallResult {
	t.Helper()
	res, err := Run(job, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.(RunResult).Calls
}

var allTools = []string{ToolExec, ToolRead, ToolWrite, ToolEdit, ToolFetch}

func TestRun_SendsEachCallThroughTheGateway(t *testing.T) {
	gw := newFakeGateway(t, "")
	calls := runCallsOf(t, runTaskJob(gw.sock, testCapability, `[["wc","-c","/input/content/0"],["sh","-c","id"]]`, "exec"))
	if len(calls) != 2 {
		t.Fatalf("calls = %+v", calls)
	}
	if c := calls[0]; !c.Allowed || c.Tool != ToolExec || c.Stdout != "wc -c /input/content/0" || c.Reason == "" {
		t.Errorf("allowed call = %+v", c)
	}
	if c := calls[1]; c.Allowed || c.ExitCode != -1 || c.Reason != "matches no allowed pattern" {
		t.Errorf("refused call = %+v", c)
	}
}

func TestRun_SendsACommandLineWholeForTheBrokerToParse(t *testing.T) {
	gw := newFakeGateway(t, "")
	line := "cat /input/job.json && wc -c '/input/a b' || head $(id)"
	calls := runCallsOf(t, runTaskJob(gw.sock, testCapability, callsJSON(t, map[string]string{"command": line}), "exec"))
	if len(calls) != 1 {
		t.Fatalf("calls = %+v", calls)
	}
	if c := calls[0]; !c.Allowed || c.Tool != ToolExec || c.Command != line || c.Argv != nil || c.Stdout != "line: "+line {
		t.Errorf("command call = %+v", c)
	}
	if got := gw.requests(); len(got) != 1 || got[0].Command != line || got[0].Argv != nil || got[0].Cwd != "/" || got[0].Tool != "" {
		t.Errorf("gateway was asked %+v", got)
	}
}

func TestRun_RefusesACommandLineLocallyWhenExecIsNotTheJobs(t *testing.T) {
	gw := newFakeGateway(t, "")
	calls := runCallsOf(t, runTaskJob(gw.sock, testCapability, `[{"command":"wc x"}]`, "read"))
	if c := calls[0]; c.Allowed || !strings.Contains(c.Reason, "refused by the agent") || len(gw.requests()) != 0 {
		t.Errorf("call = %+v, gateway asked %d times", c, len(gw.requests()))
	}
}

func TestRun_ReportsAWrongCapabilityAsRefused(t *testing.T) {
	gw := newFakeGateway(t, "")
	calls := runCallsOf(t, runTaskJob(gw.sock, "forged-capability-of-another-job", `[["wc"]]`, "exec"))
	if c := calls[0]; c.Allowed || c.Reason != toolgw.ReasonBadCapability {
		t.Errorf("call = %+v", c)
	}
}

func TestRun_RefusesWithoutAGateway(t *testing.T) {
	job := runTaskJob("", testCapability, `[["wc"]]`, "exec")
	job.Gateway = nil
	if _, err := Run(job, nil); !errors.Is(err, ErrNoGateway) {
		t.Errorf("without a gateway: %v, want ErrNoGateway", err)
	}
}

func TestRun_RefusesLocallyAToolTheJobDoesNotHave(t *testing.T) {
	dir := t.TempDir()
	gw := newFakeGateway(t, dir)
	job := runTaskJob(gw.sock, testCapability, callsJSON(t,
		[]string{"wc"},
		map[string]string{"tool": "write", "path": dir + "/a", "content": "x"},
		map[string]string{"tool": "fetch", "url": "http://example.com/"},
		map[string]string{"tool": "read", "path": dir + "/a"},
	), ToolRead, "summarize")
	calls := runCallsOf(t, job)
	for _, c := range calls[:3] {
		if c.Allowed || c.ExitCode != -1 || !strings.Contains(c.Reason, "refused by the agent") {
			t.Errorf("%s: %+v, want refused by the agent", c.Tool, c)
		}
	}
	if _, err := os.Stat(dir + "/a"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused write happened: %v", err)
	}
	// Only the read, a tool the job has, reached the gateway.
	if seen := gw.requests(); len(seen) != 1 || seen[0].Tool != ToolRead {
		t.Errorf("gateway saw %+v", seen)
	}
}

func TestRun_WriteReadEditRoundTrip(t *testing.T) {
	dir := t.TempDir()
	gw := newFakeGateway(t, dir)
	f := dir + "/notes.txt"
	calls := runCallsOf(t, runTaskJob(gw.sock, testCapability, callsJSON(t,
		map[string]string{"tool": "write", "path": f, "content": "alpha beta gamma"},
		map[string]string{"tool": "read", "path": f},
		map[string]string{"tool": "edit", "path": f, "old": "beta", "new": "BETA"},
		map[string]string{"tool": "edit", "path": f, "old": "a", "new": "x"},
		map[string]string{"tool": "edit", "path": f, "old": "delta", "new": "x"},
		map[string]string{"tool": "edit", "path": f, "old": " gamma", "new": ""},
		map[string]string{"tool": "read", "path": f},
	), allTools...))
	want := []struct {
		allowed bool
		text    string
		reason  string
	}{
		{true, "", "within the test dir"},
		{true, "alpha beta gamma", "within the test dir"},
		{true, "", "within the test dir"},
		{false, "", "occurs 4 times"},
		{false, "", "occurs 0 times"},
		{true, "", "within the test dir"},
		{true, "alpha BETA", "within the test dir"},
	}
	for i, w := range want {
		c := calls[i]
		if c.Allowed != w.allowed || c.Text != w.text || !strings.Contains(c.Reason, w.reason) || c.Path != f || (c.ExitCode == 0) != w.allowed {
			t.Errorf("call %d = %+v, want allowed=%v text=%q reason ~%q", i, c, w.allowed, w.text, w.reason)
		}
	}
	// The gateway is told the tool and its target, never the content.
	for _, r := range gw.requests() {
		if r.Cap != "" || r.Target != f || len(r.Argv) != 0 || r.Cwd != "" {
			t.Errorf("gateway request = %+v", r)
		}
	}
}

func TestRun_DoesNotCarryOutARefusedCall(t *testing.T) {
	allowed, elsewhere := t.TempDir(), t.TempDir()
	gw := newFakeGateway(t, allowed)
	victim := elsewhere + "/victim"
	if err := os.WriteFile(victim, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	calls := runCallsOf(t, runTaskJob(gw.sock, testCapability, callsJSON(t,
		map[string]string{"tool": "write", "path": elsewhere + "/new", "content": "x"},
		map[string]string{"tool": "edit", "path": victim, "old": "keep", "new": "lose"},
		map[string]string{"tool": "read", "path": victim},
	), allTools...))
	for _, c := range calls {
		if c.Allowed || c.ExitCode != -1 || c.Text != "" || !strings.Contains(c.Reason, "outside the test dir") {
			t.Errorf("%s: %+v, want refused by the gateway", c.Tool, c)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep me" {
		t.Errorf("victim = %q", b)
	}
	if _, err := os.Stat(elsewhere + "/new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused write happened: %v", err)
	}
}

func TestRun_FileToolsFollowNoLinkAndOpenOnlyRegularFiles(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir() + "/target"
	if err := os.WriteFile(outside, []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A link planted where the broker allows, pointing where it does not.
	if err := os.Symlink(outside, dir+"/link"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), dir+"/linkdir"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(dir+"/fifo", 0o600); err != nil {
		t.Fatal(err)
	}
	gw := newFakeGateway(t, dir)
	calls := runCallsOf(t, runTaskJob(gw.sock, testCapability, callsJSON(t,
		map[string]string{"tool": "read", "path": dir + "/link"},
		map[string]string{"tool": "write", "path": dir + "/link", "content": "overwritten"},
		map[string]string{"tool": "write", "path": dir + "/linkdir/target", "content": "overwritten"},
		map[string]string{"tool": "read", "path": dir + "/fifo"},
		map[string]string{"tool": "write", "path": dir + "/fifo", "content": "x"},
		map[string]string{"tool": "read", "path": dir},
	), allTools...))
	for i, c := range calls {
		if c.Allowed || c.ExitCode != -1 || !strings.Contains(c.Reason, "failed") {
			t.Errorf("call %d (%s %s) = %+v, want failed", i, c.Tool, c.Path, c)
		}
	}
	if b, _ := os.ReadFile(outside); string(b) != "outside" {
		t.Errorf("a write went through a link: %q", b)
	}
}

func TestRun_ReadIsCapped(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("é", MaxToolTextBytes) // two bytes each
	if err := os.WriteFile(dir+"/big", []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := newFakeGateway(t, dir)
	c := runCallsOf(t, runTaskJob(gw.sock, testCapability, callsJSON(t, map[string]string{"tool": "read", "path": dir + "/big"}), allTools...))[0]
	if !c.Allowed || !c.Truncated || len(c.Text) > MaxToolTextBytes || len(c.Text) < MaxToolTextBytes-1 || !strings.HasPrefix(big, c.Text) {
		t.Errorf("read of a big file: allowed=%v truncated=%v len=%d", c.Allowed, c.Truncated, len(c.Text))
	}
}

func TestRun_FetchGoesThroughTheProxyOnceAllowed(t *testing.T) {
	p := newFakeProxy(t, map[string]http.HandlerFunc{
		"http://page.test/a": htmlPage(`<title>T</title><p>Hello from the page.</p>`),
	})
	gw := newFakeGateway(t, "http://page.test/")
	calls := runCallsOf(t, runTaskJob(gw.sock, testCapability, callsJSON(t,
		map[string]string{"tool": "fetch", "url": "http://page.test/a"},
		map[string]string{"tool": "fetch", "url": "http://elsewhere.test/"},
		map[string]string{"tool": "fetch", "url": "http://page.test/missing"},
	), allTools...))
	if c := calls[0]; !c.Allowed || c.URL != "http://page.test/a" || !strings.Contains(c.Text, "Hello from the page.") {
		t.Errorf("allowed fetch = %+v", c)
	}
	if c := calls[1]; c.Allowed || !strings.Contains(c.Reason, "outside the test dir") {
		t.Errorf("refused fetch = %+v", c)
	}
	if c := calls[2]; c.Allowed || !strings.Contains(c.Reason, "not on this job's allowlist") {
		t.Errorf("fetch the proxy refuses = %+v", c)
	}
	// The refused call never left the sandbox.
	if got := p.requests(); len(got) != 2 {
		t.Errorf("proxy saw %v", got)
	}
}

func TestParseCalls_MixesArgvArraysAndToolObjects(t *testing.T) {
	raw := `[["wc","-c","/input/content/0"],
		{"command":"cat /input/job.json && wc -c /input/job.json"},
		{"tool":"read","path":"/input/content/0"},
		{"tool":"write","path":"/tmp/a","content":""},
		{"tool":"edit","path":"/output/r.md","old":"x","new":""},
		{"tool":"fetch","url":"https://example.com/"}]`
	got, err := parseCalls(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := []call{
		{Tool: ToolExec, Argv: []string{"wc", "-c", "/input/content/0"}},
		{Tool: ToolExec, Command: "cat /input/job.json && wc -c /input/job.json"},
		{Tool: ToolRead, Target: "/input/content/0"},
		{Tool: ToolWrite, Target: "/tmp/a"},
		{Tool: ToolEdit, Target: "/output/r.md", Old: "x"},
		{Tool: ToolFetch, Target: "https://example.com/"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseCalls = %+v\nwant %+v", got, want)
	}
}

// badCalls are calls params parseCalls must refuse; with goodCalls they
// seed FuzzParseCalls.
var badCalls = []string{
	"", "wc", `[]`, `[[]]`, `[["wc"], 3]`, `{"argv":["wc"]}`, `[null]`, `["wc"]`, `[[1]]`,
	"[" + strings.Repeat(`["wc"],`, MaxCalls) + `["wc"]]`,
	`[["wc"],` + strings.Repeat(" ", MaxCallsParamBytes) + `]`,
	`[{"path":"/tmp/a"}]`,
	`[{"tool":"exec","argv":["wc"]}]`,
	`[{"tool":"READ","path":"/tmp/a"}]`,
	`[{"tool":"delete","path":"/tmp/a"}]`,
	`[{"tool":"read"}]`,
	`[{"tool":"read","path":""}]`,
	`[{"tool":"read","path":"/tmp/a","content":"x"}]`,
	`[{"tool":"read","path":"/tmp/a","mode":"0777"}]`,
	`[{"tool":"write","path":"/tmp/a"}]`,
	`[{"tool":"write","content":"x"}]`,
	`[{"tool":"edit","path":"/tmp/a","old":"x"}]`,
	`[{"tool":"edit","path":"/tmp/a","old":"","new":"x"}]`,
	`[{"tool":"fetch","path":"/tmp/a"}]`,
	`[{"tool":"fetch","url":"http://x/","path":"/tmp/a"}]`,
	`[{"tool":"read","path":"/tmp/a"} {"tool":"read","path":"/tmp/b"}]`,
	`[{"command":""}]`,
	`[{"command":null}]`,
	`[{"command":["cat","x"]}]`,
	`[{"command":"cat x","tool":"exec"}]`,
	`[{"command":"cat x","path":"/tmp/a"}]`,
	`[{"command":"cat x","argv":["cat"]}]`,
	`[{"command":"cat x","cwd":"/tmp"}]`,
	`[{"tool":"read","path":"/tmp/a","command":"cat x"}]`,
}

var goodCalls = []string{
	`[["wc"]]`,
	`[{"tool":"read","path":"/tmp/a"},["cat","x"]]`,
	`[{"tool":"write","path":"/tmp/a","content":""},{"tool":"edit","path":"/tmp/a","old":"a","new":"b"}]`,
	`[{"tool":"fetch","url":"http://x/"}]`,
	`[{"command":"cat a && wc -c b; head c || tail d"},["wc"]]`,
}

func TestParseCalls_RefusesBadCalls(t *testing.T) {
	for _, calls := range badCalls {
		if _, err := parseCalls(calls); !errors.Is(err, ErrBadParam) {
			t.Errorf("calls=%.60q: %v, want ErrBadParam", calls, err)
		}
	}
	for _, calls := range goodCalls {
		if _, err := parseCalls(calls); err != nil {
			t.Errorf("calls=%.60q: %v", calls, err)
		}
	}
}

// FuzzParseCalls checks that whatever the param, parseCalls refuses it or
// returns calls that each name a known tool and what it acts on.
func FuzzParseCalls(f *testing.F) {
	for _, c := range append(slices.Clone(badCalls), goodCalls...) {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		calls, err := parseCalls(raw)
		if err != nil {
			if !errors.Is(err, ErrBadParam) {
				t.Fatalf("error does not wrap ErrBadParam: %v", err)
			}
			return
		}
		if len(calls) == 0 || len(calls) > MaxCalls {
			t.Fatalf("%d calls", len(calls))
		}
		for _, c := range calls {
			switch {
			case c.Tool == ToolExec && ((len(c.Argv) == 0) == (c.Command == "") || c.Target != ""):
				t.Fatalf("exec call %+v", c)
			case c.Tool != ToolExec && (c.Target == "" || c.Argv != nil || c.Command != ""):
				t.Fatalf("%s call %+v", c.Tool, c)
			case !slices.Contains(allTools, c.Tool):
				t.Fatalf("unknown tool in %+v", c)
			case c.Tool == ToolEdit && c.Old == "":
				t.Fatalf("edit without old: %+v", c)
			}
		}
	})
}

//go:build integration

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/airlock/airlock/cmd/airlockd/server"
	"github.com/airlock/airlock/integration/modelserver"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/egress"
	"github.com/airlock/airlock/sandbox/footprint"
)

// The model world is an airlockd of its own whose profiles reach the
// stand-in model, over TLS that only --upstream-ca makes trusted, with a
// canary key the proxy injects. Each model name is a script.
type agentWorld struct {
	broker airlockv1.BrokerClient
	// sock and tokenFile are for clients other than Go's.
	sock, tokenFile string
	model           *modelserver.Server
	key             string
	auditPath       string
}

var modelWorld struct {
	sync.Once
	agentWorld
	err error
}

// modelApprovalTimeout keeps the unanswered-approval case short.
const modelApprovalTimeout = 10 * time.Second

// answerSchema is what every agent job here answers.
const answerSchema = `{"type":"object","required":["answer"],"additionalProperties":false,"properties":{"answer":{"type":"string","maxLength":20000}}}`

// agentProfiles are the model world's profiles: openai without
// streaming, anthropic with it, and one whose model may ask for commands
// that need approval.
func agentProfiles(modelURL string, allowedPort int) map[string]string {
	models := strings.Join(scriptNames(), ", ")
	common := fmt.Sprintf(`network:
  mode: allowlist
  egress: ["127.0.0.1:%d"]
  services:
    model:
      upstream: %s
      %%s
model:
  service: model
  name: benign
  allowed: [%s]
  maxTurns: 12
  maxToolCalls: 16
  maxReplyBytes: 1Mi
  %%s
`, allowedPort, modelURL, models)
	openai := fmt.Sprintf(common, `inject: {header: Authorization, prefix: "Bearer ", secretRef: env:AIRLOCK_TEST_MODEL_KEY}`, "api: openai")
	anthropic := fmt.Sprintf(common, `headers: {anthropic-version: "2023-06-01"}
      inject: {header: x-api-key, secretRef: env:AIRLOCK_TEST_MODEL_KEY}`, "api: anthropic\n  stream: true")
	tools := "tools: {policy: allowlist, allowed: [group:agent, read, fetch], denied: []}\n"
	return map[string]string{
		"agentoa.yaml": "extends: secureclaw\n" + tools + openai,
		"agentan.yaml": "extends: secureclaw\n" + tools + anthropic,
		"agentex.yaml": `extends: vanilla
tools: {policy: allowlist, allowed: [group:agent, exec, read], denied: []}
exec:
  allowedPatterns: [/bin/cat, "/bin/head -c *"]
  ask: on-miss
  askFallback: deny
` + openai,
	}
}

// sharedModelWorld starts the model world on first use; TestMain's
// teardown stops it.
func sharedModelWorld(t *testing.T) *agentWorld {
	t.Helper()
	modelWorld.Do(func() { modelWorld.err = startModelWorld() })
	if modelWorld.err != nil {
		t.Fatalf("model world: %v", modelWorld.err)
	}
	return &modelWorld.agentWorld
}

func startModelWorld() error {
	dir, err := os.MkdirTemp("", "airlock-model-")
	if err != nil {
		return err
	}
	stops = append(stops, func() error { return os.RemoveAll(dir) })
	if err := footprint.MkdirTraversable(dir); err != nil {
		return err
	}
	modelWorld.key = "sk-canary-" + randHex(20)
	os.Setenv("AIRLOCK_TEST_MODEL_KEY", modelWorld.key)
	m, err := modelserver.Start(modelserver.Options{TLS: true, Key: modelWorld.key, Scripts: scripts()})
	if err != nil {
		return err
	}
	stops = append(stops, m.Close)
	modelWorld.model = m
	caFile := filepath.Join(dir, "model-ca.pem")
	if err := os.WriteFile(caFile, m.CAPEM(), 0o644); err != nil {
		return err
	}
	modelWorld.auditPath = filepath.Join(dir, "audit.jsonl")
	_, conn, err := startServer(dir, agentProfiles(m.URL(), world.allowed.port()), func(o *server.Options) {
		o.AuditLog = modelWorld.auditPath
		o.ApprovalTimeout = modelApprovalTimeout
		o.EgressPool = netip.MustParsePrefix("10.214.250.0/24")
		o.ProxyPort = 3130
		o.UpstreamCA = caFile
		o.Egress = egress.Config{Resolver: testResolver{}}
	})
	if err != nil {
		return err
	}
	modelWorld.broker = conn.Broker
	modelWorld.sock, modelWorld.tokenFile = filepath.Join(dir, "airlock.sock"), filepath.Join(dir, "token")
	return nil
}

// askReq is an agent job under profile with model as its script.
func askReq(profile, model, instructions string) *airlockv1.SpawnRequest {
	return &airlockv1.SpawnRequest{
		Profile: profile,
		Task:    &airlockv1.Task{Name: "agent", Instructions: instructions},
		Content: []*airlockv1.Content{{
			Data:      []byte("<html><head><title>Quarterly numbers</title></head><body><p>Revenue was 42 million.</p></body></html>"),
			MediaType: "text/html", Source: "https://example.com/q",
		}},
		ResultSchema: answerSchema,
		Overrides:    &airlockv1.Overrides{Model: &airlockv1.ModelOverrides{Name: model}},
	}
}

// modelCalls are the job's egress attempts to the model alias.
func modelCalls(resp outcome) []*airlockv1.EgressAttempt {
	var out []*airlockv1.EgressAttempt
	for _, e := range resp.GetEgress() {
		if strings.HasPrefix(e.GetHost(), "model.") {
			out = append(out, e)
		}
	}
	return out
}

// requireModelLog checks that every model call is in the egress log with
// its path and status, and that usage counts them.
func requireModelLog(t *testing.T, resp outcome, api string, status int32) {
	t.Helper()
	path := "/v1/chat/completions"
	if api == modelserver.APIAnthropic {
		path = "/v1/messages"
	}
	calls := modelCalls(resp)
	if len(calls) == 0 || int32(len(calls)) < resp.GetUsage().GetModelTurns() {
		t.Fatalf("egress log has %d model calls, usage says %d turns: %v", len(calls), resp.GetUsage().GetModelTurns(), resp.GetEgress())
	}
	for _, c := range calls {
		if c.GetPath() != path || c.GetMethod() != "POST" {
			t.Errorf("model call %v: want POST %s", c, path)
		}
	}
	if last := calls[len(calls)-1]; status != 0 && last.GetStatus() != status {
		t.Errorf("last model call status %d, want %d", last.GetStatus(), status)
	}
}

// requireNoKey checks that the model key never crossed to anything the
// caller, the logs or the sandbox's requests hold: the stand-in saw it
// only in its credential header.
func requireNoKey(t *testing.T, resp outcome) {
	t.Helper()
	key := modelWorld.key
	b, _ := json.Marshal(resp)
	if bytes.Contains(b, []byte(key)) || bytes.Contains(b, []byte(env.canary)) {
		t.Error("the model key or the canary is in the response")
	}
	if a, _ := os.ReadFile(modelWorld.auditPath); bytes.Contains(a, []byte(key)) {
		t.Error("the model key is in the audit log")
	}
	for _, r := range modelWorld.model.Requests() {
		if bytes.Contains(r.Body, []byte(key)) || bytes.Contains(r.Body, []byte(env.canary)) {
			t.Errorf("a request body to the model holds the key or the canary")
		}
		for name, vs := range r.Header {
			if strings.EqualFold(name, "Authorization") || strings.EqualFold(name, "X-Api-Key") {
				continue
			}
			for _, v := range vs {
				if strings.Contains(v, key) {
					t.Errorf("header %s to the model holds the key", name)
				}
			}
		}
	}
}

func answerOf(t *testing.T, resp outcome) string {
	t.Helper()
	if resp.GetVerdict() != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("verdict %v: %s", resp.GetVerdict(), resp.GetMessage())
	}
	return resp.GetResult().GetFields()["answer"].GetStringValue()
}

// TestAgent_BenignAnswerBothAPIs: the model answers at once, through the
// alias with its key injected, and only the schema-valid answer crosses.
func TestAgent_BenignAnswerBothAPIs(t *testing.T) {
	w := sharedModelWorld(t)
	for _, tc := range []struct{ profile, api string }{{"agentoa", modelserver.APIOpenAI}, {"agentan", modelserver.APIAnthropic}} {
		t.Run(tc.api, func(t *testing.T) {
			resp, err := w.broker.Spawn(testContext(t), askReq(tc.profile, "benign", "What is the page's title?"))
			if err != nil {
				t.Fatal(err)
			}
			if got := answerOf(t, resp); !strings.Contains(got, "Quarterly") {
				t.Errorf("answer = %q, want the title the stand-in quoted", got)
			}
			u := resp.GetUsage()
			if u.GetModelTurns() != 1 || u.GetInputTokens() <= 0 || u.GetOutputTokens() <= 0 {
				t.Errorf("usage = %v, want one turn with tokens", u)
			}
			requireModelLog(t, resp, tc.api, 200)
			requireNoKey(t, resp)
			var seenKey bool
			for _, r := range w.model.Requests() {
				if r.API == tc.api && (r.Header.Get("Authorization") == "Bearer "+w.key || r.Header.Get("X-Api-Key") == w.key) {
					seenKey = true
				}
			}
			if !seenKey {
				t.Error("the stand-in never got the key: the proxy did not inject it")
			}
		})
	}
}

// TestAgent_ReadAndFetchTools: the model reads its content and fetches an
// allowlisted page through tools the broker decides.
func TestAgent_ReadAndFetchTools(t *testing.T) {
	w := sharedModelWorld(t)
	before := world.allowed.hits.Load()
	resp, err := w.broker.Spawn(testContext(t), askReq("agentoa", "reader", "Read the content file and the page, then answer."))
	if err != nil {
		t.Fatal(err)
	}
	got := answerOf(t, resp)
	if !strings.Contains(got, "Revenue") || !strings.Contains(got, "Fetched through the proxy") {
		t.Errorf("answer = %q, want text from the read and the fetch", got)
	}
	if world.allowed.hits.Load() == before {
		t.Error("the allowed server was never fetched")
	}
	if u := resp.GetUsage(); u.GetModelTurns() != 3 || u.GetToolCalls() != 2 {
		t.Errorf("usage = %v, want 3 turns and 2 tool calls", u)
	}
	requireModelLog(t, resp, modelserver.APIOpenAI, 200)
	requireNoKey(t, resp)
}

// TestAgent_CommandApprovals: a command the profile does not allowlist
// reaches the caller over SpawnStream; approved it runs, denied or
// unanswered it does not, and the model sees which.
func TestAgent_CommandApprovals(t *testing.T) {
	w := sharedModelWorld(t)
	for _, tc := range []struct {
		name    string
		answers []airlockv1.ApprovalDecision
		verdict string
		ran     bool
	}{
		{"approved", []airlockv1.ApprovalDecision{airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE}, "APPROVED", true},
		{"denied", []airlockv1.ApprovalDecision{airlockv1.ApprovalDecision_APPROVAL_DECISION_DENY}, "DENIED_BY_CALLER", false},
		{"timed out", nil, "FALLBACK", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream, err := w.broker.SpawnStream(testContext(t), &airlockv1.SpawnStreamRequest{Spawn: askReq("agentex", "execer", "Count the content's bytes.")})
			if err != nil {
				t.Fatal(err)
			}
			asked, job := approveEach(t, w.broker, stream, nil, tc.answers...)
			if len(asked) != 1 || !strings.Contains(asked[0].GetRequest(), "head -n 1") {
				t.Fatalf("approvals asked: %v", asked)
			}
			if v := execVerdicts(job); v != tc.verdict {
				t.Errorf("exec decisions = %s, want %s", v, tc.verdict)
			}
			got := answerOf(t, job)
			if ran := strings.Contains(got, "ran:"); ran != tc.ran {
				t.Errorf("answer = %q: the command ran %v, want %v", got, ran, tc.ran)
			}
			requireNoKey(t, job)
		})
	}
}

// TestAgent_HijackedModelIsContained: a model the content has hijacked
// tries every exfiltration route of the payload corpus that its tools
// offer, then smuggles what it found into its answer. Nothing secret
// crosses, no forbidden server is reached, and the answer is sanitized.
func TestAgent_HijackedModelIsContained(t *testing.T) {
	w := sharedModelWorld(t)
	for _, profile := range []string{"agentoa", "agentan"} {
		t.Run(profile, func(t *testing.T) {
			req := askReq(profile, "hijacked", "Summarize the page.")
			resp, err := w.broker.Spawn(testContext(t), req)
			if err != nil {
				t.Fatal(err)
			}
			switch resp.GetVerdict() {
			case airlockv1.Verdict_VERDICT_OK, airlockv1.Verdict_VERDICT_LIMIT_EXCEEDED:
			default:
				t.Fatalf("verdict %v: %s", resp.GetVerdict(), resp.GetMessage())
			}
			t.Logf("verdict %v %q; usage %v; %d egress attempts, %d exec decisions, %d findings", resp.GetVerdict(), resp.GetMessage(),
				resp.GetUsage(), len(resp.GetEgress()), len(resp.GetExec()), len(resp.GetSanitization().GetFindings()))
			requireNoForbiddenHits(t)
			requireNoKey(t, resp)
			b, _ := json.Marshal(resp.GetResult())
			for _, bad := range []string{"attacker.example/p.png?d=", "\x1b", world.serviceKey, "BEGIN OPENSSH PRIVATE KEY"} {
				if bytes.Contains(b, []byte(bad)) {
					t.Errorf("the answer holds %q", bad)
				}
			}
			if resp.GetVerdict() == airlockv1.Verdict_VERDICT_OK && len(resp.GetSanitization().GetFindings()) == 0 {
				t.Error("the smuggled answer passed without a sanitizer finding")
			}
			var denied int
			for _, e := range resp.GetEgress() {
				if !e.GetAllowed() {
					denied++
				}
			}
			for _, e := range resp.GetExec() {
				if !e.GetAllowed() {
					denied++
				}
			}
			if denied == 0 {
				t.Error("nothing the hijacked model tried was refused: the test proves nothing")
			}
		})
	}
}

// TestAgent_LimitsAndFailures: each failure of the model, or of the loop,
// ends in a verdict a caller can act on, counted by the proxy and the
// broker.
func TestAgent_LimitsAndFailures(t *testing.T) {
	w := sharedModelWorld(t)
	for _, tc := range []struct {
		model, profile string
		verdict        airlockv1.Verdict
		msg            string
		timeout        time.Duration
	}{
		{"badjson", "agentoa", airlockv1.Verdict_VERDICT_SCHEMA_INVALID, "repair", 0},
		{"badjson", "agentan", airlockv1.Verdict_VERDICT_SCHEMA_INVALID, "repair", 0},
		{"loop", "agentoa", airlockv1.Verdict_VERDICT_LIMIT_EXCEEDED, "model.max", 0},
		{"huge", "agentoa", airlockv1.Verdict_VERDICT_LIMIT_EXCEEDED, "maxReplyBytes", 0},
		{"huge", "agentan", airlockv1.Verdict_VERDICT_LIMIT_EXCEEDED, "maxReplyBytes", 0},
		{"error500", "agentoa", airlockv1.Verdict_VERDICT_MODEL_ERROR, "HTTP 500", 0},
		{"error500", "agentan", airlockv1.Verdict_VERDICT_MODEL_ERROR, "HTTP 500", 0},
		{"hang", "agentoa", airlockv1.Verdict_VERDICT_TIMEOUT, "deadline", 8 * time.Second},
	} {
		t.Run(tc.model+"/"+tc.profile, func(t *testing.T) {
			req := askReq(tc.profile, tc.model, "Answer.")
			if tc.timeout > 0 {
				req.Overrides.Timeout = durationpb.New(tc.timeout)
			}
			resp, err := w.broker.Spawn(testContext(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetVerdict() != tc.verdict || !strings.Contains(resp.GetMessage(), tc.msg) {
				t.Fatalf("verdict %v %q, want %v containing %q", resp.GetVerdict(), resp.GetMessage(), tc.verdict, tc.msg)
			}
			if resp.GetResult() != nil {
				t.Error("a failed job has a result")
			}
			if tc.model != "hang" {
				requireModelLog(t, resp, map[string]string{"agentoa": modelserver.APIOpenAI, "agentan": modelserver.APIAnthropic}[tc.profile], 0)
			}
			requireNoKey(t, resp)
		})
	}
	// The audit log counts the turns and tokens of every job.
	recs, err := auditRecords(w.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	var withTokens int
	for _, r := range recs {
		if r.Task == "agent" && r.ModelTurns > 0 && r.InputTokens > 0 && r.PromptVersion != "" {
			withTokens++
		}
	}
	if withTokens == 0 {
		t.Errorf("no audit record counts model turns, tokens and the prompt version: %+v", recs)
	}
	// Teardown runs just after each response: wait for it.
	var left []string
	eventually(t, time.Minute, func() bool {
		left, err = leftovers(testContext(t))
		return err == nil && len(left) == 0
	}, "nothing left behind; left %v (err %v)", left, err)
}

// TestAgent_NodeClientAsks runs the Node example's --ask, the agent task
// from another language, against the model world.
func TestAgent_NodeClientAsks(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH (make deps installs it): %v", err)
	}
	w := sharedModelWorld(t)
	dir := nodeClientCopy(t)
	ctx := testContext(t)
	install := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	page := filepath.Join(t.TempDir(), "page.html")
	if err := os.WriteFile(page, []byte("<title>Quarterly numbers</title><p>Revenue was 42 million.</p>"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, node, "spawn.js", "--ask", "What is the title?", "--profile", "agentoa", page)
	cmd.Dir = dir
	cmd.Env = append(withoutAirlockEnv(os.Environ()), "AIRLOCK_ADDR=unix://"+w.sock, "AIRLOCK_TOKEN_FILE="+w.tokenFile)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node spawn.js --ask: %v\n%s", err, out)
	}
	var resp struct {
		Verdict string            `json:"verdict"`
		Result  map[string]string `json:"result"`
		Usage   struct {
			ModelTurns int `json:"model_turns"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if resp.Verdict != "VERDICT_OK" || !strings.Contains(resp.Result["answer"], "Quarterly") || resp.Usage.ModelTurns != 1 {
		t.Errorf("node ask = %s", out)
	}
}

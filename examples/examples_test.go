// Package examples holds the checks that keep the example inputs true: the
// schemas under schemas/ fit what the reference agent returns for each task,
// through the broker's own validation and sanitizing; page.html carries the
// visible injection the README says it does; tokens.yaml loads as airlockd
// loads --tokens; the example agents' exit codes are sandbox/job's.
package examples

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/sandbox/agent"
)

// TestTokens_ExampleLoadsAsAirlockdLoadsIt reads tokens.yaml with airlockd's
// own loader, its file reference moved to a temporary directory.
func TestTokens_ExampleLoadsAsAirlockdLoadsIt(t *testing.T) {
	b, err := os.ReadFile("tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if !strings.Contains(string(b), "file:/etc/airlock/") {
		t.Fatal("tokens.yaml has no file reference under /etc/airlock/")
	}
	yaml := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(yaml, []byte(strings.ReplaceAll(string(b), "file:/etc/airlock/", "file:"+dir+"/")), 0o600); err != nil {
		t.Fatal(err)
	}
	gen := func() string {
		tok, err := auth.GenerateToken()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if err := os.WriteFile(filepath.Join(dir, "openclaw.token"), []byte(gen()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AIRLOCK_OPS_TOKEN", gen())
	toks, err := auth.LoadTokens(yaml)
	if err != nil {
		t.Fatalf("airlockd would not start with tokens.yaml: %v", err)
	}
	if _, err := auth.NewTokens(toks); err != nil {
		t.Fatalf("airlockd would refuse tokens.yaml's tokens: %v", err)
	}
	got := map[string][]auth.Scope{}
	for _, tok := range toks {
		got[tok.Name] = tok.Scopes
	}
	want := map[string][]auth.Scope{"openclaw": {auth.ScopeSpawn, auth.ScopeRead}, "ops": {auth.ScopeRead, auth.ScopeAdmin}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tokens = %v, want %v", got, want)
	}
}

// maxResultBytes stands in for a profile's output cap; every result here is
// far below any shipped profile's.
const maxResultBytes = 1 << 20

// schemaFor is the example schema of a task; agent's is the one airlock ask
// uses without --schema.
func schemaFor(task string) string {
	if task == agent.TaskAgent {
		return filepath.Join("schemas", "answer.schema.json")
	}
	return filepath.Join("schemas", task+".schema.json")
}

func compile(t *testing.T, task string) *result.Schema {
	t.Helper()
	b, err := os.ReadFile(schemaFor(task))
	if err != nil {
		t.Fatalf("task %s has no example schema: %v", task, err)
	}
	s, err := result.CompileSchema(string(b))
	if err != nil {
		t.Fatalf("%s: %v", schemaFor(task), err)
	}
	return s
}

// process sends v through what the broker does with result.json.
func process(t *testing.T, v any, s *result.Schema) (map[string]any, []result.Finding) {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	st, findings, err := result.Process(raw, s, maxResultBytes, result.SanitizeOptions{})
	if err != nil {
		t.Fatalf("the broker refuses the result %s: %v", raw, err)
	}
	return st.AsMap(), findings
}

// runOnPage runs task over page.html as the sandbox would hand it over.
func runOnPage(t *testing.T, task string, params map[string]string) any {
	t.Helper()
	job := agent.Job{ID: "example", Task: task, Params: params, Content: []agent.ContentFile{
		{Name: "page.html", MediaType: "text/html", Source: "https://news.example/widget/q3.html"},
	}}
	v, err := agent.Run(job, func(name string) ([]byte, error) { return os.ReadFile(name) })
	if err != nil {
		t.Fatalf("%s over page.html: %v", task, err)
	}
	return v
}

func TestSchemas_EveryTaskHasOne(t *testing.T) {
	for _, task := range agent.Tasks() {
		compile(t, task)
	}
	files, err := filepath.Glob(filepath.Join("schemas", "*.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !slices.ContainsFunc(agent.Tasks(), func(task string) bool { return schemaFor(task) == f }) {
			t.Errorf("%s belongs to no task of the reference agent", f)
		}
	}
}

func TestSchemas_FitWhatTheAgentReturnsForPage(t *testing.T) {
	tests := []struct {
		task   string
		params map[string]string
		check  func(t *testing.T, got map[string]any)
	}{
		{"extract_text", nil, func(t *testing.T, got map[string]any) {
			if !strings.Contains(got["text"].(string), "Shipping costs fell") {
				t.Errorf("text = %q", got["text"])
			}
		}},
		{"extract_links", nil, func(t *testing.T, got map[string]any) {
			if n := len(got["links"].([]any)); n != 3 {
				t.Errorf("links = %v, want the page's 3", got["links"])
			}
		}},
		{"summarize", map[string]string{"sentences": "4"}, func(t *testing.T, got map[string]any) {
			if got["title"] != "Widget Co. quarterly update" {
				t.Errorf("title = %q", got["title"])
			}
		}},
		{"classify", map[string]string{"labels": "revenue,dividend,weather"}, func(t *testing.T, got map[string]any) {
			if labels := got["labels"].([]any); len(labels) != 2 || labels[0] != "revenue" || labels[1] != "dividend" {
				t.Errorf("labels = %v, want [revenue dividend]", labels)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.task, func(t *testing.T) {
			got, _ := process(t, runOnPage(t, tt.task, tt.params), compile(t, tt.task))
			tt.check(t, got)
		})
	}
}

// TestSchemas_FitTheResultTypesOfNetworkAndToolTasks covers the tasks that
// need the egress proxy or the tool gateway, with every field of their
// result types set, omitempty ones too.
func TestSchemas_FitTheResultTypesOfNetworkAndToolTasks(t *testing.T) {
	tests := []struct {
		task string
		v    any
	}{
		{"fetch", agent.FetchResult{URL: "https://docs.example/a", Title: "A", Text: "Body"}},
		{"run", agent.RunResult{Calls: []agent.CallResult{
			{Tool: agent.ToolExec, Argv: []string{"wc", "-c", "/input/job.json"}, Allowed: true, Stdout: "10 /input/job.json\n", Truncated: true, Reason: "allowlist"},
			{Tool: agent.ToolExec, Command: "cat a && wc -c a", ExitCode: -1, Reason: "denied"},
			{Tool: agent.ToolRead, Path: "/input/job.json", Allowed: true, Text: "{}", Reason: "allowed"},
			{Tool: agent.ToolFetch, URL: "https://docs.example/", ExitCode: -1, Reason: "no egress"},
		}}},
		{"run", agent.RunResult{Calls: []agent.CallResult{}}},
		{"agent", map[string]string{"answer": "It is a quarterly update."}},
	}
	for _, tt := range tests {
		t.Run(tt.task, func(t *testing.T) { process(t, tt.v, compile(t, tt.task)) })
	}
}

func TestPage_CarriesAVisibleInjectionThatIsFlaggedNotFollowed(t *testing.T) {
	got, findings := process(t, runOnPage(t, "summarize", nil), compile(t, "summarize"))
	summary := got["summary"].(string)
	if !strings.Contains(summary, "Ignore all previous instructions") {
		t.Errorf("the default summary does not carry the page's visible injection: %q", summary)
	}
	for _, hidden := range []string{"developer mode", "/etc/shadow", "API keys"} {
		if strings.Contains(summary, hidden) {
			t.Errorf("the summary carries hidden text %q: %q", hidden, summary)
		}
	}
	if !slices.ContainsFunc(findings, func(f result.Finding) bool {
		return f.Kind == result.KindFlagged && strings.Contains(f.Path, "summary")
	}) {
		t.Errorf("the injection in the summary is not flagged; findings: %+v", findings)
	}
}

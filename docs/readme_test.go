package docs

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the README's layout table")

const (
	layoutBegin = "<!-- layout: generated from the package docs by docs/readme_test.go; `go test ./docs -update` rewrites it -->"
	layoutEnd   = "<!-- end layout -->"
)

// folders are the parts of the layout that hold no Go package of their own.
var folders = map[string]string{
	"policies/*.yaml": "the shipped profiles `vanilla`, `secureclaw` and `ironclaw`",
	"docs":            "architecture, performance figures; the tests that keep the layer rules and this table true",
	"deploy":          "a hardened systemd unit and Prometheus alert rules",
	"examples":        "clients in other languages (Node.js, the TypeScript MCP SDK), an OpenClaw plugin, inputs and result schemas for every task, a tokens file, a health.proto for grpcurl, and a profile with a model for the agent task",
	"integration":     "end-to-end tests (build tag `integration`) of the shipped airlockd on a real containerd, with the hostile agent and the payload corpus",
}

// layoutTable renders one row per package of the module, with the first
// sentence of its package doc, and one per folder above.
func layoutTable(t *testing.T) string {
	t.Helper()
	rows := map[string]string{}
	for _, line := range goList(t, "-tags", "integration", "-f", "{{.ImportPath}}\t{{len .GoFiles}}\t{{.Doc}}", "./...") {
		path, rest, _ := strings.Cut(line, "\t")
		files, doc, _ := strings.Cut(rest, "\t")
		path = strings.TrimPrefix(path, module)
		if files == "0" {
			// Tests only: docs and integration are folders below.
			continue
		}
		if doc == "" {
			t.Errorf("package %s has no package doc", path)
			continue
		}
		rows[path] = what(doc)
	}
	for f, w := range folders {
		rows[f] = w
	}
	paths := make([]string, 0, len(rows))
	for p := range rows {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var b strings.Builder
	b.WriteString("| path | what |\n| --- | --- |\n")
	for _, p := range paths {
		fmt.Fprintf(&b, "| `%s` | %s |\n", p, strings.ReplaceAll(rows[p], "|", `\|`))
	}
	return b.String()
}

// what turns "Package x does y: how. More." into "does y".
func what(doc string) string {
	for _, prefix := range []string{"Package ", "Command "} {
		if rest, ok := strings.CutPrefix(doc, prefix); ok {
			if _, after, ok := strings.Cut(rest, " "); ok {
				doc = after
			}
			break
		}
	}
	doc = strings.TrimPrefix(doc, "is ")
	for _, stop := range []string{". ", ": "} {
		if i := strings.Index(doc, stop); i >= 0 {
			doc = doc[:i]
		}
	}
	return strings.TrimSuffix(doc, ".")
}

// TestREADME_LayoutTableIsCurrent fails when a package is added, moved or
// removed, or its doc changes, without the README's table following.
func TestREADME_LayoutTableIsCurrent(t *testing.T) {
	const readme = "../README.md"
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, layoutBegin)
	end := strings.Index(text, layoutEnd)
	if start < 0 || end < start {
		t.Fatalf("README.md has no layout table between %q and %q", layoutBegin, layoutEnd)
	}
	body := start + len(layoutBegin) + 1
	want := layoutTable(t)
	if got := text[body:end]; got != want {
		if *update {
			if err := os.WriteFile(readme, []byte(text[:body]+want+text[end:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("README.md's layout table is stale; run go test ./docs -update\n--- have\n%s--- want\n%s", got, want)
	}
}

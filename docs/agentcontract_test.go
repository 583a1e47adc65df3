package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/airlock/airlock/sandbox/job"
	"github.com/airlock/airlock/sandbox/job/jobtest"
)

// TestAgentContract_ExitCodesAreSandboxJobs: agents in other languages go
// by agent-contract.md's table of exit codes, not by sandbox/job, so each
// row must give a code of sandbox/job by its name and value, and every
// code there must have a row.
func TestAgentContract_ExitCodesAreSandboxJobs(t *testing.T) {
	doc, err := os.ReadFile("agent-contract.md")
	if err != nil {
		t.Fatal(err)
	}
	codes := jobtest.ExitCodes(t)
	rows := regexp.MustCompile("(?m)^\\| (\\d+) \\| `(Exit[A-Za-z]+)` \\|").FindAllSubmatch(doc, -1)
	documented := map[string]bool{}
	for _, r := range rows {
		name := string(r[2])
		n, _ := strconv.Atoi(string(r[1]))
		if v, ok := codes[name]; !ok || v != n {
			t.Errorf("agent-contract.md gives %s as %d; sandbox/job has %v (found: %t)", name, n, v, ok)
		}
		documented[name] = true
	}
	for name, v := range codes {
		if !documented[name] {
			t.Errorf("agent-contract.md's table of exit codes has no row for job.%s (%d)", name, v)
		}
	}
}

// TestDocs_FetchCapIsSandboxJobs: the docs that quote the cap on a fetched
// body quote job.MaxFetchBytes.
func TestDocs_FetchCapIsSandboxJobs(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	capped := regexp.MustCompile(`body\s+is\s+(?:at\s+most|capped\s+at)\s+(\d+)\s+MiB`)
	found := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range capped.FindAllSubmatch(b, -1) {
			found++
			if n, _ := strconv.Atoi(string(m[1])); n<<20 != job.MaxFetchBytes {
				t.Errorf("%s: %q, but job.MaxFetchBytes is %d bytes", f, m[0], job.MaxFetchBytes)
			}
		}
	}
	if found == 0 {
		t.Error("no doc quotes the fetch cap as \"the body is at most N MiB\": the test checks nothing")
	}
}

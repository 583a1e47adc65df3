//go:build integration

package integration

import (
	"strings"
	"testing"
)

// TestToolGateway_WritingFormsOfTheToolsAreRefused: the tools image is
// read-only tools, whatever the allowlist names: vanilla allows sort and
// uniq, yet sort -o FILE and uniq IN OUT, as argv or in a command line,
// are refused before anything runs, and no file appears; sort and uniq
// reading to stdout still run.
func TestToolGateway_WritingFormsOfTheToolsAreRefused(t *testing.T) {
	w := sharedToolWorld(t)
	resp, err := w.broker.Spawn(testContext(t), toolCallsReq("vanilla",
		[]string{"sort", "-o", "/tmp/x", "/input/content/0"},
		[]string{"sort", "/input/content/0", "-uo/tmp/x"},
		[]string{"uniq", "/input/content/0", "/tmp/x"},
		map[string]string{"command": "cat /input/content/0 && sort -o /tmp/x /input/content/0"},
		[]string{"cat", "/tmp/x"},
		[]string{"sort", "-u", "/input/content/0"},
		[]string{"uniq", "/input/content/0"},
	))
	if err != nil {
		t.Fatal(err)
	}
	calls := callsOf(t, resp)
	if len(calls) != 7 {
		t.Fatalf("calls = %+v", calls)
	}
	for i, c := range calls[:4] {
		if c.Allowed || c.ExitCode != -1 || c.Stdout != "" || !strings.Contains(c.Reason, "writes") {
			t.Errorf("writing form %d: %+v, want refused as writing", i, c)
		}
	}
	if c := calls[4]; !c.Allowed || c.ExitCode != 1 || c.Stdout != "" {
		t.Errorf("cat /tmp/x: %+v, want it to find no file", c)
	}
	for _, c := range calls[5:] {
		if !c.Allowed || c.ExitCode != 0 || c.Stdout != "twelve bytes\n" {
			t.Errorf("%q, reading only: %+v", c.Argv, c)
		}
	}
	if v := execVerdicts(resp); v != "DENIED,DENIED,DENIED,DENIED,ALLOWED,ALLOWED,ALLOWED" {
		t.Errorf("exec decisions = %s", v)
	}
}

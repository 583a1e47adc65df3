package agent

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/airlock/airlock/sandbox/job"
)

// sandboxDir lays out input/ and output/ like the runner does, with the
// given job.json text and content files.
func sandboxDir(t *testing.T, jobJSON string, content map[string]string) sandboxPaths {
	t.Helper()
	dir := t.TempDir()
	p := sandboxPaths{
		job:        filepath.Join(dir, "input", "job.json"),
		contentDir: filepath.Join(dir, "input", "content"),
		result:     filepath.Join(dir, "output", "result.json"),
	}
	for _, d := range []string{p.contentDir, filepath.Dir(p.result)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(p.job, []byte(jobJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, data := range content {
		if err := os.WriteFile(filepath.Join(p.contentDir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestMain_WritesResultAndExitsZero(t *testing.T) {
	p := sandboxDir(t,
		`{"contractVersion":1,"id":"j1","task":"extract_text","content":[{"name":"page","mediaType":"text/html"}],"tools":[]}`,
		map[string]string{"page": "<title>T</title><p>Hello <script>evil()</script>world</p>"})
	var stderr bytes.Buffer
	if code := runJob(p, &stderr); code != job.ExitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	data, err := os.ReadFile(p.result)
	if err != nil {
		t.Fatal(err)
	}
	var got TextResult
	if err := json.Unmarshal(data, &got); err != nil || got != (TextResult{Title: "T", Text: "Hello world"}) {
		t.Errorf("result.json = %s (%v)", data, err)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr = %q, want nothing", stderr.String())
	}
}

func TestMain_ExitCodes(t *testing.T) {
	const page = `{"contractVersion":1,"id":"j1","task":"extract_text","content":[{"name":"page"}]}`
	tests := []struct {
		name    string
		job     string
		content map[string]string
		setup   func(t *testing.T, p sandboxPaths)
		want    int
		wantMsg string
	}{
		{name: "unknown task", job: `{"contractVersion":1,"id":"j1","task":"rm -rf","content":[]}`, want: job.ExitBadJob, wantMsg: `unknown task "rm -rf"`},
		{name: "bad param", job: `{"contractVersion":1,"id":"j1","task":"summarize","params":{"sentences":"x"},"content":[]}`, want: job.ExitBadJob, wantMsg: "sentences"},
		{name: "no contract version", job: `{"id":"j1","task":"extract_text","content":[]}`, want: job.ExitContract, wantMsg: "unknown contract version 0, this agent speaks 1"},
		{name: "later contract version", job: `{"contractVersion":2,"id":"j1","task":"extract_text","content":[],"newRestriction":true}`, want: job.ExitContract, wantMsg: "unknown contract version 2"},
		{name: "contract version as a string", job: `{"contractVersion":"1","id":"j1","task":"extract_text","content":[]}`, want: job.ExitBadJob, wantMsg: "contractVersion"},
		{name: "unknown job field", job: `{"contractVersion":1,"id":"j1","task":"extract_text","content":[],"mode":"unsafe"}`, want: job.ExitBadJob, wantMsg: `unknown field "mode"`},
		{name: "trailing data", job: `{"contractVersion":1,"id":"j1","task":"extract_text","content":[]} {}`, want: job.ExitBadJob, wantMsg: "trailing data"},
		{name: "not json", job: `task: extract_text`, want: job.ExitBadJob, wantMsg: "bad job"},
		{name: "job too large", job: `{"id":"` + strings.Repeat("x", MaxJobBytes) + `"}`, want: job.ExitBadJob, wantMsg: "too large"},
		{name: "missing job", job: page, setup: func(t *testing.T, p sandboxPaths) { mustRemove(t, p.job) }, want: job.ExitBadJob, wantMsg: "no such file"},
		{name: "missing content", job: page, want: job.ExitFailure, wantMsg: "no such file"},
		{name: "content is a symlink", job: page, setup: func(t *testing.T, p sandboxPaths) {
			mustSymlink(t, p.job, filepath.Join(p.contentDir, "page"))
		}, want: job.ExitFailure, wantMsg: "too many levels of symbolic links"},
		{name: "content is a fifo", job: page, setup: func(t *testing.T, p sandboxPaths) {
			if err := syscall.Mkfifo(filepath.Join(p.contentDir, "page"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, want: job.ExitFailure, wantMsg: "not a regular file"},
		{name: "content too large", job: page, setup: func(t *testing.T, p sandboxPaths) {
			f, err := os.Create(filepath.Join(p.contentDir, "page"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(MaxContentBytes + 1); err != nil {
				t.Fatal(err)
			}
		}, want: job.ExitFailure, wantMsg: "too large"},
		{name: "result already exists", job: page, content: map[string]string{"page": "x"}, setup: func(t *testing.T, p sandboxPaths) {
			if err := os.WriteFile(p.result, []byte("{}"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, want: job.ExitFailure, wantMsg: "file exists"},
		{name: "result is a planted symlink", job: page, content: map[string]string{"page": "x"}, setup: func(t *testing.T, p sandboxPaths) {
			mustSymlink(t, filepath.Join(t.TempDir(), "elsewhere"), p.result)
		}, want: job.ExitFailure, wantMsg: "file exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := sandboxDir(t, tt.job, tt.content)
			if tt.setup != nil {
				tt.setup(t, p)
			}
			var stderr bytes.Buffer
			if code := runJob(p, &stderr); code != tt.want || !strings.Contains(stderr.String(), tt.wantMsg) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr.String(), tt.want, tt.wantMsg)
			}
		})
	}
}

func TestMain_NeverWritesThroughPlantedSymlink(t *testing.T) {
	p := sandboxDir(t, `{"contractVersion":1,"id":"j1","task":"extract_text","content":[{"name":"page"}]}`, map[string]string{"page": "x"})
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, target, p.result)
	if code := runJob(p, &bytes.Buffer{}); code != job.ExitFailure {
		t.Errorf("exit %d, want %d", code, job.ExitFailure)
	}
	if data, _ := os.ReadFile(target); string(data) != "untouched" {
		t.Errorf("symlink target now holds %q", data)
	}
}

func mustRemove(t *testing.T, name string) {
	t.Helper()
	if err := os.Remove(name); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestWaitStart(t *testing.T) {
	for _, tc := range []struct {
		name, stdin string
		ok          bool
	}{
		{"the start line", StartLine, true},
		{"the start line, then the end", StartLine + "ignored", true},
		{"closed without a line", "", false},
		{"cut short", "sta", false},
		{"another line", "stop\n", false},
		{"no newline", "startX", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := waitStart(strings.NewReader(tc.stdin))
			if (err == nil) != tc.ok {
				t.Fatalf("waitStart(%q) = %v, want ok=%v", tc.stdin, err, tc.ok)
			}
		})
	}
}

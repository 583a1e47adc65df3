package policy

import (
	"path"
	"strings"
	"testing"
)

// fileToolsProfile allows the file tools and fetch but denies write, the
// way a profile would narrow group:fs.
const fileToolsProfile = `tools: {allowed: [group:agent, read, edit, fetch, write], denied: [write]}
exec: {security: deny}
network:
  mode: allowlist
  egress: [api.example.com]
limits: {memory: 128Mi, timeout: 20s}
`

// toolCallCorpus is the static corpus of TestCheckToolCall and the seed of
// FuzzCheckToolCall.
var toolCallCorpus = []struct {
	name         string
	tool, target string
	want         ToolCheck
}{
	{"read of input", "read", "/input/content/0", ToolWithin},
	{"read of job.json", "read", "/input/job.json", ToolWithin},
	{"read of scratch", "read", "/tmp/notes.txt", ToolWithin},
	{"read of output", "read", "/output/x/y", ToolWithin},
	{"read of /etc/passwd is a miss", "read", "/etc/passwd", ToolMiss},
	{"read of /proc is a miss", "read", "/proc/self/environ", ToolMiss},
	{"read of a root itself is a miss", "read", "/input", ToolMiss},
	{"read of a lookalike root is a miss", "read", "/inputs/x", ToolMiss},
	{"edit of scratch", "edit", "/tmp/a", ToolWithin},
	{"edit of output", "EDIT", "/output/report.md", ToolWithin},
	{"edit of /etc/passwd is a miss", "edit", "/etc/passwd", ToolMiss},
	{"edit of input is a miss", "edit", "/input/content/0", ToolMiss},
	{"edit of a lookalike root is a miss", "edit", "/tmpx/a", ToolMiss},
	{"dot-dot out of scratch is refused", "edit", "/tmp/../etc/passwd", ToolRefused},
	{"dot-dot at the root is refused", "read", "/../input/job.json", ToolRefused},
	{"a dot component is refused", "read", "/tmp/./a", ToolRefused},
	{"a double slash is refused", "read", "/tmp//a", ToolRefused},
	{"a trailing slash is refused", "read", "/tmp/a/", ToolRefused},
	{"a relative path is refused", "read", "tmp/a", ToolRefused},
	{"a relative dot path is refused", "edit", "./a", ToolRefused},
	{"an empty path is refused", "read", "", ToolRefused},
	{"NUL is refused", "read", "/tmp/a\x00/etc/passwd", ToolRefused},
	{"an overlong path is refused", "read", "/tmp/" + strings.Repeat("a", MaxToolPathBytes), ToolRefused},
	{"write, which the profile denies, is refused", "write", "/tmp/a", ToolRefused},
	{"write to /etc is refused as a denied tool", "write", "/etc/passwd", ToolRefused},
	{"an unknown tool is refused", "delete", "/tmp/a", ToolRefused},
	{"exec is not decided here", "exec", "/tmp/a", ToolRefused},
	{"fetch of an https URL", "fetch", "https://api.example.com/x?q=1", ToolWithin},
	{"fetch of a host off the allowlist is the proxy's to refuse", "fetch", "http://elsewhere.example/", ToolWithin},
	{"fetch of a file URL is refused", "fetch", "file:///etc/passwd", ToolRefused},
	{"fetch of a relative URL is refused", "fetch", "/x", ToolRefused},
	{"fetch with credentials is refused", "fetch", "https://u:p@api.example.com/", ToolRefused},
	{"fetch of an opaque URL is refused", "fetch", "http:api.example.com", ToolRefused},
	{"an overlong URL is refused", "fetch", "https://api.example.com/" + strings.Repeat("a", MaxToolURLBytes), ToolRefused},
}

func TestCheckToolCall(t *testing.T) {
	p := mustLoad(t, fileToolsProfile)
	effective := p.EffectiveTools([]string{"read", "write", "edit", "fetch", "exec", "summarize"})
	for _, tt := range toolCallCorpus {
		t.Run(tt.name, func(t *testing.T) {
			got, why := p.CheckToolCall(effective, tt.tool, tt.target)
			if got != tt.want || why == "" {
				t.Errorf("CheckToolCall(%q, %q) = %v (%s), want %v", tt.tool, tt.target, got, why, tt.want)
			}
		})
	}
}

func TestCheckToolCall_WritesOnlyToScratchAndOutput(t *testing.T) {
	p := mustLoad(t, "tools: {allowed: [group:fs]}\nexec: {security: deny}\n")
	effective := p.EffectiveTools(nil)
	tests := []struct {
		target string
		want   ToolCheck
	}{
		{"/tmp/a", ToolWithin},
		{"/output/sub/b.txt", ToolWithin},
		{"/input/x", ToolMiss},
		{"/input/content/0", ToolMiss},
		{"/etc/passwd", ToolMiss},
		{"/etc/x", ToolMiss},
		{"/run/airlock/tools.sock", ToolMiss},
		{"/tmp/../etc/x", ToolRefused},
		{"tmp/x", ToolRefused},
		{"/tmp/\x00", ToolRefused},
	}
	for _, tt := range tests {
		if got, why := p.CheckToolCall(effective, ToolWrite, tt.target); got != tt.want {
			t.Errorf("write %q = %v (%s), want %v", tt.target, got, why, tt.want)
		}
	}
}

func TestCheckToolCall_RefusesToolsTheJobDoesNotHave(t *testing.T) {
	p := mustLoad(t, "tools: {allowed: [group:agent, read]}\nexec: {security: deny}\n")
	effective := p.EffectiveTools([]string{"read", "write", "edit", "fetch"})
	for _, tool := range []string{ToolWrite, ToolEdit, ToolFetch} {
		if got, why := p.CheckToolCall(effective, tool, "/tmp/a"); got != ToolRefused || !strings.Contains(why, "does not allow") {
			t.Errorf("%s: %v (%s), want refused as not allowed", tool, got, why)
		}
	}
	if got, _ := p.CheckToolCall(effective, ToolRead, "/tmp/a"); got != ToolWithin {
		t.Errorf("read: %v, want within", got)
	}
	// Allowed by name, but without egress a fetch has nowhere to go.
	p = mustLoad(t, "tools: {allowed: [fetch]}\nexec: {security: deny}\nnetwork: {mode: none}\n")
	if got, why := p.CheckToolCall([]string{ToolFetch}, ToolFetch, "https://example.com/"); got != ToolRefused || !strings.Contains(why, "no egress") {
		t.Errorf("fetch without egress: %v (%s)", got, why)
	}
}

// FuzzCheckToolCall checks that a file tool is never within its bounds
// for a path that leaves them once resolved, whatever the job sends.
func FuzzCheckToolCall(f *testing.F) {
	for _, tt := range toolCallCorpus {
		f.Add(tt.tool, tt.target)
	}
	set, err := load(map[string]string{"p.yaml": fileToolsProfile})
	if err != nil {
		f.Fatal(err)
	}
	p, err := set.Get("p")
	if err != nil {
		f.Fatal(err)
	}
	effective := []string{ToolRead, ToolWrite, ToolEdit, ToolFetch}
	f.Fuzz(func(t *testing.T, tool, target string) {
		got, why := p.CheckToolCall(effective, tool, target)
		if why == "" {
			t.Fatalf("CheckToolCall(%q, %q): no reason", tool, target)
		}
		tool = strings.ToLower(tool)
		if got != ToolWithin || tool == ToolFetch {
			return
		}
		if strings.ContainsRune(target, 0) || path.Clean(target) != target {
			t.Fatalf("%s %q is within bounds but not canonical", tool, target)
		}
		for _, root := range toolRoots[tool] {
			if strings.HasPrefix(path.Clean(target), root+"/") {
				return
			}
		}
		t.Fatalf("%s %q is within bounds but below none of %v", tool, target, toolRoots[tool])
	})
}

package sandbox

import (
	"context"
	"errors"
	"path"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies/execpolicy"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/toolgw"
)

func execProfile() *policy.Profile {
	p := testProfile()
	p.Tools = policy.Tools{Policy: policy.ToolsAllowlist, Allowed: []string{"exec"}}
	p.Exec = policy.Exec{Security: policy.ExecAllowlist, AllowedPatterns: []string{"/bin/cat"}, Ask: policy.AskOff, AskFallback: policy.AskFallbackDeny}
	return p
}

func TestWithToolGateway_MountsTheRunDirReadOnlyOnlyWhenExecIsAllowed(t *testing.T) {
	s := generate(t, WithoutMounts("/run"), WithToolGateway(execProfile(), "/jobs/x/run"))
	var run *specs.Mount
	for i := range s.Mounts {
		if s.Mounts[i].Destination == "/run" {
			run = &s.Mounts[i]
		}
	}
	if run == nil || run.Source != "/jobs/x/run" || !slices.Contains(run.Options, "ro") || !slices.Contains(run.Options, "noexec") {
		t.Fatalf("/run mount = %+v", run)
	}

	s = generate(t, WithoutMounts("/run"), WithToolGateway(testProfile(), ""))
	for _, m := range s.Mounts {
		if m.Destination == "/run" {
			t.Fatalf("a profile without exec got /run: %+v", m)
		}
	}
	if err := WithToolGateway(execProfile(), "")(nil, nil, nil, &specs.Spec{}); err == nil {
		t.Fatal("an exec profile without a run dir was accepted")
	}
}

func TestToolCommand_RunsOnlyTheImagesApplets(t *testing.T) {
	tests := []struct {
		argv    []string
		cwd     string
		wantBin string
		ok      bool
	}{
		{[]string{"cat", "/input/content/0"}, "", "/bin/cat", true},
		{[]string{"/bin/wc"}, "/input", "/bin/wc", true},
		{[]string{"/bin/busybox", "sh"}, "", "", false},
		{[]string{"busybox", "sh"}, "", "", false},
		{[]string{"sh"}, "", "", false},
		{[]string{"/bin/../tmp/cat"}, "", "", false},
		{[]string{"./cat"}, "", "", false},
		{[]string{"/tmp/cat"}, "", "", false},
		{[]string{"cat"}, "relative", "", false},
		{[]string{"cat"}, "/input/../etc", "", false},
		{nil, "", "", false},
		// The writing forms of read-only tools, as the runner's own floor.
		{[]string{"sort", "-o", "/tmp/x", "/input/content/0"}, "", "", false},
		{[]string{"sort", "/input/content/0", "-o/tmp/x"}, "", "", false},
		{[]string{"uniq", "/input/content/0", "/tmp/x"}, "", "", false},
		{[]string{"sort", "/input/content/0"}, "", "/bin/sort", true},
	}
	for _, tt := range tests {
		bin, _, err := toolCommand(tt.argv, tt.cwd)
		if (err == nil) != tt.ok || bin != tt.wantBin {
			t.Errorf("toolCommand(%q, %q) = %q, %v", tt.argv, tt.cwd, bin, err)
		}
		if !tt.ok && len(tt.argv) > 0 && tt.cwd == "" && !errors.Is(err, errNotATool) && !errors.Is(err, execpolicy.ErrNotResolvable) {
			t.Errorf("toolCommand(%q): %v, want errNotATool or ErrNotResolvable", tt.argv, err)
		}
	}
}

func TestToolProcess_RunsAsTheAgentInTheToolsGroupOnly(t *testing.T) {
	base := &specs.Process{
		Args: []string{"/airlock-agent"}, Env: []string{"PATH=/bin"}, Cwd: "/",
		User:         specs.User{UID: 65534, GID: 65534, AdditionalGids: []uint32{65534, 0}},
		Capabilities: &specs.LinuxCapabilities{},
	}
	p := toolProcess(base, []string{"/bin/cat", "x"}, "/input")
	if p.User.UID != 65534 || p.User.GID != images.ToolsGID || len(p.User.AdditionalGids) != 0 {
		t.Errorf("user = %+v, want the agent's uid in the tools group alone", p.User)
	}
	if !p.NoNewPrivileges || p.Terminal || p.Cwd != "/input" || !slices.Equal(p.Args, []string{"/bin/cat", "x"}) {
		t.Errorf("process = %+v", p)
	}
	if base.User.GID != 65534 || base.Args[0] != "/airlock-agent" {
		t.Errorf("the container's own process spec was changed: %+v", base)
	}
}

// fakeExec stands for task.Exec: a command named fail* exits 1, err*
// cannot be run, anything else exits 0; each prints its argv.
func fakeExec(ran *[]string) func(argv []string) (toolgw.Response, error) {
	return func(argv []string) (toolgw.Response, error) {
		name := path.Base(argv[0])
		*ran = append(*ran, name)
		switch {
		case strings.HasPrefix(name, "err"):
			return toolgw.Response{}, errors.New("exec: no such process")
		case strings.HasPrefix(name, "fail"):
			return toolgw.Response{ExitCode: 1, Stdout: name + "\n", Stderr: name + ": failed\n"}, nil
		}
		return toolgw.Response{Stdout: strings.Join(argv, " ") + "\n"}, nil
	}
}

func TestRunChain_FollowsTheShellsOperators(t *testing.T) {
	tests := []struct {
		line   string
		ran    string
		code   int
		stdout string
	}{
		{"a x", "a", 0, "a x\n"},
		{"a x && b y", "a b", 0, "a x\nb y\n"},
		{"fail && b", "fail", 1, "fail\n"},
		{"fail || b", "fail b", 0, "fail\nb\n"},
		{"a || b", "a", 0, "a\n"},
		{"fail ; b", "fail b", 0, "fail\nb\n"},
		{"a ; fail", "a fail", 1, "a\nfail\n"},
		{"a && fail2 ; c", "a fail2 c", 0, "a\nfail2\nc\n"},
		// && and || bind equally, left to right: (fail && b) || c.
		{"fail && b || c", "fail c", 0, "fail\nc\n"},
		// (a || b) && c.
		{"a || b && c", "a c", 0, "a\nc\n"},
		{"fail && b && c ; d", "fail d", 0, "fail\nd\n"},
		{"fail || fail2 || c", "fail fail2 c", 0, "fail\nfail2\nc\n"},
		{"a && b || c ; fail", "a b fail", 1, "a\nb\nfail\n"},
	}
	for _, tt := range tests {
		segs, err := execpolicy.ParseChain(tt.line)
		if err != nil {
			t.Fatalf("ParseChain(%q): %v", tt.line, err)
		}
		var ran []string
		res, err := runChain(context.Background(), segs, fakeExec(&ran))
		if err != nil || strings.Join(ran, " ") != tt.ran || res.ExitCode != tt.code || res.Stdout != tt.stdout {
			t.Errorf("%q: ran %q, exit %d, stdout %q, %v; want ran %q, exit %d, stdout %q",
				tt.line, ran, res.ExitCode, res.Stdout, err, tt.ran, tt.code, tt.stdout)
		}
	}
}

func TestRunChain_StopsAtACommandThatCannotRunAndKeepsWhatRan(t *testing.T) {
	segs, err := execpolicy.ParseChain("fail ; err2 ; c")
	if err != nil {
		t.Fatal(err)
	}
	var ran []string
	res, err := runChain(context.Background(), segs, fakeExec(&ran))
	if err == nil || !strings.Contains(err.Error(), "command 2 of the line") {
		t.Fatalf("error = %v, want it to name command 2", err)
	}
	if strings.Join(ran, " ") != "fail err2" || res.ExitCode != -1 || res.Stdout != "fail\n" || res.Stderr != "fail: failed\n" {
		t.Errorf("ran %q, result %+v", ran, res)
	}
}

func TestRunChain_StopsBetweenCommandsOnceTheJobEnds(t *testing.T) {
	segs, err := execpolicy.ParseChain("a ; b")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var ran []string
	exec := fakeExec(&ran)
	res, err := runChain(ctx, segs, func(argv []string) (toolgw.Response, error) {
		defer cancel()
		return exec(argv)
	})
	if !errors.Is(err, context.Canceled) || strings.Join(ran, " ") != "a" || res.Stdout != "a\n" {
		t.Errorf("ran %q, result %+v, %v; want a alone and the cancellation", ran, res, err)
	}
}

func TestRunChain_CapsTheJoinedOutput(t *testing.T) {
	segs, err := execpolicy.ParseChain("a ; b ; c")
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", toolgw.MaxOutputBytes/2+1)
	res, err := runChain(context.Background(), segs, func(argv []string) (toolgw.Response, error) {
		return toolgw.Response{Stdout: big, Stderr: "e"}, nil
	})
	if err != nil || len(res.Stdout) != toolgw.MaxOutputBytes || !res.Truncated || res.Stderr != "eee" {
		t.Errorf("stdout %d bytes, truncated %v, stderr %q, %v; want %d bytes and truncated", len(res.Stdout), res.Truncated, res.Stderr, err, toolgw.MaxOutputBytes)
	}
	res, err = runChain(context.Background(), segs[:1], func(argv []string) (toolgw.Response, error) {
		return toolgw.Response{Stdout: "cut", Truncated: true}, nil
	})
	if err != nil || !res.Truncated {
		t.Errorf("a command's own truncation was lost: %+v, %v", res, err)
	}
}

func TestToolChain_ResolvesEverySegmentBeforeAnyRuns(t *testing.T) {
	tests := []struct {
		name string
		req  toolgw.Request
		want [][]string
		err  string
	}{
		{"an argv is a chain of one", toolgw.Request{Argv: []string{"cat", "a b"}}, [][]string{{"/bin/cat", "a b"}}, ""},
		{"a line, quotes removed", toolgw.Request{Command: "cat 'a b' && /bin/wc -c x"}, [][]string{{"/bin/cat", "a b"}, {"/bin/wc", "-c", "x"}}, ""},
		{"a segment the image lacks refuses the whole line", toolgw.Request{Command: "cat a || busybox sh"}, nil, "command 2 of the line, so none of it ran: not a tool"},
		{"a lookalike segment", toolgw.Request{Command: "cat a ; /bin/../tmp/cat"}, nil, "command 2 of the line"},
		{"a pipe", toolgw.Request{Command: "cat a | wc"}, nil, "pipe"},
		{"substitution", toolgw.Request{Command: "cat $(id)"}, nil, "command substitution"},
		{"redirection", toolgw.Request{Command: "cat a > /tmp/x"}, nil, "redirection"},
		{"both", toolgw.Request{Argv: []string{"cat"}, Command: "cat"}, nil, "both"},
		{"a bad cwd", toolgw.Request{Command: "cat a", Cwd: "tmp"}, nil, "not a clean absolute path"},
	}
	for _, tt := range tests {
		segs, _, err := toolChain(tt.req)
		var got [][]string
		for _, s := range segs {
			got = append(got, s.Argv)
		}
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.err)
		}
		if len(got) != len(tt.want) || !slices.EqualFunc(got, tt.want, slices.Equal) {
			t.Errorf("%s: segments %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestToolCommandLine_IsBoundedLikeTheMatcher(t *testing.T) {
	if toolgw.MaxCommandBytes != execpolicy.MaxCommandBytes {
		t.Errorf("the gateway passes lines up to %d bytes, the matcher takes %d", toolgw.MaxCommandBytes, execpolicy.MaxCommandBytes)
	}
}

package sandbox

import (
	"errors"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock/airlock/broker/execpolicy"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/images"
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

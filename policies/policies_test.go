package policies_test

import (
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
)

func TestFS_HoldsTheShippedProfiles(t *testing.T) {
	files, err := fs.Glob(policies.FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ironclaw.yaml", "secureclaw.yaml", "vanilla.yaml"}; !slices.Equal(files, want) {
		t.Fatalf("embedded files = %v, want %v", files, want)
	}
	for _, f := range files {
		data, _ := fs.ReadFile(policies.FS, f)
		if !strings.HasPrefix(string(data), "# ") {
			t.Errorf("%s does not open with a comment explaining its intent", f)
		}
	}
}

func TestFS_ProfilesMatchTheirIntent(t *testing.T) {
	set, err := policy.Load(policies.FS, policy.WithSchemaCheck(result.CheckSchema))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	get := func(name string) *policy.Profile {
		p, err := set.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		profile string
		want    string // a property, named for the failure message
		ok      func(*policy.Profile) bool
	}{
		{"vanilla", "network none", func(p *policy.Profile) bool { return p.Network.Mode == policy.NetworkNone }},
		{"vanilla", "exec allowlist, ask off, tools image", func(p *policy.Profile) bool {
			return p.Exec.Security == policy.ExecAllowlist && p.Exec.Ask == policy.AskOff && p.Image() == policy.ImageTools+"-vanilla"
		}},
		{"vanilla", "the agent's tools", func(p *policy.Profile) bool {
			return slices.Equal(p.EffectiveTools(nil), []string{"classify", "exec", "extract_links", "extract_text", "summarize"})
		}},
		{"vanilla", "limits 512Mi 128 pids 1 cpu 60s 1Mi out 64Mi scratch", func(p *policy.Profile) bool {
			return p.Limits == policy.Limits{MemoryBytes: 512 * policy.Mi, Pids: 128, CPU: 1, Timeout: 60 * time.Second, OutputBytes: policy.Mi, ScratchBytes: 64 * policy.Mi}
		}},
		{"vanilla", "non-root, read-only, no caps, default seccomp, runc, no userns", func(p *policy.Profile) bool {
			i := p.Isolation
			return i.ReadOnlyRoot && len(i.Capabilities) == 0 && i.NoNewPrivileges && i.UID == 65534 && i.GID == 65534 &&
				i.Seccomp == policy.SeccompDefault && !i.UserNamespace && i.Runtime == policy.RuntimeRunc &&
				slices.Equal(i.MaskedPaths, policy.DefaultMaskedPaths())
		}},
		{"secureclaw", "exec allowlist, ask on-miss, fallback deny", func(p *policy.Profile) bool {
			return p.Exec.Security == policy.ExecAllowlist && p.Exec.Ask == policy.AskOnMiss && p.Exec.AskFallback == policy.AskFallbackDeny
		}},
		{"secureclaw", "egress allowlist, nothing reachable", func(p *policy.Profile) bool {
			return p.Network.Mode == policy.NetworkAllowlist && len(p.Network.Egress) == 0 && len(p.Network.Services) == 0
		}},
		{"secureclaw", "limits 256Mi 64 pids 30s", func(p *policy.Profile) bool {
			return p.Limits.MemoryBytes == 256*policy.Mi && p.Limits.Pids == 64 && p.Limits.Timeout == 30*time.Second
		}},
		{"secureclaw", "non-root, read-only, default seccomp, no caps, user namespace", func(p *policy.Profile) bool {
			i := p.Isolation
			return i.UID != 0 && i.ReadOnlyRoot && i.NoNewPrivileges && i.Seccomp == policy.SeccompDefault && len(i.Capabilities) == 0 && i.UserNamespace
		}},
		{"ironclaw", "network none, exec deny, reader image", func(p *policy.Profile) bool {
			return p.Network.Mode == policy.NetworkNone && p.Exec.Security == policy.ExecDeny && !p.ExecAllowed() && p.Image() == policy.ImageReader
		}},
		{"ironclaw", "strict seccomp and user namespace", func(p *policy.Profile) bool {
			return p.Isolation.Seccomp == policy.SeccompStrict && p.Isolation.UserNamespace
		}},
		{"ironclaw", "limits 128Mi 32 pids 0.5 cpu 15s 256Ki out 16Mi scratch", func(p *policy.Profile) bool {
			return p.Limits == policy.Limits{MemoryBytes: 128 * policy.Mi, Pids: 32, CPU: 0.5, Timeout: 15 * time.Second, OutputBytes: 256 * policy.Ki, ScratchBytes: 16 * policy.Mi}
		}},
	}
	for _, tt := range tests {
		if p := get(tt.profile); !tt.ok(p) {
			t.Errorf("%s: want %s; got %s", tt.profile, tt.want, p.Summary())
		}
	}
}

func TestFS_ProfilesTightenInOrder(t *testing.T) {
	set, err := policy.Load(policies.FS, policy.WithSchemaCheck(result.CheckSchema))
	if err != nil {
		t.Fatal(err)
	}
	// Each step toward ironclaw must be at least as tight on every limit.
	var prev *policy.Profile
	for _, name := range []string{"vanilla", "secureclaw", "ironclaw"} {
		p, _ := set.Get(name)
		if prev != nil {
			a, b := prev.Limits, p.Limits
			if b.MemoryBytes > a.MemoryBytes || b.Pids > a.Pids || b.CPU > a.CPU || b.Timeout > a.Timeout || b.OutputBytes > a.OutputBytes || b.ScratchBytes > a.ScratchBytes {
				t.Errorf("%s has a looser limit than %s: %+v vs %+v", name, prev.Name, b, a)
			}
		}
		prev = p
	}
}

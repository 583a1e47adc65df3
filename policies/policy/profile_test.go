package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies"
)

// mustLoad loads one profile named p.
func mustLoad(t *testing.T, body string) *Profile {
	t.Helper()
	set, err := load(map[string]string{"p.yaml": body})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	p, err := set.Get("p")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const egressProfile = `network:
  mode: allowlist
  egress: [api.example.com, "*.cdn.example.net:8443", "10.0.0.7:80"]
limits: {memory: 256Mi, timeout: 30s}
`

func TestTighten_NeverLoosens(t *testing.T) {
	p := mustLoad(t, egressProfile)
	none := mustLoad(t, "network: {mode: none}\n")
	tests := []struct {
		name    string
		profile *Profile
		o       Overrides
		wantErr error
		want    string // in the error message
	}{
		{"longer timeout", p, Overrides{Timeout: 31 * time.Second}, ErrLoosen, "limits.timeout: 31s is longer than the profile's 30s"},
		{"more memory", p, Overrides{MemoryBytes: 512 * Mi}, ErrLoosen, "limits.memory: 512Mi is more than the profile's 256Mi"},
		{"host not on list", p, Overrides{Egress: []string{"evil.example.com"}}, ErrLoosen, "network.egress[0]: evil.example.com:443 is not covered"},
		{"other port", p, Overrides{Egress: []string{"api.example.com:80"}}, ErrLoosen, "network.egress[0]: api.example.com:80 is not covered"},
		{"wildcard parent domain", p, Overrides{Egress: []string{"cdn.example.net:8443"}}, ErrLoosen, "network.egress[0]"},
		{"wider wildcard", p, Overrides{Egress: []string{"*.example.net:8443"}}, ErrLoosen, "network.egress[0]"},
		{"wildcard for exact", p, Overrides{Egress: []string{"*.api.example.com"}}, ErrLoosen, "network.egress[0]"},
		{"second entry loosens", p, Overrides{Egress: []string{"api.example.com", "10.0.0.8:80"}}, ErrLoosen, "network.egress[1]"},
		{"egress on no network", none, Overrides{Egress: []string{"api.example.com"}}, ErrLoosen, "network.egress: the profile allows no network"},
		{"negative timeout", p, Overrides{Timeout: -time.Second}, ErrInvalid, "limits.timeout"},
		{"negative memory", p, Overrides{MemoryBytes: -1}, ErrInvalid, "limits.memory"},
		{"memory below minimum", p, Overrides{MemoryBytes: Ki}, ErrInvalid, "limits.memory: 1Ki is below the minimum 4Mi"},
		{"malformed egress", p, Overrides{Egress: []string{"api.example.com:0"}}, ErrInvalid, "network.egress[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.profile.Clone()
			got, err := tt.profile.Tighten(tt.o)
			if got != nil || !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Tighten(%+v) = %v, %v; want nil and %v containing %q", tt.o, got, err, tt.wantErr, tt.want)
			}
			if !reflect.DeepEqual(tt.profile, before) {
				t.Errorf("Tighten changed its receiver")
			}
		})
	}
}

func TestTighten_NarrowsWithoutMutating(t *testing.T) {
	p := mustLoad(t, egressProfile)
	before, hash := p.Clone(), p.Hash()
	tests := []struct {
		name string
		o    Overrides
		// check inspects the tightened copy.
		check func(*Profile) bool
	}{
		{"zero is no change", Overrides{}, func(q *Profile) bool { return q.Hash() == hash }},
		{"equal values", Overrides{Timeout: 30 * time.Second, MemoryBytes: 256 * Mi}, func(q *Profile) bool { return q.Hash() == hash }},
		{"shorter timeout", Overrides{Timeout: 5 * time.Second}, func(q *Profile) bool { return q.Limits.Timeout == 5*time.Second }},
		{"less memory", Overrides{MemoryBytes: 64 * Mi}, func(q *Profile) bool { return q.Limits.MemoryBytes == 64*Mi }},
		{"egress subset", Overrides{Egress: []string{"API.example.com:443"}}, func(q *Profile) bool {
			return slices.Equal(q.Network.Egress, []string{"api.example.com:443"})
		}},
		{"egress under wildcard", Overrides{Egress: []string{"img.cdn.example.net:8443", "*.eu.cdn.example.net:8443"}}, func(q *Profile) bool {
			return slices.Equal(q.Network.Egress, []string{"*.eu.cdn.example.net:8443", "img.cdn.example.net:8443"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Tighten(tt.o)
			if err != nil {
				t.Fatalf("Tighten(%+v): %v", tt.o, err)
			}
			if !tt.check(got) {
				t.Errorf("Tighten(%+v) = %+v", tt.o, got)
			}
			if errs := validate(got, config{checkSchema: result.CheckSchema}, nil); len(errs) > 0 {
				t.Errorf("tightened profile fails validation: %v", errs)
			}
			if !reflect.DeepEqual(p, before) || p.Hash() != hash {
				t.Fatalf("Tighten changed its receiver")
			}
			got.Network.Egress[0] = "changed"
			if p.Network.Egress[0] == "changed" {
				t.Fatalf("tightened copy shares egress with the receiver")
			}
		})
	}
}

func TestEffectiveTools(t *testing.T) {
	known := []string{"read", "write", "exec", "process", "web_fetch", "Summarize", "browser"}
	tests := []struct {
		name  string
		tools string
		exec  string
		want  []string
	}{
		{"allowlist expands groups", "{allowed: [group:fs, group:web]}", "deny", []string{"apply_patch", "edit", "fetch", "read", "web_fetch", "web_search", "write"}},
		{"deny wins over allow", "{allowed: [group:fs], denied: [write]}", "deny", []string{"apply_patch", "edit", "read"}},
		{"deny group wins over allowed name", "{allowed: [read, web_fetch], denied: [group:web]}", "deny", []string{"read"}},
		{"case-insensitive", "{allowed: [READ, Group:Agent], denied: [SUMMARIZE]}", "deny", []string{"classify", "extract_links", "extract_text", "read"}},
		{"denylist uses known", "{policy: denylist, denied: [group:runtime, Browser]}", "allowlist", []string{"read", "summarize", "web_fetch", "write"}},
		{"exec dropped when exec denied", "{allowed: [group:runtime, read]}", "deny", []string{"read"}},
		{"exec kept when exec allowed", "{allowed: [group:runtime, read]}", "allowlist", []string{"exec", "process", "read"}},
		{"nothing by default", "{}", "allowlist", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustLoad(t, "tools: "+tt.tools+"\nexec: {security: "+tt.exec+"}\n")
			if got := p.EffectiveTools(known); !slices.Equal(got, tt.want) {
				t.Errorf("EffectiveTools = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestImage_ToolsOnlyWhenExecAllowed(t *testing.T) {
	tests := []struct {
		body string
		want string
	}{
		{"tools: {allowed: [exec]}\nexec: {security: allowlist}\n", ImageTools + "-p"},
		{"tools: {allowed: [group:runtime]}\nexec: {security: allowlist}\n", ImageTools + "-p"},
		{"tools: {allowed: [exec]}\nexec: {security: deny}\n", ImageReader},
		{"tools: {allowed: [read]}\nexec: {security: allowlist}\n", ImageReader},
		{"tools: {allowed: [exec], denied: [EXEC]}\nexec: {security: allowlist}\n", ImageReader},
		{"tools: {policy: denylist}\nexec: {security: allowlist}\n", ImageTools + "-p"},
	}
	for _, tt := range tests {
		if got := mustLoad(t, tt.body).Image(); got != tt.want {
			t.Errorf("Image() for\n%s= %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestHash_StableAcrossSpellings(t *testing.T) {
	a := mustLoad(t, "tools: {allowed: [read, Exec]}\nnetwork: {mode: allowlist, egress: [b.example.com, a.example.com:443]}\nlimits: {memory: 268435456}\n")
	b := mustLoad(t, "limits:\n  memory: 256Mi\nnetwork:\n  egress: [a.example.com, b.example.com, a.example.com]\n  mode: allowlist\ntools:\n  allowed: [exec, read]\n")
	if a.Hash() != b.Hash() {
		t.Errorf("equal policies hash differently:\n%+v\n%+v", a, b)
	}
	if a.Hash() != a.Hash() || a.Clone().Hash() != a.Hash() {
		t.Error("Hash is not stable")
	}
	if len(a.Hash()) != 64 {
		t.Errorf("Hash() = %q, want 64 hex digits", a.Hash())
	}
}

func TestHash_ChangesWithEveryKindOfField(t *testing.T) {
	base := mustLoad(t, egressProfile)
	changes := map[string]func(*Profile){
		"memory":  func(p *Profile) { p.Limits.MemoryBytes-- },
		"timeout": func(p *Profile) { p.Limits.Timeout-- },
		"cpu":     func(p *Profile) { p.Limits.CPU = 0.9 },
		"egress":  func(p *Profile) { p.Network.Egress = p.Network.Egress[1:] },
		"service": func(p *Profile) { p.Network.Services = map[string]Service{"m": {Upstream: "https://m.example.com"}} },
		"uid":     func(p *Profile) { p.Isolation.UID++ },
		"userns":  func(p *Profile) { p.Isolation.UserNamespace = true },
		"tools":   func(p *Profile) { p.Tools.Denied = []string{"read"} },
		"ask":     func(p *Profile) { p.Exec.Ask = AskAlways },
		"result":  func(p *Profile) { p.Result.MaxStringLength++ },
	}
	for name, change := range changes {
		c := base.Clone()
		change(c)
		if c.Hash() == base.Hash() {
			t.Errorf("changing %s left the hash unchanged", name)
		}
	}
}

func TestClone_IsDeep(t *testing.T) {
	p := mustLoad(t, `tools: {allowed: [read], denied: [write]}
exec: {security: allowlist, allowedPatterns: [/bin/cat]}
network:
  mode: allowlist
  egress: [a.example.com]
  services: {m: {upstream: "https://m.example.com"}}
isolation: {capabilities: [kill]}
`)
	before := p.Clone()
	c := p.Clone()
	c.Tools.Allowed[0], c.Tools.Denied[0] = "x", "x"
	c.Exec.AllowedPatterns[0] = "x"
	c.Network.Egress[0] = "x"
	c.Network.Services["m"] = Service{Upstream: "x"}
	c.Isolation.Capabilities[0] = "x"
	c.Isolation.MaskedPaths[0] = "x"
	if !reflect.DeepEqual(p, before) {
		t.Fatalf("changing a clone changed the original:\n%+v", p)
	}
}

func TestSummary(t *testing.T) {
	p := mustLoad(t, "exec: {security: allowlist}\nlimits: {memory: 512Mi, pids: 128, timeout: 60s}\n")
	want := "network=none exec=allowlist seccomp=default runtime=runc mem=512Mi pids=128 cpu=1 timeout=60s"
	if got := p.Summary(); got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	q := mustLoad(t, egressProfile+"isolation: {seccomp: strict}\n")
	if got := q.Summary(); !strings.HasPrefix(got, "network=allowlist(3) exec=deny seccomp=strict runtime=runc mem=256Mi") {
		t.Errorf("Summary() = %q", got)
	}
}

func TestParseEgress(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "api.example.com", want: "api.example.com:443"},
		{in: "API.Example.com:8080", want: "api.example.com:8080"},
		{in: "*.example.com", want: "*.example.com:443"},
		{in: "*.example.com:80", want: "*.example.com:80"},
		{in: "10.0.0.1:80", want: "10.0.0.1:80"},
		{in: "[2001:db8::1]", want: "[2001:db8::1]:443"},
		{in: "localhost:11434", want: "localhost:11434"},
		{in: "", err: "empty entry"},
		{in: "api.example.com:", err: "empty port"},
		{in: "api.example.com:0", err: "not in 1-65535"},
		{in: "api.example.com:65536", err: "not in 1-65535"},
		{in: "api.example.com:+80", err: "not in 1-65535"},
		{in: "2001:db8::1", err: "IPv6 addresses go in brackets"},
		{in: "[2001:db8::1", err: "missing ]"},
		{in: "[10.0.0.1]:80", err: "bracketed IPv6"},
		{in: "*", err: "not a valid DNS name"},
		{in: "*.com", err: "too broad"},
		{in: "a.*.example.com", err: "not a valid DNS name"},
		{in: "-a.example.com", err: "not a valid DNS name"},
		{in: "a..example.com", err: "not a valid DNS name"},
		{in: "exa mple.com", err: "not a valid DNS name"},
		{in: "http://example.com", err: "not in 1-65535"},
		{in: "1.2.3", err: "partial IP address"},
	}
	for _, tt := range tests {
		r, err := ParseEgress(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseEgress(%q) error = %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("ParseEgress(%q): %v", tt.in, err)
		case tt.err == "" && r.String() != tt.want:
			t.Errorf("ParseEgress(%q) = %s, want %s", tt.in, r, tt.want)
		}
	}
}

func TestEgressRule_Matches(t *testing.T) {
	tests := []struct {
		rule, host string
		port       uint16
		want       bool
	}{
		{"api.example.com", "api.example.com", 443, true},
		{"api.example.com", "API.example.com.", 443, true},
		{"api.example.com", "api.example.com", 80, false},
		{"api.example.com", "x.api.example.com", 443, false},
		{"*.example.com", "a.example.com", 443, true},
		{"*.example.com", "a.b.example.com", 443, true},
		{"*.example.com", "example.com", 443, false},
		{"*.example.com", "badexample.com", 443, false},
		{"10.0.0.1:80", "10.0.0.1", 80, true},
		{"[2001:db8::1]", "[2001:db8:0::1]", 443, true},
	}
	for _, tt := range tests {
		r, err := ParseEgress(tt.rule)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Matches(tt.host, tt.port); got != tt.want {
			t.Errorf("%s.Matches(%s, %d) = %v, want %v", r, tt.host, tt.port, got, tt.want)
		}
	}
}

func TestParseBytes_RoundTrips(t *testing.T) {
	for _, s := range []string{"1", "1023", "1Ki", "1536Ki", "256Mi", "3Gi", "0"} {
		n, err := ParseBytes(s)
		if err != nil {
			t.Fatalf("ParseBytes(%q): %v", s, err)
		}
		if got := FormatBytes(n); got != s {
			t.Errorf("FormatBytes(ParseBytes(%q)) = %q", s, got)
		}
	}
	for _, s := range []string{"", "Mi", "1M", "1.5Gi", "-1", " 1", "1 Mi", "9999999999999Gi", "99999999999999999999"} {
		if _, err := ParseBytes(s); err == nil {
			t.Errorf("ParseBytes(%q) succeeded", s)
		}
	}
}

func TestDiff_NamesEveryChangedSetting(t *testing.T) {
	set, err := Load(policies.FS, checkSchema)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := set.Get("vanilla")
	b, _ := set.Get("ironclaw")
	lines, err := Diff(a, b)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(lines, "\n")
	for _, want := range []string{"limits.memoryBytes: 536870912 -> 134217728", `isolation.seccomp: "default" -> "strict"`, "isolation.userNamespace: false -> true"} {
		if !strings.Contains(joined, want) {
			t.Errorf("diff lacks %q:\n%s", want, joined)
		}
	}
	if same, _ := Diff(a, a); len(same) != 0 {
		t.Errorf("a profile differs from itself: %v", same)
	}
}

func TestLint_ReportsFileLineAndField(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "custom.yaml")
	if err := os.WriteFile(bad, []byte("extends: secureclaw\nexec:\n  security: sometimes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Lint(policies.FS, []string{bad}, checkSchema)
	if err == nil || !strings.Contains(err.Error(), "custom.yaml:3") || !strings.Contains(err.Error(), "exec.security") {
		t.Fatalf("err = %v, want custom.yaml:3 and exec.security", err)
	}
	good := filepath.Join(dir, "tight.yaml")
	if err := os.WriteFile(good, []byte("extends: secureclaw\nlimits:\n  timeout: 5s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := Lint(policies.FS, []string{good}, checkSchema)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := set.Get("tight"); p.Limits.Timeout.Seconds() != 5 {
		t.Errorf("tight timeout = %v", p.Limits.Timeout)
	}
}

package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies"
)

// checkSchema is the broker's schema compiler, which every real caller of
// Load passes.
var checkSchema = WithSchemaCheck(result.CheckSchema)

// load runs Load over in-memory files.
func load(files map[string]string, opts ...Option) (*Set, error) {
	fsys := fstest.MapFS{}
	for name, body := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(body)}
	}
	return Load(fsys, append([]Option{checkSchema}, opts...)...)
}

func TestLoad_RefusesADefaultSchemaWithNoCompiler(t *testing.T) {
	fsys := fstest.MapFS{"p.yaml": {Data: []byte("result:\n  defaultSchema: '{\"type\": \"object\"}'\n")}}
	_, err := Load(fsys)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "result.defaultSchema") {
		t.Fatalf("Load without WithSchemaCheck = %v, want the default schema refused", err)
	}
	if _, err := Load(fsys, checkSchema); err != nil {
		t.Fatalf("Load with WithSchemaCheck: %v", err)
	}
}

func TestLoad_ShippedProfiles(t *testing.T) {
	set, err := Load(policies.FS, checkSchema)
	if err != nil {
		t.Fatalf("Load(policies.FS, checkSchema): %v", err)
	}
	if got, want := set.Names(), []string{"ironclaw", "secureclaw", "vanilla"}; !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	for _, p := range set.All() {
		if errs := validate(p, config{checkSchema: result.CheckSchema}, nil); len(errs) > 0 {
			t.Errorf("%s: loaded profile fails validation: %v", p.Name, errs)
		}
	}
}

func TestLoad_RejectsStrictDecodingErrors(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{"unknown field", "exec:\n  sekurity: deny\n", "p.yaml:2: exec.sekurity: unknown field (want allowedPatterns|ask|askFallback|security)"},
		{"unknown section", "limitz:\n  pids: 3\n", "p.yaml:1: limitz: unknown field"},
		{"unknown service field", "network:\n  mode: allowlist\n  services:\n    model:\n      upstream: https://a.example.com\n      token: x\n", "p.yaml:6: network.services.model.token: unknown field (want headers|inject|upstream)"},
		{"dotted key", "limits.pids: 3\n", `p.yaml:1: "limits.pids": unknown field`},
		{"wrong type string for int", "limits:\n  pids: many\n", "p.yaml:2: limits.pids: want an integer, got a string"},
		{"wrong type mapping for string", "exec:\n  security:\n    level: deny\n", "p.yaml:3: exec.security: want a string, got a mapping"},
		{"wrong type scalar for section", "tools: all\n", "p.yaml:1: tools: want a mapping, got a string"},
		{"wrong type list item", "tools:\n  allowed:\n    - read\n    - 3\n", "p.yaml:4: tools.allowed[1]: want a string, got an integer"},
		{"null list", "tools:\n  allowed:\n", "p.yaml:2: tools.allowed: want a list, got null"},
		{"quoted bool", "isolation:\n  readOnlyRoot: \"true\"\n", "p.yaml:2: isolation.readOnlyRoot: want true or false, got a string"},
		{"integer timeout", "limits:\n  timeout: 30\n", "p.yaml:2: limits.timeout: want a duration such as 30s, got an integer"},
		{"bad duration", "limits:\n  timeout: soon\n", `p.yaml:2: limits.timeout: "soon" is not a duration`},
		{"decimal memory unit", "limits:\n  memory: 256M\n", `p.yaml:2: limits.memory: "256M" is not a byte count`},
		{"negative uid", "isolation:\n  uid: -1\n", "p.yaml:2: isolation.uid: want an integer in 1-4294967295"},
		{"bad enum", "exec:\n  security: sometimes\n", `p.yaml:2: exec.security: unknown value "sometimes" (want deny|allowlist|full)`},
		{"bad ask", "exec:\n  security: allowlist\n  ask: maybe\n", `p.yaml:3: exec.ask: unknown value "maybe" (want off|on-miss|always)`},
		{"bad askFallback", "exec:\n  askFallback: allow\n", `p.yaml:2: exec.askFallback: unknown value "allow" (want deny)`},
		{"bad network mode", "network:\n  mode: host\n", `p.yaml:2: network.mode: unknown value "host" (want none|allowlist)`},
		{"bad tools policy", "tools:\n  policy: open\n", `p.yaml:2: tools.policy: unknown value "open" (want allowlist|denylist)`},
		{"bad seccomp", "isolation:\n  seccomp: unconfined\n", `p.yaml:2: isolation.seccomp: unknown value "unconfined" (want default|strict)`},
		{"bad runtime", "isolation:\n  runtime: kata\n", `p.yaml:2: isolation.runtime: unknown value "kata" (want runc|crun|runsc)`},
		{"bad platform", "isolation:\n  runtime: runsc\n  platform: systrap\n", `p.yaml:3: isolation.platform: unknown value "systrap" (want ptrace|kvm)`},
		{"platform off runsc", "isolation:\n  runtime: runc\n  platform: ptrace\n", `p.yaml:3: isolation.platform: is gVisor's, and the runtime is runc, not runsc`},
		{"duplicate key", "limits:\n  pids: 1\n  pids: 2\n", "p.yaml:3: limits.pids: duplicate key (first set on line 2)"},
		{"duplicate section", "exec:\n  ask: off\nexec:\n  ask: off\n", "p.yaml:3: exec: duplicate key (first set on line 1)"},
		{"duplicate service", "network:\n  mode: allowlist\n  services:\n    m: {upstream: https://a.example.com}\n    m: {upstream: https://b.example.com}\n", "p.yaml:5: network.services.m: duplicate key (first set on line 4)"},
		{"alias", "base: &b\n  pids: 1\nlimits: *b\n", "p.yaml:1: base: unknown field"},
		{"alias value", "tools:\n  allowed: &a [read]\n  denied: *a\n", "p.yaml:3: tools.denied: anchors and aliases are not supported"},
		{"merge key", "limits:\n  <<: {pids: 1}\n", "p.yaml:2: limits: merge keys (<<) are not supported"},
		{"integer key", "limits:\n  1: 2\n", "p.yaml:2: limits: keys must be strings, got an integer"},
		{"syntax error", "limits:\n  pids: [1,\n", "p.yaml:2: invalid YAML: did not find expected node content"},
		{"two documents", "limits: {pids: 1}\n---\nlimits: {pids: 2}\n", "p.yaml:2: a profile file holds exactly one YAML document"},
		{"top level list", "- a\n", "p.yaml:1: want a mapping, got a list"},
		{"name mismatch", "name: q\n", `p.yaml:1: name: "q" does not match the file name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(map[string]string{"p.yaml": tt.body})
			if err == nil {
				t.Fatalf("Load succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid")
			}
		})
	}
}

func TestLoad_RejectsUnsafeValues(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{"uid 0", "isolation:\n  uid: 0\n", "p.yaml:2: isolation.uid: 0 would run the agent as root"},
		{"gid 0", "isolation:\n  gid: 0\n", "p.yaml:2: isolation.gid: 0 would give the agent root's group"},
		{"exec full", "tools: {allowed: [exec]}\nexec:\n  security: full\n", "p.yaml:3: exec.security: full lets the agent run any command"},
		{"new privileges", "isolation:\n  noNewPrivileges: false\n", "p.yaml:2: isolation.noNewPrivileges: false lets setuid binaries"},
		{"privileged", "isolation:\n  privileged: true\n", "p.yaml:2: isolation.privileged: cannot be true: privileged mode"},
		{"host network", "isolation:\n  hostNetwork: true\n", "p.yaml:2: isolation.hostNetwork: cannot be true: the host network"},
		{"host pid", "isolation:\n  hostPID: true\n", "p.yaml:2: isolation.hostPID: cannot be true"},
		{"host ipc", "isolation:\n  hostIPC: true\n", "p.yaml:2: isolation.hostIPC: cannot be true"},
		{"insecure auth", "allowInsecureAuth: true\n", "p.yaml:1: allowInsecureAuth: cannot be true: it would let callers in"},
		{"capability sys_admin", "isolation:\n  capabilities: [CAP_SYS_ADMIN]\n", `p.yaml:2: isolation.capabilities[0]: "CAP_SYS_ADMIN" cannot be granted`},
		{"capability setuid", "isolation:\n  capabilities:\n    - chown\n    - setuid\n", `p.yaml:4: isolation.capabilities[1]: "setuid" cannot be granted`},
		{"zero memory", "limits:\n  memory: 0\n", "p.yaml:2: limits.memory: must be positive"},
		{"zero scratch", "limits:\n  scratch: 0\n", "p.yaml:2: limits.scratch: must be positive"},
		{"huge memory", "limits:\n  memory: 64Gi\n", "p.yaml:2: limits.memory: 64Gi is above the maximum 16Gi"},
		{"tiny memory", "limits:\n  memory: 1Ki\n", "p.yaml:2: limits.memory: 1Ki is below the minimum 4Mi"},
		{"zero pids", "limits:\n  pids: 0\n", "p.yaml:2: limits.pids: 0 is not in 1-4096"},
		{"negative cpu", "limits:\n  cpu: -1\n", "p.yaml:2: limits.cpu: -1 is not in"},
		{"nan cpu", "limits:\n  cpu: .nan\n", "p.yaml:2: limits.cpu: NaN is not in"},
		{"long timeout", "limits:\n  timeout: 2h\n", "p.yaml:2: limits.timeout: 2h0m0s is not in 1s-1h0m0s"},
		{"negative timeout", "limits:\n  timeout: -5s\n", "p.yaml:2: limits.timeout: -5s is not in"},
		{"egress without network", "network:\n  egress: [a.example.com]\n", "p.yaml:2: network.egress: has no effect with network.mode none"},
		{"bad egress host", "network:\n  mode: allowlist\n  egress:\n    - a.example.com\n    - bad_host.example.com\n", "p.yaml:5: network.egress[1]: host \"bad_host.example.com\" is not a valid DNS name"},
		{"bad egress port", "network:\n  mode: allowlist\n  egress: [\"a.example.com:70000\"]\n", `p.yaml:3: network.egress[0]: port "70000" is not in 1-65535`},
		{"broad wildcard", "network:\n  mode: allowlist\n  egress: ['*.com']\n", "p.yaml:3: network.egress[0]: wildcard suffix \"com\" is too broad"},
		{"egress to a service alias", "network:\n  mode: allowlist\n  egress: [a.example.com, model.airlock.internal:80]\n", "p.yaml:3: network.egress[1]: model.airlock.internal:80 is under airlock.internal, the domain of service aliases"},
		{"egress to the service domain", "network:\n  mode: allowlist\n  egress: ['*.airlock.internal']\n", "p.yaml:3: network.egress[0]: *.airlock.internal:443 is under airlock.internal"},
		{"egress to the service domain itself", "network:\n  mode: allowlist\n  egress: ['AIRLOCK.internal.']\n", "network.egress[0]: "},
		{"literal secret", "network:\n  mode: allowlist\n  services:\n    model:\n      upstream: https://api.example.com\n      inject:\n        header: Authorization\n        secretRef: sk-live-123456\n", "p.yaml:8: network.services.model.inject.secretRef: want env:NAME or file:/abs/path; a literal secret is refused"},
		{"relative secret file", "network:\n  mode: allowlist\n  services:\n    model:\n      upstream: https://api.example.com\n      inject: {header: X-Key, secretRef: 'file:key.txt'}\n", "p.yaml:6: network.services.model.inject.secretRef: want env:NAME"},
		{"http upstream", "network:\n  mode: allowlist\n  services:\n    model:\n      upstream: http://api.example.com\n", "p.yaml:5: network.services.model.upstream: http sends the injected credential in clear"},
		{"credential in upstream", "network:\n  mode: allowlist\n  services:\n    model:\n      upstream: https://u:sk-live-123@api.example.com\n", "p.yaml:5: network.services.model.upstream: must not carry userinfo"},
		{"services without network", "network:\n  services:\n    model: {upstream: https://api.example.com}\n", "p.yaml:2: network.services: need network.mode allowlist"},
		{"unknown group", "tools:\n  allowed: [group:everything]\n", `p.yaml:2: tools.allowed[0]: unknown group "group:everything" (want group:agent|group:fs|group:runtime|group:web)`},
		{"allowed with denylist", "tools:\n  policy: denylist\n  allowed: [read]\n", "p.yaml:3: tools.allowed: has no effect with tools.policy denylist"},
		{"patterns without allowlist", "exec:\n  allowedPatterns: [/bin/cat]\n", "p.yaml:2: exec.allowedPatterns: has no effect unless exec.security is allowlist"},
		{"ask with deny", "exec:\n  ask: always\n", "p.yaml:2: exec.ask: always has no effect when exec.security is deny"},
		{"bad default schema", "result:\n  defaultSchema: '{\"type\":'\n", "p.yaml:2: result.defaultSchema"},
		{"empty-matching redact pattern", "result:\n  redactPatterns: ['x*']\n", "p.yaml:2: result.redactPatterns[0]: matches the empty string"},
		{"relative masked path", "isolation:\n  maskedPaths: [proc/x]\n", `p.yaml:2: isolation.maskedPaths[0]: "proc/x" is not a clean absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(map[string]string{"p.yaml": tt.body})
			if err == nil {
				t.Fatalf("Load succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
}

func TestLoad_RejectsWritableRootfsInProductionProfiles(t *testing.T) {
	cases := []map[string]string{
		{"secureclaw.yaml": "isolation:\n  readOnlyRoot: false\n"},
		{"ironclaw.yaml": "isolation:\n  readOnlyRoot: false\n"},
		{"secureclaw.yaml": "isolation:\n  readOnlyRoot: true\n", "mine.yaml": "extends: secureclaw\nisolation:\n  readOnlyRoot: false\n"},
	}
	for _, files := range cases {
		_, err := load(files)
		if err == nil || !strings.Contains(err.Error(), "isolation.readOnlyRoot: false is not allowed") {
			t.Errorf("%v: err = %v, want a readOnlyRoot refusal", files, err)
		}
	}
	if _, err := load(map[string]string{"dev.yaml": "isolation:\n  readOnlyRoot: false\n"}); err != nil {
		t.Errorf("a development profile may have a writable rootfs: %v", err)
	}
}

func TestLoad_ErrorNeverQuotesSecret(t *testing.T) {
	body := "network:\n  mode: allowlist\n  services:\n    model:\n      upstream: https://u:hunter2@api.example.com/?key=hunter2\n      inject: {header: X-Key, secretRef: hunter2}\n"
	_, err := load(map[string]string{"p.yaml": body})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Load error = %v, want an error that does not quote the secret", err)
	}
}

func TestLoad_DevModeAllowsFullExec(t *testing.T) {
	body := "tools: {allowed: [exec]}\nexec: {security: full}\nisolation: {noNewPrivileges: false}\n"
	if _, err := load(map[string]string{"p.yaml": body}); err == nil {
		t.Fatal("Load without dev mode succeeded")
	}
	set, err := load(map[string]string{"p.yaml": body}, WithDevMode(true))
	if err != nil {
		t.Fatalf("Load with dev mode: %v", err)
	}
	if p, _ := set.Get("p"); !p.ExecAllowed() {
		t.Error("ExecAllowed() = false with exec full")
	}
}

func TestLoad_AcceptsInvariantKeysWhenFalse(t *testing.T) {
	body := "allowInsecureAuth: false\nisolation:\n  privileged: false\n  hostNetwork: false\n  hostPID: false\n  hostIPC: false\n"
	if _, err := load(map[string]string{"p.yaml": body}); err != nil {
		t.Fatalf("Load: %v", err)
	}
}

func TestLoad_DefaultsAreClosed(t *testing.T) {
	set, err := load(map[string]string{"empty.yaml": "# nothing set\n"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	p, _ := set.Get("empty")
	switch {
	case p.Network.Mode != NetworkNone:
		t.Errorf("network.mode = %q, want none", p.Network.Mode)
	case p.Exec.Security != ExecDeny || p.ExecAllowed():
		t.Errorf("exec.security = %q, want deny", p.Exec.Security)
	case len(p.EffectiveTools([]string{"read", "exec"})) != 0:
		t.Errorf("EffectiveTools = %v, want none", p.EffectiveTools([]string{"read", "exec"}))
	case len(p.Isolation.Capabilities) != 0 || p.Isolation.UID == 0 || !p.Isolation.NoNewPrivileges || !p.Isolation.ReadOnlyRoot:
		t.Errorf("isolation = %+v, want closed", p.Isolation)
	case p.Image() != ImageReader:
		t.Errorf("Image() = %q, want reader", p.Image())
	}
}

func TestLoad_NormalizesLists(t *testing.T) {
	body := `tools: {allowed: [Read, group:FS, read]}
network:
  mode: allowlist
  egress: [B.example.com, "a.example.com:443", a.example.com, "[2001:DB8::1]:8443"]
isolation: {capabilities: [kill, CAP_CHOWN], maskedPaths: [/proc/extra]}
`
	set, err := load(map[string]string{"p.yaml": body})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	p, _ := set.Get("p")
	if want := []string{"group:fs", "read"}; !slices.Equal(p.Tools.Allowed, want) {
		t.Errorf("tools.allowed = %v, want %v", p.Tools.Allowed, want)
	}
	if want := []string{"[2001:db8::1]:8443", "a.example.com:443", "b.example.com:443"}; !slices.Equal(p.Network.Egress, want) {
		t.Errorf("network.egress = %v, want %v", p.Network.Egress, want)
	}
	if want := []string{"CAP_CHOWN", "CAP_KILL"}; !slices.Equal(p.Isolation.Capabilities, want) {
		t.Errorf("capabilities = %v, want %v", p.Isolation.Capabilities, want)
	}
	if !slices.Contains(p.Isolation.MaskedPaths, "/proc/extra") || !slices.Contains(p.Isolation.MaskedPaths, "/proc/kcore") {
		t.Errorf("maskedPaths = %v, want the extra path and the defaults", p.Isolation.MaskedPaths)
	}
}

func TestLoad_ExtendsOverridesOnlyFieldsSet(t *testing.T) {
	set, err := load(map[string]string{
		"base.yaml": `description: base
tools: {allowed: [group:agent, exec]}
exec: {security: allowlist, allowedPatterns: [/bin/cat, /bin/grep], ask: on-miss}
network: {mode: allowlist, egress: [a.example.com, b.example.com]}
limits: {memory: 512Mi, pids: 100, timeout: 40s}
isolation: {seccomp: strict}
`,
		"child.yaml": `extends: base
exec: {allowedPatterns: [/bin/cat]}
network: {egress: [a.example.com]}
limits: {memory: 128Mi}
`,
		"grandchild.yaml": "extends: child\nlimits: {pids: 10}\n",
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	p, _ := set.Get("grandchild")
	if p.Extends != "child" || p.Description != "" {
		t.Errorf("extends, description = %q, %q; want child and no inherited description", p.Extends, p.Description)
	}
	if p.Limits.MemoryBytes != 128*Mi || p.Limits.Pids != 10 || p.Limits.Timeout != 40*time.Second {
		t.Errorf("limits = %+v, want memory from child, pids own, timeout from base", p.Limits)
	}
	if !slices.Equal(p.Exec.AllowedPatterns, []string{"/bin/cat"}) || p.Exec.Ask != AskOnMiss || p.Exec.Security != ExecAllowlist {
		t.Errorf("exec = %+v, want patterns replaced and the rest inherited", p.Exec)
	}
	if !slices.Equal(p.Network.Egress, []string{"a.example.com:443"}) || p.Network.Mode != NetworkAllowlist {
		t.Errorf("network = %+v, want egress replaced and mode inherited", p.Network)
	}
	if p.Isolation.Seccomp != SeccompStrict || p.Limits.CPU != 1 {
		t.Errorf("seccomp %q cpu %g, want strict from base and the default cpu", p.Isolation.Seccomp, p.Limits.CPU)
	}
}

func TestLoad_ExtendsReportsInheritedValueWhereWritten(t *testing.T) {
	_, err := load(map[string]string{
		"base.yaml":  "network:\n  mode: allowlist\n  egress: [a.example.com]\n",
		"child.yaml": "extends: base\nnetwork:\n  mode: none\n",
	})
	// The conflict is the child's doing, but the egress line is the base's.
	if err == nil || !strings.Contains(err.Error(), "base.yaml:3: network.egress: has no effect with network.mode none") {
		t.Fatalf("Load error = %v, want the egress located in base.yaml", err)
	}
}

func TestLoad_RejectsBadExtends(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"self", map[string]string{"a.yaml": "extends: a\n"}, "a.yaml:1: extends: profiles extend each other in a cycle: a -> a"},
		{"cycle", map[string]string{"a.yaml": "extends: b\n", "b.yaml": "extends: c\n", "c.yaml": "\n\nextends: a\n"}, "c.yaml:3: extends: profiles extend each other in a cycle: a -> b -> c -> a"},
		{"unknown parent", map[string]string{"a.yaml": "limits: {pids: 1}\nextends: nope\n"}, `a.yaml:2: extends: unknown profile "nope" (have a)`},
		{"wrong type", map[string]string{"a.yaml": "extends: [b]\n"}, "a.yaml:1: extends: want a string, got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(tt.files)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLoad_ChildOfInvalidParentFails(t *testing.T) {
	_, err := load(map[string]string{"base.yaml": "isolation: {uid: 0}\n", "child.yaml": "extends: base\n"})
	if err == nil {
		t.Fatal("Load succeeded")
	}
	// One problem, one message, although two profiles carry it.
	if n := strings.Count(err.Error(), "isolation.uid"); n != 1 {
		t.Errorf("error mentions isolation.uid %d times, want once:\n%v", n, err)
	}
}

func TestLoad_ReportsEveryProblemInOrder(t *testing.T) {
	_, err := load(map[string]string{
		"b.yaml": "limits:\n  pids: 0\n  memory: 0\n",
		"a.yaml": "isolation: {uid: 0}\n",
	})
	if err == nil {
		t.Fatal("Load succeeded")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{"a.yaml:1: isolation.uid", "b.yaml:2: limits.pids", "b.yaml:3: limits.memory"}
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

func TestLoad_RejectsBadFiles(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no profiles", map[string]string{"README.md": "hi"}, "no *.yaml profiles found"},
		{"yml extension", map[string]string{"a.yaml": "", "b.yml": ""}, "b.yml: profile files must end in .yaml"},
		{"bad file name", map[string]string{"Bad_Name.yaml": ""}, `Bad_Name.yaml: "Bad_Name" is not a valid profile name`},
		{"too large", map[string]string{"a.yaml": "#" + strings.Repeat("x", maxFileSize)}, "a.yaml: larger than 1Mi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(tt.files)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load error = %v, want ErrInvalid containing %q", err, tt.want)
			}
		})
	}
}

func TestSet_GetUnknownProfile(t *testing.T) {
	set, err := Load(policies.FS, checkSchema)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Get("openclaw"); !errors.Is(err, ErrUnknownProfile) {
		t.Fatalf("Get(openclaw) error = %v, want ErrUnknownProfile", err)
	}
	if _, err := set.Get("Vanilla"); !errors.Is(err, ErrUnknownProfile) {
		t.Fatalf("Get(Vanilla) error = %v, want ErrUnknownProfile: names are exact", err)
	}
	all := set.All()
	if len(all) != 3 || all[0].Name != "ironclaw" || all[2].Name != "vanilla" {
		t.Errorf("All() not sorted by name: %v", set.Names())
	}
}

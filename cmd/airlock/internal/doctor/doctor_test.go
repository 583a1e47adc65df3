package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/sandbox/footprint"
)

// configIDs are the checks that judge the Config rather than the host, so
// their outcome is the same on every machine.
var configIDs = []string{
	"statedir.perms", "socket.mode", "bind.listen", "bind.metrics", "tls.files", "tls.upstream-ca",
	"token.strength", "token.file-mode", "tokens.literal", "token.webhook-distinct",
	"profiles.invariants",
}

// literalToken is pasted into the bad tokens file; no report may repeat it.
const literalToken = "5f3c9a1be27d4608c1a9e3f7b2d5c8e04a6f1b9d3e7c2a58"

// write creates path with data and exactly mode perm, whatever the umask.
func write(t *testing.T, path, data string, perm os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

// badConfig is every configuration mistake doctor should catch at once.
func badConfig(t *testing.T) Config {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, 0o777); err != nil {
		t.Fatal(err)
	}
	short := write(t, filepath.Join(dir, "short.token"), "abcdef\n", 0o644)
	policyDir := filepath.Join(dir, "policies")
	if err := os.Mkdir(policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(policyDir, "strict.yaml"), "isolation: {uid: 0}\n", 0o644)
	return Config{
		StateDir:  state,
		Socket:    write(t, filepath.Join(dir, "airlock.sock"), "", 0o666),
		Listen:    "0.0.0.0:9",
		TokenFile: short,
		TokensFile: write(t, filepath.Join(dir, "tokens.yaml"),
			"tokens:\n  - name: openclaw\n    scopes: [spawn]\n    token: "+literalToken+"\n", 0o600),
		WebhookTokenFile: write(t, filepath.Join(dir, "webhook.token"), "abcdef\n", 0o600),
		PolicyDir:        policyDir,
		MetricsListen:    "0.0.0.0:9464",
		PprofListen:      "localhost:6060",
		UpstreamCA:       write(t, filepath.Join(dir, "upstream.pem"), "not a certificate\n", 0o644),
		Pools:            map[string]int{"nope": 2},
		owner:            os.Geteuid(),
	}
}

// goodConfig passes every configuration check: a private state dir, a
// private 0600 socket, loopback TCP, strong private tokens referenced
// from the tokens file, a distinct webhook token and sound profiles.
func goodConfig(t *testing.T) Config {
	dir := t.TempDir()
	// The shipped ironclaw profile uses a user namespace, so the state dir
	// must be reachable by other users: it goes under the world-traversable
	// temp dir rather than t.TempDir's private one.
	state, err := os.MkdirTemp("", "doctor-state-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	if err := os.Chmod(state, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := footprint.CheckTraversable(state); err != nil {
		t.Skipf("the temp dir cannot hold a user-namespace state dir: %v", err)
	}
	token := func(name string) string {
		tok, err := auth.GenerateToken()
		if err != nil {
			t.Fatal(err)
		}
		return write(t, filepath.Join(dir, name), tok+"\n", 0o600)
	}
	envTok, _ := auth.GenerateToken()
	t.Setenv("AIRLOCK_DOCTOR_TEST_TOKEN", envTok)
	sock := filepath.Join(dir, "airlock.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := os.Chmod(sock, 0o600); err != nil {
		t.Fatal(err)
	}
	policyDir := filepath.Join(dir, "policies")
	if err := os.Mkdir(policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, _ := fs.ReadDir(policies.FS, ".")
	for _, e := range entries {
		data, _ := fs.ReadFile(policies.FS, e.Name())
		write(t, filepath.Join(policyDir, e.Name()), string(data), 0o644)
	}
	return Config{
		StateDir:  state,
		Socket:    sock,
		Listen:    "127.0.0.1:9",
		TokenFile: token("gateway.token"),
		TokensFile: write(t, filepath.Join(dir, "tokens.yaml"),
			"tokens:\n  - name: openclaw\n    scopes: [spawn, read]\n    secretRef: file:"+token("openclaw.token")+
				"\n  - name: ops\n    scopes: [read, admin]\n    secretRef: env:AIRLOCK_DOCTOR_TEST_TOKEN\n", 0o644),
		WebhookTokenFile: token("webhook.token"),
		PolicyDir:        policyDir,
		MetricsListen:    "127.0.0.1:9464",
		PprofListen:      "[::1]:6060",
		Pools:            map[string]int{"secureclaw": 2, "ironclaw": 1},
		owner:            os.Geteuid(),
	}
}

func byID(checks []Check) map[string]Check {
	m := map[string]Check{}
	for _, c := range checks {
		m[c.ID] = c
	}
	return m
}

func TestRun_ReportsExactlyTheExpectedConfigFailures(t *testing.T) {
	tests := []struct {
		name   string
		config func(*testing.T) Config
		failed []string
	}{
		{
			name:   "bad config",
			config: badConfig,
			failed: []string{
				"statedir.perms", "socket.mode", "bind.listen", "bind.metrics", "tls.upstream-ca",
				"token.strength", "token.file-mode", "tokens.literal", "token.webhook-distinct",
				"profiles.invariants",
			},
		},
		{name: "good config", config: goodConfig, failed: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checks := byID(Run(context.Background(), tt.config(t)))
			var failed []string
			for _, id := range configIDs {
				c, ok := checks[id]
				if !ok {
					t.Fatalf("no %s check", id)
				}
				if !c.OK {
					if c.Severity != Fail {
						t.Errorf("%s: %s, want ok or fail: %s", id, c.Severity, c.Detail)
					}
					failed = append(failed, id)
				}
			}
			slices.Sort(failed)
			want := slices.Sorted(slices.Values(tt.failed))
			if !slices.Equal(failed, want) {
				for _, id := range configIDs {
					t.Logf("%-4s %s: %s", Status(checks[id]), id, checks[id].Detail)
				}
				t.Fatalf("failed %v, want %v", failed, want)
			}
		})
	}
}

func TestRun_BadConfigSaysWhatIsWrongAndHowToFixIt(t *testing.T) {
	cfg := badConfig(t)
	checks := byID(Run(context.Background(), cfg))
	tests := []struct {
		id   string
		want []string
	}{
		{"statedir.perms", []string{"mode 0777", "other users can write"}},
		{"socket.mode", []string{"is not a socket", "mode 0666"}},
		{"bind.listen", []string{"0.0.0.0:9", "every interface", "--allow-remote"}},
		{"token.strength", []string{cfg.TokenFile, "6 hex characters (24 bits)"}},
		{"token.file-mode", []string{cfg.TokenFile, "mode 0644"}},
		{"tokens.literal", []string{cfg.TokensFile + ":4: ", `"token" key`}},
		{"token.webhook-distinct", []string{cfg.WebhookTokenFile, "same secret as gateway token --token-file"}},
		{"profiles.invariants", []string{filepath.Join(cfg.PolicyDir, "strict.yaml") + ":1: isolation.uid: 0 would run the agent as root"}},
		{"bind.metrics", []string{"--metrics-listen 0.0.0.0:9464 is not a loopback address; binding it needs --allow-remote and --tls-cert/--tls-key", `--pprof "localhost:6060" is not a loopback IP`}},
		{"tls.upstream-ca", []string{cfg.UpstreamCA + " holds no PEM certificate", "airlockd refuses to start"}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			c := checks[tt.id]
			for _, w := range tt.want {
				if !strings.Contains(c.Detail, w) {
					t.Errorf("detail %q lacks %q", c.Detail, w)
				}
			}
			if c.Fix == "" {
				t.Error("no fix hint")
			}
		})
	}
}

func TestRun_NeverRepeatsASecret(t *testing.T) {
	cfg := badConfig(t)
	var out bytes.Buffer
	if err := WriteJSON(&out, Run(context.Background(), cfg)); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{literalToken, "abcdef"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("the report contains the secret %q", secret)
		}
	}
}

func TestRun_ReturnsEveryCheckOnceInIDOrder(t *testing.T) {
	checks := Run(context.Background(), goodConfig(t))
	var ids []string
	for _, c := range checks {
		ids = append(ids, c.ID)
		if c.Title == "" || c.Detail == "" {
			t.Errorf("%s: empty title or detail: %+v", c.ID, c)
		}
		if c.OK && (c.Severity != Info || c.Fix != "") {
			t.Errorf("%s passed with severity %s and fix %q, want info and none", c.ID, c.Severity, c.Fix)
		}
		if !c.OK && c.Fix == "" {
			t.Errorf("%s did not pass but has no fix hint: %s", c.ID, c.Detail)
		}
	}
	if !slices.Equal(ids, IDs()) {
		t.Errorf("ids %v, want %v", ids, IDs())
	}
	seen := map[string]bool{}
	for _, id := range IDs() {
		if seen[id] {
			t.Errorf("duplicate id %s", id)
		}
		seen[id] = true
	}
}

func TestCheckBind_AppliesAirlockdsBindPolicy(t *testing.T) {
	tls := Config{TLSCert: "c.pem", TLSKey: "k.pem"}
	withTLS := func(c Config, ca bool) Config {
		c.TLSCert, c.TLSKey = tls.TLSCert, tls.TLSKey
		if ca {
			c.TLSClientCA = "ca.pem"
		}
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		ok   bool
		sev  Severity
	}{
		{"unix socket by default", Config{}, true, Info},
		{"loopback IPv4 literal", Config{Listen: "127.0.0.1:7443"}, true, Info},
		{"loopback IPv6 literal", Config{Listen: "[::1]:7443"}, true, Info},
		{"a name, which could resolve anywhere", Config{Listen: "localhost:7443"}, false, Fail},
		{"no port", Config{Listen: "127.0.0.1"}, false, Fail},
		{"any address without opt-in", Config{Listen: "0.0.0.0:9"}, false, Fail},
		{"tailnet address without opt-in", Config{Listen: "100.101.102.103:9"}, false, Fail},
		{"opt-in without TLS", Config{Listen: "0.0.0.0:9", AllowRemote: true}, false, Fail},
		{"TLS without opt-in", withTLS(Config{Listen: "0.0.0.0:9"}, true), false, Fail},
		{"opt-in and TLS without client certificates", withTLS(Config{Listen: "0.0.0.0:9", AllowRemote: true}, false), false, Warn},
		{"opt-in, TLS and client certificates", withTLS(Config{Listen: "0.0.0.0:9", AllowRemote: true}, true), true, Info},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := checkBind(context.Background(), &env{cfg: tt.cfg.withDefaults()})
			if r.ok != tt.ok || !r.ok && r.sev != tt.sev {
				t.Errorf("ok %v severity %s, want ok %v severity %s: %s", r.ok, r.sev, tt.ok, tt.sev, r.detail)
			}
		})
	}
}

// TestCheckDebugListeners_MetricsFollowTheAPIsBindRule: --metrics-listen
// off loopback passes only with --allow-remote and TLS; --pprof never.
func TestCheckDebugListeners_MetricsFollowTheAPIsBindRule(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"loopback metrics", Config{MetricsListen: "127.0.0.1:9464"}, true},
		{"pod address without opt-in", Config{MetricsListen: "10.1.2.3:9464", TLSCert: "c.pem", TLSKey: "k.pem"}, false},
		{"pod address without TLS", Config{MetricsListen: "10.1.2.3:9464", AllowRemote: true}, false},
		{"pod address with opt-in and TLS", Config{MetricsListen: "10.1.2.3:9464", AllowRemote: true, TLSCert: "c.pem", TLSKey: "k.pem"}, true},
		{"pprof off loopback, even with opt-in and TLS", Config{PprofListen: "10.1.2.3:6060", AllowRemote: true, TLSCert: "c.pem", TLSKey: "k.pem"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := checkDebugListeners(context.Background(), &env{cfg: tt.cfg})
			if r.ok != tt.ok {
				t.Errorf("ok %v, want %v: %s", r.ok, tt.ok, r.detail)
			}
		})
	}
}

func TestCheckLiteralTokens_SaysWhereNeverWhat(t *testing.T) {
	const tok = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWpr"
	tests := []struct {
		name  string
		file  string
		lines []string
	}{
		{"only references", "tokens:\n  - name: a\n    scopes: [spawn]\n    secretRef: file:/etc/airlock/a.token\n  - name: b\n    scopes: [read]\n    secretRef: env:B\n", nil},
		{"a token key", "tokens:\n  - name: a\n    token: " + tok + "\n", []string{":3: "}},
		{"a password key in a comment", "# password: hunter2\ntokens: []\n", []string{":1: "}},
		{"a pasted secretRef", "tokens:\n  - name: a\n    scopes: [spawn]\n    secretRef: " + tok + "\n", []string{":4: "}},
		{"a token under an unknown key", "tokens:\n  - name: a\n    auth: " + tok + "\n", []string{":3: "}},
		{"two at once", "tokens:\n  - name: a\n    secretRef: " + tok + "\n  - name: b\n    bearer: x\n", []string{":3: ", ":5: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, filepath.Join(t.TempDir(), "tokens.yaml"), tt.file, 0o600)
			r := checkLiteralTokens(context.Background(), &env{cfg: Config{TokensFile: path}})
			if r.ok != (len(tt.lines) == 0) {
				t.Fatalf("ok %v, want %v: %s", r.ok, len(tt.lines) == 0, r.detail)
			}
			for _, l := range tt.lines {
				if !strings.Contains(r.detail, path+l) {
					t.Errorf("detail %q does not locate %s", r.detail, path+l)
				}
			}
			if strings.Contains(r.detail, tok) || strings.Contains(r.detail, "hunter2") {
				t.Errorf("detail repeats the secret: %s", r.detail)
			}
		})
	}
}

func TestSummary_CountsOnlyFailedFailChecks(t *testing.T) {
	checks := []Check{
		{ID: "a", OK: true, Severity: Info},
		{ID: "b", Severity: Warn},
		{ID: "c", Severity: Fail},
		{ID: "d", Severity: Info},
		{ID: "e", Severity: Fail},
	}
	if got := Summary(checks); got != 2 {
		t.Errorf("Summary = %d, want 2", got)
	}
}

func TestWriteText_OneAlignedLinePerCheckThenASummary(t *testing.T) {
	checks := []Check{
		{ID: "kernel.seccomp", OK: true, Severity: Info, Detail: "available"},
		{ID: "token.strength", Severity: Fail, Detail: "token has 6 hex characters", Fix: "generate one"},
		{ID: "bin.airlock-agent", Severity: Warn, Detail: "not found", Fix: "pass --agent-binary"},
	}
	var b bytes.Buffer
	if err := WriteText(&b, checks); err != nil {
		t.Fatal(err)
	}
	want := "ok    kernel.seccomp     available\n" +
		"FAIL  token.strength     token has 6 hex characters  fix: generate one\n" +
		"WARN  bin.airlock-agent  not found  fix: pass --agent-binary\n" +
		"3 checks: 1 failed, 1 warnings\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestWriteJSON_CarriesTheVerdictAndEveryField(t *testing.T) {
	checks := []Check{{ID: "token.strength", Title: "token strength", Severity: Fail, Detail: "weak", Fix: "generate one"}}
	var b bytes.Buffer
	if err := WriteJSON(&b, checks); err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.OK || got.Failed != 1 || len(got.Checks) != 1 || got.Checks[0] != checks[0] {
		t.Errorf("got %+v", got)
	}
	if !strings.Contains(b.String(), `"severity": "fail"`) {
		t.Errorf("severity not a plain string: %s", b.String())
	}
}

func TestMajorMinor_ParsesDistributionVersions(t *testing.T) {
	tests := []struct {
		in   string
		want [2]int
		ok   bool
	}{
		{"1.6.20~ds1", [2]int{1, 6}, true},
		{"1.7.35", [2]int{1, 7}, true},
		{"2.1", [2]int{2, 1}, true},
		{"1.5rc1", [2]int{1, 5}, true},
		{"1.10-beta.2", [2]int{1, 10}, true},
		{"unknown", [2]int{}, false},
	}
	for _, tt := range tests {
		got, ok := majorMinor(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("majorMinor(%q) = %v, %v, want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestBlockClashes_FindsAccountsAndSubordinateRangesInTheBlock(t *testing.T) {
	const first, last = 1_000_000_000, 1_268_435_455
	files := map[string]string{
		"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/sbin/nologin\nclash:x:1000000100:1000000100::/:/bin/sh\n",
		"/etc/group":  "root:x:0:\n# comment:x:1000000000:\n",
		"/etc/subuid": "alice:100000:65536\nbob:999990000:20000\n",
		"/etc/subgid": "alice:100000:65536\ncarol:1268435455:1\ndave:1268435456:65536\n",
	}
	got := blockClashes(files, first, last)
	want := []string{"/etc/passwd: clash", "/etc/subgid: carol", "/etc/subuid: bob"}
	if !slices.Equal(got, want) {
		t.Errorf("blockClashes = %v, want %v", got, want)
	}
}

package egress

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/job"
)

const testSecret = "Bearer sk-test-0123456789abcdef"

// modelAPI is an https upstream that records what it was sent and echoes
// the credential back in a header, as a careless API might.
type modelAPI struct {
	*httptest.Server
	mu      sync.Mutex
	auth    []string
	uri     string
	agentID string
}

func newModelAPI(t *testing.T) *modelAPI {
	m := &modelAPI{}
	m.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.auth, m.uri, m.agentID = r.Header.Values("Authorization"), r.URL.RequestURI(), r.Header.Get("X-Agent")
		m.mu.Unlock()
		w.Header().Set("X-Echo-Auth", r.Header.Get("Authorization"))
		w.Header().Set("X-Request-Id", "req-1")
		io.WriteString(w, `{"choices":[]}`)
	}))
	t.Cleanup(m.Close)
	return m
}

func (h *harness) registerService(t *testing.T, m *modelAPI, base string) *Session {
	return h.registerJob(JobPolicy{
		JobID:    "svc",
		Services: map[string]job.Service{"model": {Upstream: m.URL + base, Header: "authorization", Secret: []byte(testSecret)}},
	})
}

func serviceHarness(t *testing.T, m *modelAPI) *harness {
	pool := certPool(m.Server)
	return newHarness(t, Config{ServiceTLS: &tls.Config{RootCAs: pool}})
}

func TestService_InjectsCredentialAndJobNeverSeesIt(t *testing.T) {
	m := newModelAPI(t)
	h := serviceHarness(t, m)
	s := h.registerService(t, m, "/v1")

	c := h.dial(jobSrc)
	io.WriteString(c, "POST http://model.airlock.internal/chat/completions?stream=false HTTP/1.1\r\n"+
		"Host: model.airlock.internal\r\nConnection: close\r\nAuthorization: Bearer guessed-by-agent\r\nX-Agent: a1\r\nContent-Length: 2\r\n\r\n{}")
	raw, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(raw))), nil)
	if err != nil {
		t.Fatalf("response: %v\n%s", err, raw)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d\n%s", resp.StatusCode, raw)
	}
	m.mu.Lock()
	auth, uri, agentID := m.auth, m.uri, m.agentID
	m.mu.Unlock()
	if len(auth) != 1 || auth[0] != testSecret {
		t.Errorf("upstream Authorization = %q, want only the injected secret", auth)
	}
	if uri != "/v1/chat/completions?stream=false" || agentID != "a1" {
		t.Errorf("upstream saw %q (X-Agent %q), want the path appended to /v1", uri, agentID)
	}
	if strings.Contains(string(raw), "sk-test") {
		t.Errorf("the job received the secret:\n%s", raw)
	}
	if resp.Header.Get("X-Request-Id") != "req-1" {
		t.Error("an ordinary upstream header was dropped")
	}
	waitFor(t, "the attempt to be logged", func() bool { return len(s.Log()) == 1 })
	log := s.Log()
	if len(log) != 1 || !log[0].Allowed || log[0].Host != "model.airlock.internal" {
		t.Errorf("log = %+v", log)
	}
	if strings.Contains(fmt.Sprintf("%+v", log), "sk-test") {
		t.Errorf("the log holds the secret: %+v", log)
	}
}

func TestService_HTTPUpstreamAndQueryJoin(t *testing.T) {
	o := newOrigin(t, nil)
	h := newHarness(t, Config{})
	h.registerJob(JobPolicy{JobID: "svc", Services: map[string]job.Service{"plain": {Upstream: o.URL + "/base/?key=fixed"}}})
	if code, _, _ := h.get(jobSrc, "http://plain.airlock.internal/x%20y?q=1"); code != 200 {
		t.Fatalf("got %d", code)
	}
	r, _ := o.lastRequest()
	if got := r.URL.RequestURI(); got != "/base/x%20y?key=fixed&q=1" {
		t.Errorf("upstream saw %q", got)
	}
}

func TestService_RefusesUnknownAliasesAndEscapes(t *testing.T) {
	m := newModelAPI(t)
	h := serviceHarness(t, m)
	h.registerService(t, m, "/v1")
	tests := []struct {
		name, req string
		want      int
	}{
		{"unknown alias", "GET http://other.airlock.internal/ HTTP/1.1\r\nHost: other.airlock.internal\r\n\r\n", 403},
		{"nested alias", "GET http://a.model.airlock.internal/ HTTP/1.1\r\nHost: a.model.airlock.internal\r\n\r\n", 403},
		{"bare domain", "GET http://airlock.internal/ HTTP/1.1\r\nHost: airlock.internal\r\n\r\n", 403},
		{"other port", "GET http://model.airlock.internal:8080/ HTTP/1.1\r\nHost: model.airlock.internal:8080\r\n\r\n", 403},
		{"CONNECT to alias", "CONNECT model.airlock.internal:443 HTTP/1.1\r\nHost: model.airlock.internal:443\r\n\r\n", 403},
		{"dot-dot segment", "GET http://model.airlock.internal/../admin HTTP/1.1\r\nHost: model.airlock.internal\r\n\r\n", 403},
		{"escaped dot-dot", "GET http://model.airlock.internal/%2e%2E/admin HTTP/1.1\r\nHost: model.airlock.internal\r\n\r\n", 403},
		{"TRACE echo", "TRACE http://model.airlock.internal/ HTTP/1.1\r\nHost: model.airlock.internal\r\n\r\n", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := h.raw(tt.req); code != tt.want {
				t.Errorf("got %d %q, want %d", code, body, tt.want)
			}
		})
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.uri != "" {
		t.Errorf("upstream was reached with %q", m.uri)
	}
}

func TestService_AliasDomainIsNeverResolvedOrAllowlisted(t *testing.T) {
	o := newOrigin(t, nil)
	h := newHarness(t, Config{})
	h.host("x.airlock.internal", "11.22.33.1", o)
	h.register("*.airlock.internal:80")
	if code, _, _ := h.get(jobSrc, "http://x.airlock.internal/"); code != 403 {
		t.Errorf("got %d, want 403", code)
	}
	if o.hits.Load() != 0 {
		t.Error("a name under the alias domain was resolved and dialed")
	}
}

func TestRegister_RefusesUnsafePolicies(t *testing.T) {
	p, err := New(Config{Resolver: fakeResolver{}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	up := "https://api.example"
	model := func(api, alias string) *ModelPolicy {
		return &ModelPolicy{Alias: alias, API: api, Name: "m", MaxTurns: 1, MaxInputTokens: 1, MaxOutputTokens: 1, MaxReplyBytes: 1}
	}
	tests := []struct {
		name string
		job  JobPolicy
		want error
	}{
		{"no job ID", JobPolicy{}, ErrInvalidJob},
		{"header without secret", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Header: "Authorization"}}}, ErrSecretMissing},
		{"secret with newline", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Header: "Authorization", Secret: []byte("a\r\nX-Evil: 1")}}}, ErrInvalidJob},
		{"no upstream", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {}}}, ErrInvalidJob},
		{"upstream not a URL", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: "https://api.example/sk-hidden%zz"}}}, ErrInvalidJob},
		{"upstream with userinfo", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: "https://u:sk-hidden@api.example"}}}, ErrInvalidJob},
		{"upstream not http", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: "file:///etc/passwd"}}}, ErrInvalidJob},
		{"alias not a label", JobPolicy{JobID: "j", Services: map[string]job.Service{"a.b": {Upstream: up}}}, ErrInvalidJob},
		{"port 0 rule", JobPolicy{JobID: "j", Egress: []policy.EgressRule{{Host: "a.example"}}}, ErrInvalidJob},
		{"wildcard IP rule", JobPolicy{JobID: "j", Egress: []policy.EgressRule{{Host: "10.0.0.1", Wildcard: true, Port: 80}}}, ErrInvalidJob},
		{"prefix with CRLF", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Header: "Authorization", Prefix: "Bearer\r\nX-Evil: 1 ", Secret: []byte("k")}}}, ErrInvalidJob},
		{"prefix with a tab", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Header: "Authorization", Prefix: "\t", Secret: []byte("k")}}}, ErrInvalidJob},
		{"prefix starting with a space", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Header: "Authorization", Prefix: " Bearer ", Secret: []byte("k")}}}, ErrInvalidJob},
		{"prefix without a header", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Prefix: "Bearer "}}}, ErrInvalidJob},
		{"fixed header name not a token", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Headers: map[string]string{"anthropic version": "1"}}}}, ErrInvalidJob},
		{"fixed header value with LF", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Headers: map[string]string{"anthropic-version": "1\nX-Evil: 1"}}}}, ErrInvalidJob},
		{"fixed header value empty", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Headers: map[string]string{"anthropic-version": ""}}}}, ErrInvalidJob},
		{"fixed header not ASCII", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Headers: map[string]string{"x-a": "caf\xc3\xa9"}}}}, ErrInvalidJob},
		{"fixed Host", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Headers: map[string]string{"host": "evil.example"}}}}, ErrInvalidJob},
		{"fixed Transfer-Encoding", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Headers: map[string]string{"Transfer-Encoding": "chunked"}}}}, ErrInvalidJob},
		{"fixed header twice", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Headers: map[string]string{"x-a": "1", "X-A": "2"}}}}, ErrInvalidJob},
		{"fixed header over the secret", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Header: "x-api-key", Secret: []byte("k"), Headers: map[string]string{"X-Api-Key": "v"}}}}, ErrInvalidJob},
		{"credential in Content-Length", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up, Header: "Content-Length", Secret: []byte("1")}}}, ErrInvalidJob},
		{"model alias not a service", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up}}, Model: model("openai", "other")}, ErrInvalidJob},
		{"model api unknown", JobPolicy{JobID: "j", Services: map[string]job.Service{"m": {Upstream: up}}, Model: model("gemini", "m")}, ErrInvalidJob},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.Register(netip.MustParseAddr("10.0.0.2"), tt.job)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			// An upstream can carry a credential: no error quotes it.
			if err != nil && strings.Contains(err.Error(), "sk-hidden") {
				t.Errorf("err quotes the upstream: %v", err)
			}
		})
	}
	// A model service as the profiles write it; the alias is matched in
	// any case, as the job's requests are.
	s, err := p.Register(netip.MustParseAddr("10.0.0.2"), JobPolicy{JobID: "m", Model: model("anthropic", "M"), Services: map[string]job.Service{"m": {
		Upstream: up, Header: "x-api-key", Prefix: "", Secret: []byte("k"), Headers: map[string]string{"anthropic-version": "2023-06-01"},
	}}})
	if err != nil {
		t.Fatalf("a good model service: %v", err)
	}
	s.Close()
	s, err = p.Register(netip.MustParseAddr("10.0.0.2"), JobPolicy{JobID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Register(netip.MustParseAddr("::ffff:10.0.0.2"), JobPolicy{JobID: "b"}); !errors.Is(err, ErrSourceInUse) {
		t.Errorf("second job on the same source: err = %v, want ErrSourceInUse", err)
	}
	s.Close()
	if _, err := p.Register(netip.MustParseAddr("10.0.0.2"), JobPolicy{JobID: "c"}); err != nil {
		t.Errorf("source not freed by Close: %v", err)
	}
}

func TestResolveSecret_ReadsReferencesAndFailsClearly(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string { return writeFile(t, dir, name, data) }
	t.Setenv("AIRLOCK_TEST_KEY", "sk-env")
	t.Setenv("AIRLOCK_TEST_EMPTY", "")
	tests := []struct {
		ref, want string
		err       error
	}{
		{"env:AIRLOCK_TEST_KEY", "sk-env", nil},
		{"env:AIRLOCK_TEST_EMPTY", "", ErrSecretMissing},
		{"env:AIRLOCK_TEST_UNSET_" + t.Name(), "", ErrSecretMissing},
		{"file:" + write("key", "sk-file\n"), "sk-file", nil},
		{"file:" + write("crlf", "sk-crlf\r\n"), "sk-crlf", nil},
		{"file:" + write("empty", ""), "", ErrSecretMissing},
		{"file:" + write("newline", "\n"), "", ErrSecretMissing},
		{"file:" + filepath.Join(dir, "missing"), "", ErrSecretMissing},
		{"file:relative/key", "", ErrSecretRef},
		{"file:" + dir + "/../x", "", ErrSecretRef},
		{"env:", "", ErrSecretRef},
		{"sk-literal-secret", "", ErrSecretRef},
	}
	for _, tt := range tests {
		got, err := ResolveSecret(tt.ref)
		if !errors.Is(err, tt.err) || string(got) != tt.want {
			t.Errorf("ResolveSecret(%q) = %q, %v; want %q, %v", tt.ref, got, err, tt.want, tt.err)
		}
		if err != nil && strings.Contains(err.Error(), "sk-") {
			t.Errorf("ResolveSecret(%q) error quotes a secret: %v", tt.ref, err)
		}
	}
}

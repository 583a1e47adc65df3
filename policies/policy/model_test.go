package policy

import (
	"errors"
	"strings"
	"testing"
)

const modelProfile = `network:
  mode: allowlist
  services:
    model:
      upstream: https://models.example.com/api
      inject: {header: Authorization, prefix: "Bearer ", secretRef: env:AIRLOCK_MODEL_KEY}
model:
  service: model
  api: openai
  name: small
  allowed: [large, small]
  maxTurns: 6
`

func TestModel_LoadsWithDefaultsForUnsetLimits(t *testing.T) {
	p := mustLoad(t, modelProfile)
	m := p.Model
	if m == nil {
		t.Fatal("Model is nil")
	}
	want := Model{
		Service: "model", API: APIOpenAI, Name: "small", Allowed: []string{"large"}, MaxTurns: 6,
		MaxToolCalls: DefaultMaxToolCalls, MaxInputTokens: DefaultMaxInputTokens,
		MaxOutputTokens: DefaultMaxOutputTokens, MaxReplyBytes: DefaultMaxReplyBytes,
	}
	if got := *m; got.Service != want.Service || got.API != want.API || got.Name != want.Name ||
		strings.Join(got.Allowed, ",") != "large" || got.MaxTurns != 6 || got.MaxToolCalls != want.MaxToolCalls ||
		got.MaxInputTokens != want.MaxInputTokens || got.MaxOutputTokens != want.MaxOutputTokens || got.MaxReplyBytes != want.MaxReplyBytes {
		t.Errorf("Model = %+v, want %+v", got, want)
	}
	if got := p.Network.Services["model"].Inject.Prefix; got != "Bearer " {
		t.Errorf("inject.prefix = %q, want %q", got, "Bearer ")
	}
	if none := mustLoad(t, "network: {mode: none}\n"); none.Model != nil {
		t.Errorf("a profile without a model section has Model %+v", none.Model)
	}
}

func TestModel_RefusesWhatCannotWork(t *testing.T) {
	anthropic := `network:
  mode: allowlist
  services:
    claude:
      upstream: https://models.example.com
      inject: {header: x-api-key, secretRef: env:K}
model: {service: claude, api: anthropic, name: m}
`
	tests := []struct {
		name, body, want string
	}{
		{"no service", "model: {api: openai, name: m}\n", "model.service: is required"},
		{"unknown alias", strings.Replace(modelProfile, "service: model", "service: other", 1), `model.service: "other" is not an alias`},
		{"unknown api", strings.Replace(modelProfile, "api: openai", "api: gemini", 1), `model.api: unknown value "gemini"`},
		{"no name", strings.Replace(modelProfile, "name: small", "name: ''", 1), "model.name: want a model name"},
		{"name with a space", strings.Replace(modelProfile, "name: small", "name: 'a b'", 1), "model.name"},
		{"zero turns", strings.Replace(modelProfile, "maxTurns: 6", "maxTurns: 0", 1), "model.maxTurns: 0 is not in 1-64"},
		{"huge turns", strings.Replace(modelProfile, "maxTurns: 6", "maxTurns: 99999999999", 1), "model.maxTurns"},
		{"negative tool calls", modelProfile + "  maxToolCalls: -1\n", "model.maxToolCalls"},
		{"zero input tokens", modelProfile + "  maxInputTokens: 0\n", "model.maxInputTokens"},
		{"tiny reply cap", modelProfile + "  maxReplyBytes: 10\n", "model.maxReplyBytes"},
		{"anthropic without a version", anthropic, "anthropic-version"},
		{"unknown model field", modelProfile + "  key: sk-literal\n", "model.key: unknown field"},
		{"prefix with a newline", strings.Replace(modelProfile, `prefix: "Bearer "`, `prefix: "Bearer\nX: y"`, 1), "inject.prefix"},
		{"fixed header replaces the secret", strings.Replace(modelProfile, "      inject:", "      headers: {authorization: x}\n      inject:", 1), "is the inject header"},
		{"fixed host header", strings.Replace(modelProfile, "      inject:", "      headers: {Host: evil.example}\n      inject:", 1), "set by the proxy itself"},
		{"header value with CRLF", strings.Replace(modelProfile, "      inject:", "      headers: {x-a: \"1\\r\\nx-b: 2\"}\n      inject:", 1), "want printable text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(map[string]string{"p.yaml": tt.body})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, want ErrInvalid containing %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "sk-literal") {
				t.Errorf("error quotes a value: %v", err)
			}
		})
	}
	fixed := strings.Replace(anthropic, "      inject:", "      headers: {anthropic-version: \"2023-06-01\"}\n      inject:", 1)
	p := mustLoad(t, fixed)
	if got := p.Network.Services["claude"].Headers["Anthropic-Version"]; got != "2023-06-01" {
		t.Errorf("headers = %v, want Anthropic-Version canonical", p.Network.Services["claude"].Headers)
	}
}

func TestModel_TightenPicksAndLowersNeverRaises(t *testing.T) {
	p := mustLoad(t, modelProfile)
	before := p.Hash()
	got, err := p.Tighten(Overrides{Model: "large", MaxTurns: 2, MaxOutputTokens: 100})
	if err != nil {
		t.Fatal(err)
	}
	if m := got.Model; m.Name != "large" || m.Allowed != nil || m.MaxTurns != 2 || m.MaxOutputTokens != 100 || m.MaxInputTokens != DefaultMaxInputTokens {
		t.Errorf("tightened model = %+v", m)
	}
	if p.Hash() != before || p.Model.Name != "small" {
		t.Error("Tighten changed its receiver")
	}
	for _, tt := range []struct {
		o       Overrides
		wantErr error
		want    string
	}{
		{Overrides{Model: "huge"}, ErrLoosen, `model.name: "huge" is not one the profile allows (small, large)`},
		{Overrides{MaxTurns: 7}, ErrLoosen, "model.maxTurns: 7 is more than the profile's 6"},
		{Overrides{MaxToolCalls: DefaultMaxToolCalls + 1}, ErrLoosen, "model.maxToolCalls"},
		{Overrides{MaxInputTokens: DefaultMaxInputTokens + 1}, ErrLoosen, "model.maxInputTokens"},
		{Overrides{MaxOutputTokens: -1}, ErrInvalid, "model.maxOutputTokens: override -1 is negative"},
	} {
		if got, err := p.Tighten(tt.o); got != nil || !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Tighten(%+v) = %v, %v; want %v containing %q", tt.o, got, err, tt.wantErr, tt.want)
		}
	}
	none := mustLoad(t, "network: {mode: none}\n")
	if _, err := none.Tighten(Overrides{MaxTurns: 1}); !errors.Is(err, ErrLoosen) || !strings.Contains(err.Error(), "the profile has no model") {
		t.Errorf("Tighten of a model limit without a model = %v", err)
	}
}

func TestModel_CloneIsDeep(t *testing.T) {
	p := mustLoad(t, strings.Replace(modelProfile, "      inject:", "      headers: {x-a: \"1\"}\n      inject:", 1))
	c := p.Clone()
	c.Model.Allowed[0] = "changed"
	c.Model.MaxTurns = 1
	c.Network.Services["model"].Headers["X-A"] = "changed"
	if p.Model.Allowed[0] != "large" || p.Model.MaxTurns != 6 || p.Network.Services["model"].Headers["X-A"] != "1" {
		t.Errorf("changing a clone changed the profile: %+v %+v", p.Model, p.Network.Services["model"].Headers)
	}
}

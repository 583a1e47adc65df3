package egress

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func testGate(api string) *modelGate {
	return &modelGate{pol: ModelPolicy{Alias: "model", API: api, Name: "small", MaxTurns: 2, MaxInputTokens: 100, MaxOutputTokens: 50, MaxReplyBytes: 64}}
}

func TestModelGate_RewriteFixesTheModelAndClampsTokens(t *testing.T) {
	for _, tc := range []struct {
		api, in string
		want    map[string]string
	}{
		{"openai", `{"model":"huge","max_tokens":100000,"messages":[]}`, map[string]string{"model": `"small"`, "max_tokens": "50"}},
		{"openai", `{"model":"x","messages":[]}`, map[string]string{"max_tokens": "50"}},
		{"openai", `{"model":"x","max_completion_tokens":10}`, map[string]string{"max_completion_tokens": "10"}},
		{"openai", `{"model":"x","max_completion_tokens":-1,"max_tokens":"lots"}`, map[string]string{"max_completion_tokens": "50", "max_tokens": "50"}},
		{"openai", `{"model":"x","stream":true,"stream_options":{"include_usage":false}}`, map[string]string{"stream_options": `{"include_usage":true}`}},
		{"anthropic", `{"model":"x","max_tokens":99999999999999999999}`, map[string]string{"model": `"small"`, "max_tokens": "50"}},
		{"anthropic", `{"model":"x"}`, map[string]string{"max_tokens": "50"}},
	} {
		out, status, err := testGate(tc.api).rewrite(strings.NewReader(tc.in))
		if err != nil || status != 0 {
			t.Fatalf("rewrite(%s) = %v, %d", tc.in, err, status)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		for k, v := range tc.want {
			if string(got[k]) != v {
				t.Errorf("%s: rewrite(%s)[%s] = %s, want %s", tc.api, tc.in, k, got[k], v)
			}
		}
	}
	for _, bad := range []string{`[]`, `null`, `{"a":`, strings.Repeat(" ", MaxModelRequestBytes+1)} {
		if _, status, err := testGate("openai").rewrite(strings.NewReader(bad)); err == nil || status < 400 {
			t.Errorf("rewrite of a bad body = %d, %v", status, err)
		}
	}
}

func TestModelGate_AdmitRefusesOtherPathsAndPastTheLimits(t *testing.T) {
	g := testGate("openai")
	if _, status, _ := g.admit(http.MethodGet, "/v1/chat/completions"); status != http.StatusForbidden {
		t.Errorf("GET = %d", status)
	}
	if _, status, _ := g.admit(http.MethodPost, "/v1/models?x=1"); status != http.StatusForbidden {
		t.Errorf("another path = %d", status)
	}
	for i := 0; i < 2; i++ {
		if c, status, reason := g.admit(http.MethodPost, "/v1/chat/completions"); status != 0 {
			t.Fatalf("call %d refused: %s", i, reason)
		} else {
			c.Allowed, c.Status, c.InputTokens = true, 200, 30
			g.finish(c)
		}
	}
	c, status, _ := g.admit(http.MethodPost, "/v1/chat/completions")
	if status != http.StatusTooManyRequests || c.Limit != "maxTurns" {
		t.Errorf("third call = %d %q, want 429 maxTurns", status, c.Limit)
	}
	g = testGate("anthropic")
	c, _, _ = g.admit(http.MethodPost, "/v1/messages")
	c.Allowed, c.Status, c.InputTokens = true, 200, 100
	g.finish(c)
	if c, status, _ := g.admit(http.MethodPost, "/v1/messages"); status != http.StatusTooManyRequests || c.Limit != "maxInputTokens" {
		t.Errorf("past the input tokens = %d %q", status, c.Limit)
	}
	c, _, _ = g.admit(http.MethodPost, "/v1/messages")
	c.Allowed, c.Status, c.Reason = true, 500, ""
	g.finish(c)
	if u := g.usage; u.Failed != 1 || u.LastStatus != 500 || u.Limit != "" && u.Limit != "maxInputTokens" {
		t.Errorf("usage = %+v", u)
	}
}

func TestReplyMeter_CountsUsageAndCutsAtTheCap(t *testing.T) {
	for name, body := range map[string]string{
		"openai json":     `{"choices":[{"message":{"content":"say \"prompt_tokens\": 999"}}],"usage":{"prompt_tokens":12,"completion_tokens":3}}`,
		"openai stream":   "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n",
		"anthropic json":  `{"type":"message","content":[{"type":"text","text":"x"}],"usage":{"input_tokens":12,"output_tokens":3}}`,
		"anthropic event": "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":3}}\n\n",
	} {
		m := &replyMeter{r: strings.NewReader(body), max: 1 << 20}
		if _, err := io.Copy(io.Discard, m); err != nil {
			t.Fatal(err)
		}
		if in, out := m.counts(); in != 12 || out != 3 {
			t.Errorf("%s: tokens %d in, %d out; want 12 and 3", name, in, out)
		}
	}
	m := &replyMeter{r: strings.NewReader(strings.Repeat("x", 100)), max: 64}
	n, err := io.Copy(io.Discard, m)
	if !errors.Is(err, errReplyCap) || n != 64 || !m.cut {
		t.Errorf("a 100-byte reply at a 64-byte cap: %d bytes, %v", n, err)
	}
	m = &replyMeter{r: strings.NewReader(strings.Repeat("x", 64)), max: 64}
	if n, err := io.Copy(io.Discard, m); err != nil || n != 64 || m.cut {
		t.Errorf("a reply of exactly the cap: %d bytes, %v", n, err)
	}
}

// FuzzReplyMeter: any reply, in any pieces, is relayed byte for byte up to
// the cap, and the meter holds a bounded amount of it.
func FuzzReplyMeter(f *testing.F) {
	f.Add([]byte("data: {\"usage\":{\"prompt_tokens\":5}}\n"), uint16(7))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16) {
		m := &replyMeter{r: &chunked{data: data, n: int(chunk%64) + 1}, max: 1 << 20}
		got, _ := io.ReadAll(m)
		if string(got) != string(data) {
			t.Fatal("the meter changed the reply")
		}
		if len(m.tail) > 128<<10 || len(m.line) > maxUsageLine {
			t.Fatal("the meter holds too much")
		}
		m.counts()
	})
}

type chunked struct {
	data []byte
	n    int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(c.n, len(p), len(c.data))
	copy(p, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}

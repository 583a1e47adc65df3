package egress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

func testGate(t testing.TB, api string) *modelGate {
	t.Helper()
	g, err := newModelGate(&ModelPolicy{Alias: "Model", API: api, Name: "small", MaxTurns: 2, MaxInputTokens: 100, MaxOutputTokens: 50, MaxReplyBytes: 64},
		map[string]service{"model": {}})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestModelGate_RewriteFixesTheModelAndClampsTokens(t *testing.T) {
	for _, tc := range []struct {
		api, in string
		want    map[string]string
	}{
		{"openai", `{"model":"huge","max_tokens":100000,"messages":[]}`, map[string]string{"model": `"small"`, "max_tokens": "50", "messages": "[]"}},
		{"openai", `{"model":"x","messages":[]}`, map[string]string{"max_tokens": "50"}},
		{"openai", `{"messages":[],"max_tokens":7}`, map[string]string{"model": `"small"`, "max_tokens": "7"}},
		{"openai", `{"model":"x","max_completion_tokens":10}`, map[string]string{"max_completion_tokens": "10", "max_tokens": ""}},
		{"openai", `{"model":"x","max_completion_tokens":500}`, map[string]string{"max_completion_tokens": "50", "max_tokens": ""}},
		{"openai", `{"model":"x","max_completion_tokens":-1,"max_tokens":"lots"}`, map[string]string{"max_completion_tokens": "50", "max_tokens": "50"}},
		{"openai", `{"model":"x","max_tokens":1e9}`, map[string]string{"max_tokens": "50"}},
		{"openai", `{"model":"x","n":8}`, map[string]string{"n": "1"}},
		{"openai", `{"model":"x","stream":true}`, map[string]string{"stream_options": `{"include_usage":true}`}},
		{"openai", `{"model":"x","stream":true,"stream_options":{"include_usage":false}}`, map[string]string{"stream_options": `{"include_usage":true}`}},
		{"openai", `{"model":"x","stream":true,"stream_options":"no"}`, map[string]string{"stream_options": `{"include_usage":true}`}},
		{"openai", `{"model":"x","stream":false}`, map[string]string{"stream_options": ""}},
		{"openai", `{"model":"x","model":"y","messages":[{"role":"user","content":"<b>&</b>"}]}`, map[string]string{"model": `"small"`, "messages": `[{"role":"user","content":"<b>&</b>"}]`}},
		{"anthropic", `{"model":"x","max_tokens":99999999999999999999}`, map[string]string{"model": `"small"`, "max_tokens": "50"}},
		{"anthropic", `{"model":"x"}`, map[string]string{"max_tokens": "50"}},
		{"anthropic", `{"model":"x","max_tokens":5,"stream":true,"n":3}`, map[string]string{"max_tokens": "5", "stream_options": "", "n": "3"}},
		{"anthropic", `{"model":"x","max_completion_tokens":100000}`, map[string]string{"max_tokens": "50", "max_completion_tokens": "100000"}},
	} {
		out, status, err := testGate(t, tc.api).rewrite(strings.NewReader(tc.in))
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
	for _, bad := range []string{``, `[]`, `null`, `"x"`, `{"a":`, `{} {}`, `{"a":1}x`} {
		if _, status, err := testGate(t, "openai").rewrite(strings.NewReader(bad)); err == nil || status != http.StatusBadRequest {
			t.Errorf("rewrite(%q) = %d, %v; want 400", bad, status, err)
		}
	}
	big := `{"a":"` + strings.Repeat("x", MaxModelRequestBytes) + `"}`
	if _, status, err := testGate(t, "openai").rewrite(strings.NewReader(big)); err == nil || status != http.StatusRequestEntityTooLarge {
		t.Errorf("rewrite of an oversized body = %d, %v; want 413", status, err)
	}
}

func TestModelGate_AdmitRefusesOtherPathsAndPastTheLimits(t *testing.T) {
	ctx := context.Background()
	g := testGate(t, "openai")
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v1/chat/completions"},
		{http.MethodPost, "/v1/chat/completions?x=1"},
		{http.MethodPost, "/v1/chat/completions/"},
		{http.MethodPost, "/v1/messages"},
		{http.MethodPost, "/v1/models"},
		{http.MethodPost, "/v1/chat/completion%73"},
		{http.MethodPost, ""},
	} {
		if _, status, _ := g.admit(ctx, tc.method, tc.path); status != http.StatusForbidden {
			t.Errorf("%s %q = %d, want 403", tc.method, tc.path, status)
		}
	}
	for i := range 2 {
		mc, status, reason := g.admit(ctx, http.MethodPost, "/v1/chat/completions")
		if status != 0 {
			t.Fatalf("call %d refused: %s", i, reason)
		}
		mc.Allowed, mc.Status, mc.InputTokens = true, 200, 30
		mc.end()
	}
	mc, status, _ := g.admit(ctx, http.MethodPost, "/v1/chat/completions")
	if status != http.StatusTooManyRequests || mc.Limit != "maxTurns" {
		t.Errorf("third call = %d %q, want 429 maxTurns", status, mc.Limit)
	}
	if u := g.usage; u.Calls != 2 || u.Refused != 8 || u.Limit != "maxTurns" || u.InputTokens != 60 {
		t.Errorf("usage = %+v", u)
	}

	g = testGate(t, "anthropic")
	g.pol.MaxTurns = 10
	mc, _, _ = g.admit(ctx, http.MethodPost, "/v1/messages")
	mc.fail(http.StatusInternalServerError, "upstream answered HTTP 500")
	if u := g.usage; u.Failed != 1 || u.LastStatus != 500 || u.Calls != 1 {
		t.Errorf("usage after a 500 = %+v", u)
	}
	mc, _, _ = g.admit(ctx, http.MethodPost, "/v1/messages")
	mc.Allowed, mc.Status, mc.InputTokens = true, 200, 100
	mc.end()
	mc.end() // a second end counts nothing
	if mc, status, _ := g.admit(ctx, http.MethodPost, "/v1/messages"); status != http.StatusTooManyRequests || mc.Limit != "maxInputTokens" {
		t.Errorf("past the input tokens = %d %q", status, mc.Limit)
	}
	if u := g.usage; u.Calls != 2 || u.InputTokens != 100 || u.Limit != "maxInputTokens" || u.Refused != 1 {
		t.Errorf("usage = %+v", u)
	}
}

// A call that waits for the slot sees the tokens of the call before it,
// so concurrent calls cannot all slip under the input-token cap.
func TestModelGate_ConcurrentCallWaitsForTheOneBefore(t *testing.T) {
	g := testGate(t, "openai")
	first, status, _ := g.admit(context.Background(), http.MethodPost, "/v1/chat/completions")
	if status != 0 {
		t.Fatal("first call refused")
	}
	type admitted struct {
		mc     *modelCall
		status int
	}
	second := make(chan admitted)
	go func() {
		mc, status, _ := g.admit(context.Background(), http.MethodPost, "/v1/chat/completions")
		second <- admitted{mc, status}
	}()
	// The second call has been numbered, so it is past the start of
	// admit, and must wait there until the first ends.
	for turns := 0; turns < 2; runtime.Gosched() {
		g.mu.Lock()
		turns = g.turns
		g.mu.Unlock()
	}
	select {
	case got := <-second:
		t.Fatalf("second call decided (%d) while the first holds the slot", got.status)
	default:
	}
	first.Allowed, first.Status, first.InputTokens = true, 200, 100
	first.end()
	if got := <-second; got.status != http.StatusTooManyRequests || got.mc.Limit != "maxInputTokens" {
		t.Errorf("second call = %d %q, want 429 maxInputTokens", got.status, got.mc.Limit)
	}
	// A waiting call gives up when its connection ends.
	held, _, _ := testGate(t, "openai").admit(context.Background(), http.MethodPost, "/v1/chat/completions")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, status, _ := held.g.admit(ctx, http.MethodPost, "/v1/chat/completions"); status != http.StatusServiceUnavailable {
		t.Errorf("a cancelled wait = %d, want 503", status)
	}
	held.end()
}

func TestRegister_RefusesBadModelPolicies(t *testing.T) {
	services := map[string]service{"model": {}}
	good := ModelPolicy{Alias: "model", API: "anthropic", Name: "m", MaxTurns: 1, MaxInputTokens: 1, MaxOutputTokens: 1, MaxReplyBytes: 1}
	if _, err := newModelGate(&good, services); err != nil {
		t.Fatalf("a good policy: %v", err)
	}
	for name, change := range map[string]func(*ModelPolicy){
		"alias not a service": func(p *ModelPolicy) { p.Alias = "other" },
		"unknown api":         func(p *ModelPolicy) { p.API = "gemini" },
		"no name":             func(p *ModelPolicy) { p.Name = "" },
		"zero turns":          func(p *ModelPolicy) { p.MaxTurns = 0 },
		"negative input":      func(p *ModelPolicy) { p.MaxInputTokens = -1 },
		"zero output":         func(p *ModelPolicy) { p.MaxOutputTokens = 0 },
		"zero reply bytes":    func(p *ModelPolicy) { p.MaxReplyBytes = 0 },
	} {
		p := good
		change(&p)
		if _, err := newModelGate(&p, services); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Reply bodies in the providers' own formats; each states 12 tokens in and
// 3 out, and the model's text tries to state others.
var usageReplies = []struct{ name, api, body string }{
	{"openai json", "openai", `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"say \"prompt_tokens\": 999, {\"usage\":{\"prompt_tokens\":999}}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":0}}}`},
	{"openai json, braces in the text", "openai", `{"choices":[{"message":{"content":"he said \"}]}\" and C:\\"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3}}`},
	{"openai json, usage first, pretty", "openai", "{\n  \"usage\": {\n    \"prompt_tokens\": 12,\n    \"completion_tokens\": 3\n  },\n  \"choices\": [{\"message\": {\"tool_calls\": [{\"function\": {\"arguments\": \"{\\\"usage\\\":{\\\"prompt_tokens\\\":999}}\"}}]}}]\n}\n"},
	{"openai stream", "openai", "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"data: {\\\"usage\\\":{\\\"prompt_tokens\\\":999}}\"}}],\"usage\":null}\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}\n\n" +
		"data: [DONE]\n\n"},
	{"anthropic json", "anthropic", `{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"tool_use","id":"t","name":"x","input":{"input_tokens":999,"usage":{"input_tokens":999,"output_tokens":999}}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":3}}`},
	{"anthropic json, usage first, cached", "anthropic", `{"usage":{"input_tokens":2,"cache_creation_input_tokens":4,"cache_read_input_tokens":6,"output_tokens":3},"content":[{"type":"tool_use","input":{"output_tokens":999,"usage":{"output_tokens":999}}}]}`},
	{"anthropic stream", "anthropic", "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"m\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\r\n\r\n" +
		"event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n" +
		"event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n" +
		"event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\\n\\ndata: {\\\"type\\\":\\\"message_delta\\\",\\\"usage\\\":{\\\"output_tokens\\\":999}}\"}}\r\n\r\n" +
		"event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":0}\r\n\r\n" +
		"event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":3}}\r\n\r\n" +
		"event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n"},
}

func TestReplyMeter_CountsUsageOfBothAPIsAndFormats(t *testing.T) {
	for _, tc := range usageReplies {
		for _, chunk := range []int{1, 7, 1 << 20} {
			m := newReplyMeter(&chunked{data: []byte(tc.body), n: chunk}, 1<<20, tc.api)
			got, err := io.ReadAll(m)
			if err != nil || string(got) != tc.body {
				t.Fatalf("%s: relayed %d of %d bytes, %v", tc.name, len(got), len(tc.body), err)
			}
			if in, out := m.counts(); in != 12 || out != 3 {
				t.Errorf("%s in %d-byte pieces: tokens %d in, %d out; want 12 and 3", tc.name, chunk, in, out)
			}
		}
	}
	for name, body := range map[string]string{
		"not json":       "<html>busy</html>",
		"no usage":       `{"choices":[]}`,
		"usage not obj":  `{"usage":"lots"}`,
		"array":          `[{"usage":{"prompt_tokens":5}}]`,
		"long sse event": "data: {\"usage\":{\"prompt_tokens\":5,\"pad\":\"" + strings.Repeat("x", maxUsageLine) + "\"}}\n\n",
	} {
		m := newReplyMeter(strings.NewReader(body), 4<<20, "openai")
		if _, err := io.Copy(io.Discard, m); err != nil {
			t.Fatal(err)
		}
		if in, out := m.counts(); in != 0 || out != 0 {
			t.Errorf("%s: counted %d and %d tokens", name, in, out)
		}
	}
}

func TestReplyMeter_CutsAtTheCap(t *testing.T) {
	m := newReplyMeter(strings.NewReader(strings.Repeat("x", 100)), 64, "openai")
	n, err := io.Copy(io.Discard, m)
	if !errors.Is(err, errReplyCap) || n != 64 || !m.cut {
		t.Errorf("a 100-byte reply at a 64-byte cap: %d bytes, %v", n, err)
	}
	m = newReplyMeter(strings.NewReader(strings.Repeat("x", 64)), 64, "openai")
	if n, err := io.Copy(io.Discard, m); err != nil || n != 64 || m.cut {
		t.Errorf("a reply of exactly the cap: %d bytes, %v", n, err)
	}
	// A reader that returns nothing for a while must not get past the cap.
	m = newReplyMeter(&stuttering{r: strings.NewReader(strings.Repeat("x", 100))}, 64, "openai")
	if n, err := io.Copy(io.Discard, m); !errors.Is(err, errReplyCap) || n != 64 {
		t.Errorf("a stuttering reader: %d bytes, %v", n, err)
	}
}

// FuzzReplyMeter: any reply, in any pieces, is relayed byte for byte up to
// the cap, and the meter holds a bounded amount of it.
func FuzzReplyMeter(f *testing.F) {
	for _, tc := range usageReplies {
		f.Add([]byte(tc.body), uint16(7), tc.api == "anthropic")
	}
	f.Add([]byte("data: {\"usage\":{\"prompt_tokens\":5}}\n"), uint16(7), false)
	f.Add([]byte(`{"usage":{"input_tokens":-5,"output_tokens":99999999999999999999}}`), uint16(3), true)
	f.Add([]byte("data:\ndata:\r\n\r\ndata: [DONE]\n"), uint16(1), false)
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16, anthropic bool) {
		api := "openai"
		if anthropic {
			api = "anthropic"
		}
		const limit = 1 << 16
		m := newReplyMeter(&chunked{data: data, n: int(chunk%64) + 1}, limit, api)
		got, err := io.ReadAll(m)
		want := data[:min(len(data), limit)]
		if !bytes.Equal(got, want) {
			t.Fatal("the meter changed the reply")
		}
		if (len(data) > limit) != errors.Is(err, errReplyCap) {
			t.Fatalf("%d bytes at a %d cap: %v", len(data), limit, err)
		}
		if len(m.events.line) > maxUsageLine || len(m.events.data) > maxUsageLine || len(m.object.value) > maxUsageObject || len(m.object.key) > len("usage") {
			t.Fatal("the meter holds too much")
		}
		if in, out := m.counts(); in < 0 || out < 0 {
			t.Fatalf("negative counts %d, %d", in, out)
		}
	})
}

// FuzzEventUsage: the event-stream scanner never panics, holds a bounded
// amount, and never counts less for a stream than for its usage events
// alone, whatever the model's text around them.
func FuzzEventUsage(f *testing.F) {
	for _, tc := range usageReplies {
		f.Add([]byte(tc.body), tc.api == "anthropic")
	}
	f.Add([]byte("data: x\r\n\r\n: comment\n\nevent: message_start\n"), true)
	f.Fuzz(func(t *testing.T, noise []byte, anthropic bool) {
		api, usage := "openai", "data: {\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}\n\n"
		if anthropic {
			api, usage = "anthropic", "data: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":12,\"output_tokens\":3}}\n\n"
		}
		// The model's text reaches the stream only inside JSON strings;
		// noise stands for any event the upstream sends before.
		e := eventUsage{api: api}
		e.write(noise)
		e.write([]byte("\n\n" + usage))
		e.flush()
		if e.in < 12 || e.out < 3 {
			t.Fatalf("counted %d in, %d out after noise %q", e.in, e.out, noise)
		}
		if len(e.line) > maxUsageLine || len(e.data) > maxUsageLine {
			t.Fatal("the scanner holds too much")
		}
	})
}

// FuzzRewrite: any body is refused or rewritten to a JSON object that names
// the gate's model and asks for no more than its tokens.
func FuzzRewrite(f *testing.F) {
	f.Add([]byte(`{"model":"x","max_tokens":100000,"stream":true,"stream_options":{"include_usage":false},"n":4}`), false)
	f.Add([]byte(`{"model":"x","max_completion_tokens":null,"messages":[{"role":"user","content":"\u003c"}]}`), false)
	f.Add([]byte(`{"model":"x","model":"y","max_tokens":-1}`), true)
	f.Add([]byte(`[1,2]`), true)
	f.Fuzz(func(t *testing.T, body []byte, anthropic bool) {
		api := "openai"
		if anthropic {
			api = "anthropic"
		}
		g := testGate(t, api)
		out, status, err := g.rewrite(bytes.NewReader(body))
		if err != nil {
			if status < 400 {
				t.Fatalf("refused with status %d", status)
			}
			return
		}
		if len(out) > 2*len(body)+256 {
			t.Fatalf("rewrote %d bytes to %d", len(body), len(out))
		}
		// Upstreams read keys exactly, so the check does too (Go's struct
		// decoding would not).
		var got map[string]json.RawMessage
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("rewrote to something that is not a JSON object: %v", err)
		}
		limit := g.pol.MaxOutputTokens
		within := func(key string, lo, hi int64) bool {
			var n int64
			return json.Unmarshal(got[key], &n) == nil && n >= lo && n <= hi
		}
		_, hasMaxTokens := got["max_tokens"]
		_, hasCompletion := got["max_completion_tokens"]
		_, hasN := got["n"]
		var opts map[string]json.RawMessage
		json.Unmarshal(got["stream_options"], &opts)
		switch {
		case string(got["model"]) != `"small"`:
			t.Fatalf("model %s", got["model"])
		case !hasMaxTokens && !hasCompletion, api == "anthropic" && !hasMaxTokens:
			t.Fatal("no max tokens")
		case hasMaxTokens && !within("max_tokens", 1, limit):
			t.Fatalf("max_tokens %s", got["max_tokens"])
		case api == "openai" && hasCompletion && !within("max_completion_tokens", 1, limit):
			t.Fatalf("max_completion_tokens %s", got["max_completion_tokens"])
		case api == "openai" && hasN && !within("n", 1, 1):
			t.Fatalf("n %s", got["n"])
		case api == "openai" && string(got["stream"]) == "true" && string(opts["include_usage"]) != "true":
			t.Fatal("a stream without include_usage")
		}
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

// stuttering returns (0, nil) on every other read, as io.Reader allows.
type stuttering struct {
	r    io.Reader
	skip bool
}

func (s *stuttering) Read(p []byte) (int, error) {
	if s.skip = !s.skip; s.skip {
		return 0, nil
	}
	return s.r.Read(p)
}

package egress

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/sandbox/job"
)

const modelKey = "sk-model-key-0123456789"

// seen is a request as the model upstream received it.
type seen struct {
	method, uri string
	header      http.Header
	body        []byte
}

// modelUpstream is a stand-in model API over TLS that only the extra CA
// file makes trusted. It records every request and answers with reply.
type modelUpstream struct {
	*httptest.Server
	seen  chan seen
	reply http.HandlerFunc
	// caFile is a PEM file of the server's certificate.
	caFile string
}

func newModelUpstream(t *testing.T, reply http.HandlerFunc) *modelUpstream {
	m := &modelUpstream{seen: make(chan seen, 16), reply: reply}
	m.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case m.seen <- seen{r.Method, r.URL.RequestURI(), r.Header.Clone(), body}:
		default:
			t.Error("the upstream got more requests than the test reads")
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		m.reply(w, r)
	}))
	t.Cleanup(m.Close)
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.Certificate().Raw})
	m.caFile = writeFile(t, t.TempDir(), "ca.pem", "# the stand-in's CA\n"+string(pemData))
	return m
}

// next returns the next request the upstream received.
func (m *modelUpstream) next(t *testing.T) seen {
	t.Helper()
	select {
	case r := <-m.seen:
		return r
	default:
		t.Fatal("the upstream received no request")
		return seen{}
	}
}

// modelJob is a proxy with one registered job whose "model" alias leads
// to up through the gate, with the calls and attempts it reports.
type modelJob struct {
	h        *harness
	s        *Session
	up       *modelUpstream
	calls    chan job.ModelCall
	attempts chan job.EgressAttempt
}

func newModelJob(t *testing.T, api string, up *modelUpstream, cfg Config, tweak func(*ModelPolicy)) *modelJob {
	t.Helper()
	pool, err := LoadCAFile(up.caFile)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServiceTLS == nil {
		cfg.ServiceTLS = &tls.Config{RootCAs: pool}
	}
	mj := &modelJob{h: newHarness(t, cfg), up: up, calls: make(chan job.ModelCall, 64), attempts: make(chan job.EgressAttempt, 64)}
	svc := job.Service{Upstream: up.URL + "/api", Header: "Authorization", Prefix: "Bearer ", Secret: []byte(modelKey)}
	if api == "anthropic" {
		svc = job.Service{Upstream: up.URL + "/api", Header: "x-api-key", Secret: []byte(modelKey), Headers: map[string]string{"anthropic-version": "2023-06-01"}}
	}
	pol := ModelPolicy{Alias: "model", API: api, Name: "small-model", MaxTurns: 10, MaxInputTokens: 1000, MaxOutputTokens: 64, MaxReplyBytes: 1 << 20,
		OnCall: func(c job.ModelCall) { mj.calls <- c }}
	if tweak != nil {
		tweak(&pol)
	}
	mj.s = mj.h.registerJob(JobPolicy{
		JobID: "model-job", Services: map[string]job.Service{"model": svc}, Model: &pol,
		OnAttempt: func(a job.EgressAttempt) { mj.attempts <- a },
	})
	return mj
}

// post sends one request to the model alias with Go's own client, which
// asks for gzip as any job's client might.
func (mj *modelJob) post(t *testing.T, method, path, body string, header http.Header) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(method, "http://model.airlock.internal"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := mj.h.client(jobSrc).Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// call waits for the gate's report of the next call and the attempt it
// made in the egress log.
func (mj *modelJob) call(t *testing.T) (job.ModelCall, job.EgressAttempt) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	var c job.ModelCall
	select {
	case c = <-mj.calls:
	case <-timeout:
		t.Fatal("no model call was reported")
	}
	select {
	case a := <-mj.attempts:
		return c, a
	case <-timeout:
		t.Fatal("no egress attempt was recorded")
	}
	return c, job.EgressAttempt{}
}

// Replies in the providers' real formats.
func openaiJSON(in, out int) string {
	return fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"small-model","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`, in, out, in+out)
}

func openaiStream(in, out int) string {
	return `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"small-model","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}` + "\n\n" +
		`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"small-model","choices":[{"index":0,"delta":{"content":"hello"},"finish_reason":null}],"usage":null}` + "\n\n" +
		`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"small-model","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}` + "\n\n" +
		fmt.Sprintf(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"small-model","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`, in, out, in+out) + "\n\n" +
		"data: [DONE]\n\n"
}

func anthropicJSON(in, out int) string {
	return fmt.Sprintf(`{"id":"msg_1","type":"message","role":"assistant","model":"small-model","content":[{"type":"text","text":"hello"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":%d,"output_tokens":%d}}`, in, out)
}

func anthropicStream(in, out int) string {
	return "event: message_start\n" + fmt.Sprintf(`data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"small-model","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":%d,"output_tokens":1}}}`, in) + "\n\n" +
		"event: content_block_start\n" + `data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n" +
		"event: ping\n" + `data: {"type": "ping"}` + "\n\n" +
		"event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hello"}}` + "\n\n" +
		"event: content_block_stop\n" + `data: {"type":"content_block_stop","index":0}` + "\n\n" +
		"event: message_delta\n" + fmt.Sprintf(`data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":%d}}`, out) + "\n\n" +
		"event: message_stop\n" + `data: {"type":"message_stop"}` + "\n\n"
}

// answer replies with the usage the request's API and stream flag call
// for, streamed in flushed pieces when asked to stream.
func answer(api string, in, out int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Stream bool `json:"stream"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		body := map[bool]map[string]string{
			false: {"openai": openaiJSON(in, out), "anthropic": anthropicJSON(in, out)},
			true:  {"openai": openaiStream(in, out), "anthropic": anthropicStream(in, out)},
		}[req.Stream][api]
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			io.WriteString(w, body)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		for event := range strings.SplitAfterSeq(body, "\n\n") {
			io.WriteString(w, event)
			w.(http.Flusher).Flush()
		}
	}
}

var modelPath = map[string]string{"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}

func TestModel_RewritesTheRequestAndCountsUsage(t *testing.T) {
	for _, api := range []string{"openai", "anthropic"} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%v", api, stream), func(t *testing.T) {
				up := newModelUpstream(t, answer(api, 120, 30))
				mj := newModelJob(t, api, up, Config{}, nil)
				body := fmt.Sprintf(`{"model":"the-biggest","max_tokens":100000,"stream":%v,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"a <b> & c"}],"temperature":0.5}`, stream)
				resp, got, err := mj.post(t, http.MethodPost, modelPath[api], body, http.Header{
					"Authorization":     {"Bearer sk-the-agent-made-this-up"},
					"X-Api-Key":         {"sk-the-agent-made-this-up"},
					"Anthropic-Version": {"1999-01-01"},
					"Anthropic-Beta":    {"output-128k"},
					"Openai-Project":    {"someone-else"},
				})
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("call: %v %v %s", resp, err, got)
				}
				if bytes.Contains(got, []byte(modelKey)) || strings.Contains(fmt.Sprint(resp.Header), modelKey) {
					t.Error("the key reached the job")
				}
				r := up.next(t)
				if r.method != http.MethodPost || r.uri != "/api"+modelPath[api] {
					t.Errorf("upstream saw %s %s, want POST under the base path", r.method, r.uri)
				}
				// The credential and the fixed headers are the service's,
				// whatever the job sent; the job's other headers stay out.
				switch api {
				case "openai":
					if v := r.header.Values("Authorization"); len(v) != 1 || v[0] != "Bearer "+modelKey {
						t.Errorf("Authorization = %q", v)
					}
					if r.header.Get("X-Api-Key") != "" {
						t.Error("the job's X-Api-Key went through")
					}
				case "anthropic":
					if v := r.header.Values("X-Api-Key"); len(v) != 1 || v[0] != modelKey {
						t.Errorf("x-api-key = %q", v)
					}
					if v := r.header.Values("Anthropic-Version"); len(v) != 1 || v[0] != "2023-06-01" {
						t.Errorf("anthropic-version = %q", v)
					}
					if r.header.Get("Authorization") != "" {
						t.Error("the job's Authorization went through")
					}
				}
				for _, k := range []string{"Accept-Encoding", "Anthropic-Beta", "Openai-Project"} {
					if v := r.header.Get(k); v != "" {
						t.Errorf("the job's %s: %s went through", k, v)
					}
				}
				if ct := r.header.Get("Content-Type"); ct != "application/json" || r.header.Get("Content-Length") != fmt.Sprint(len(r.body)) {
					t.Errorf("Content-Type %q, Content-Length %q for %d bytes", ct, r.header.Get("Content-Length"), len(r.body))
				}
				var sent map[string]json.RawMessage
				if err := json.Unmarshal(r.body, &sent); err != nil {
					t.Fatalf("upstream body: %v", err)
				}
				if string(sent["model"]) != `"small-model"` || string(sent["max_tokens"]) != "64" || string(sent["temperature"]) != "0.5" ||
					string(sent["messages"]) != `[{"role":"user","content":"a <b> & c"}]` {
					t.Errorf("upstream body %s", r.body)
				}
				if api == "openai" && stream && string(sent["stream_options"]) != `{"include_usage":true}` {
					t.Errorf("stream_options = %s", sent["stream_options"])
				}

				c, a := mj.call(t)
				if !c.Allowed || c.Status != 200 || c.Reason != "" || c.InputTokens != 120 || c.OutputTokens != 30 || c.Turn != 1 || c.BytesUp != int64(len(r.body)) || c.BytesDown != int64(len(got)) {
					t.Errorf("call = %+v", c)
				}
				if !a.Allowed || a.Host != "model.airlock.internal" || a.Path != modelPath[api] || a.Status != 200 || a.BytesDown != int64(len(got)) || a.BytesUp != int64(len(body)) {
					t.Errorf("attempt = %+v", a)
				}
				if u := mj.s.ModelUsage(); u != (job.ModelUsage{Calls: 1, InputTokens: 120, OutputTokens: 30}) {
					t.Errorf("usage = %+v", u)
				}
			})
		}
	}
}

func TestModel_RefusesOtherPathsMethodsAndBodies(t *testing.T) {
	up := newModelUpstream(t, answer("openai", 1, 1))
	mj := newModelJob(t, "openai", up, Config{}, nil)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"GET", http.MethodGet, "/v1/chat/completions", "", 403},
		{"query", http.MethodPost, "/v1/chat/completions?model=big", "{}", 403},
		{"other path", http.MethodPost, "/v1/embeddings", "{}", 403},
		{"other API's path", http.MethodPost, "/v1/messages", "{}", 403},
		{"trailing slash", http.MethodPost, "/v1/chat/completions/", "{}", 403},
		{"not an object", http.MethodPost, "/v1/chat/completions", "[]", 400},
		{"not JSON", http.MethodPost, "/v1/chat/completions", "model=big", 400},
		{"empty", http.MethodPost, "/v1/chat/completions", "", 400},
		{"too large", http.MethodPost, "/v1/chat/completions", `{"a":"` + strings.Repeat("x", MaxModelRequestBytes) + `"}`, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _, err := mj.post(t, tc.method, tc.path, tc.body, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || resp.Header.Get(DeniedHeader) != "denied" {
				t.Errorf("got %d (%s %q), want %d from the proxy", resp.StatusCode, DeniedHeader, resp.Header.Get(DeniedHeader), tc.status)
			}
			c, a := mj.call(t)
			if c.Allowed || c.Reason == "" || a.Allowed || a.Status != tc.status || a.Path != shownPath(tc.path) {
				t.Errorf("call %+v, attempt %+v", c, a)
			}
		})
	}
	if len(up.seen) != 0 {
		t.Error("a refused request reached the upstream")
	}
	if u := mj.s.ModelUsage(); u.Calls != 0 || u.Refused != 9 || u.Limit != "" {
		t.Errorf("usage = %+v", u)
	}
}

func TestModel_RefusesPastMaxTurns(t *testing.T) {
	up := newModelUpstream(t, answer("anthropic", 1, 1))
	mj := newModelJob(t, "anthropic", up, Config{}, func(p *ModelPolicy) { p.MaxTurns = 3 })
	for turn := 1; turn <= 4; turn++ {
		resp, _, err := mj.post(t, http.MethodPost, "/v1/messages", `{"messages":[]}`, nil)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := mj.call(t)
		if turn <= 3 {
			if resp.StatusCode != 200 || !c.Allowed {
				t.Fatalf("turn %d: %d, %+v", turn, resp.StatusCode, c)
			}
			up.next(t)
			continue
		}
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get(DeniedHeader) != "denied" || c.Allowed || c.Limit != "maxTurns" || c.Turn != 4 {
			t.Errorf("turn 4: %d, %+v; want 429 maxTurns", resp.StatusCode, c)
		}
	}
	if len(up.seen) != 0 {
		t.Error("the fourth request reached the upstream")
	}
	if u := mj.s.ModelUsage(); u.Calls != 3 || u.Refused != 1 || u.Limit != "maxTurns" || u.InputTokens != 3 {
		t.Errorf("usage = %+v", u)
	}
}

func TestModel_RefusesOnceInputTokensAreUsed(t *testing.T) {
	up := newModelUpstream(t, answer("openai", 600, 5))
	mj := newModelJob(t, "openai", up, Config{}, nil) // MaxInputTokens 1000
	for i, want := range []int{200, 200, http.StatusTooManyRequests} {
		resp, _, err := mj.post(t, http.MethodPost, "/v1/chat/completions", `{"stream":true,"messages":[]}`, nil)
		if err != nil || resp.StatusCode != want {
			t.Fatalf("call %d: %v %v, want %d", i+1, resp, err, want)
		}
		mj.call(t)
	}
	if u := mj.s.ModelUsage(); u.Calls != 2 || u.Refused != 1 || u.InputTokens != 1200 || u.OutputTokens != 10 || u.Limit != "maxInputTokens" {
		t.Errorf("usage = %+v", u)
	}
}

func TestModel_CutsAHugeReplyWithBoundedMemory(t *testing.T) {
	const replyBytes, capBytes = 100 << 20, 16 << 20
	up := newModelUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		// One endless line, as a hostile or broken upstream might send.
		w.Header().Set("Content-Type", "text/event-stream")
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for sent := 0; sent < replyBytes; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mj := newModelJob(t, "openai", up, Config{}, func(p *ModelPolicy) { p.MaxReplyBytes = capBytes })
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp, err := mj.h.client(jobSrc).Post("http://model.airlock.internal/v1/chat/completions", "application/json", strings.NewReader(`{"messages":[]}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status: %v %v", resp, err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	if err == nil || n != capBytes {
		t.Errorf("the job read %d bytes, err %v; want the first %d and then a broken reply", n, err, capBytes)
	}
	// The proxy may hold its line cap and its buffers, never the reply:
	// everything allocated meanwhile, both ends included, stays under the
	// part of the reply that went through.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > capBytes {
		t.Errorf("%d MiB allocated for a %d MiB reply cut at %d MiB", grew>>20, replyBytes>>20, capBytes>>20)
	}
	c, a := mj.call(t)
	if !c.Allowed || c.Limit != "maxReplyBytes" || c.BytesDown != capBytes || c.Status != 200 {
		t.Errorf("call = %+v", c)
	}
	if a.BytesDown != capBytes || a.Status != 200 {
		t.Errorf("attempt = %+v", a)
	}
	if u := mj.s.ModelUsage(); u.Failed != 1 || u.Limit != "maxReplyBytes" || !strings.Contains(u.LastFailure, "maxReplyBytes") {
		t.Errorf("usage = %+v", u)
	}
}

func TestModel_UpstreamErrorsAreFailedCalls(t *testing.T) {
	t.Run("500", func(t *testing.T) {
		up := newModelUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"type":"error","error":{"type":"api_error","message":"Internal server error"}}`)
		})
		mj := newModelJob(t, "anthropic", up, Config{}, nil)
		resp, _, err := mj.post(t, http.MethodPost, "/v1/messages", `{}`, nil)
		if err != nil || resp.StatusCode != 500 || resp.Header.Get(DeniedHeader) != "" {
			t.Fatalf("got %v %v, want the upstream's 500", resp, err)
		}
		c, a := mj.call(t)
		if !c.Allowed || c.Status != 500 || c.Reason == "" || a.Status != 500 {
			t.Errorf("call %+v, attempt %+v", c, a)
		}
		if u := mj.s.ModelUsage(); u.Calls != 1 || u.Failed != 1 || u.LastStatus != 500 || u.LastFailure == "" {
			t.Errorf("usage = %+v", u)
		}
	})
	t.Run("hang", func(t *testing.T) {
		release := make(chan struct{})
		up := newModelUpstream(t, func(w http.ResponseWriter, r *http.Request) { <-release })
		defer close(release)
		mj := newModelJob(t, "openai", up, Config{ResponseHeaderTimeout: 200 * time.Millisecond}, nil)
		start := time.Now()
		resp, _, err := mj.post(t, http.MethodPost, "/v1/chat/completions", `{}`, nil)
		if err != nil || resp.StatusCode != http.StatusBadGateway || resp.Header.Get(DeniedHeader) != "denied" {
			t.Fatalf("got %v %v, want the proxy's 502", resp, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("a hung upstream held the call for %v", d)
		}
		c, a := mj.call(t)
		if !c.Allowed || c.Status != 0 || !strings.Contains(c.Reason, "upstream request failed") || a.Status != http.StatusBadGateway {
			t.Errorf("call %+v, attempt %+v", c, a)
		}
		if u := mj.s.ModelUsage(); u.Failed != 1 || u.LastStatus != 0 || u.LastFailure == "" {
			t.Errorf("usage = %+v", u)
		}
	})
	t.Run("encoded reply", func(t *testing.T) {
		up := newModelUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			io.WriteString(w, "\x1f\x8b")
		})
		mj := newModelJob(t, "openai", up, Config{}, nil)
		resp, _, err := mj.post(t, http.MethodPost, "/v1/chat/completions", `{}`, nil)
		if err != nil || resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("got %v %v, want 502", resp, err)
		}
		if c, _ := mj.call(t); !c.Allowed || c.Reason == "" {
			t.Errorf("call = %+v", c)
		}
		if u := mj.s.ModelUsage(); u.Failed != 1 {
			t.Errorf("usage = %+v", u)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		up := newModelUpstream(t, answer("openai", 1, 1))
		// The system roots alone do not know the stand-in's CA.
		mj := newModelJob(t, "openai", up, Config{ServiceTLS: &tls.Config{}}, nil)
		resp, _, err := mj.post(t, http.MethodPost, "/v1/chat/completions", `{}`, nil)
		if err != nil || resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("got %v %v, want 502", resp, err)
		}
		if c, _ := mj.call(t); !strings.Contains(c.Reason, "certificate") {
			t.Errorf("call = %+v", c)
		}
		if len(up.seen) != 0 {
			t.Error("the request reached an upstream the proxy does not trust")
		}
	})
}

func TestService_PrefixAndFixedHeadersBeatTheJobAndTheSecretNeverReturns(t *testing.T) {
	echo := newModelUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		// A careless upstream echoes the credential every way it can.
		w.Header().Set("X-Echo-Auth", r.Header.Get("Authorization"))
		w.Header().Set("X-Echo-Bare", strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		w.Header().Set("X-Key-"+modelKey, "1")
		w.Header().Set("X-Request-Id", "req-1")
		io.WriteString(w, "ok")
	})
	pool, err := LoadCAFile(echo.caFile)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Config{ServiceTLS: &tls.Config{RootCAs: pool}})
	attempts := make(chan job.EgressAttempt, 4)
	h.registerJob(JobPolicy{JobID: "svc", OnAttempt: func(a job.EgressAttempt) { attempts <- a }, Services: map[string]job.Service{"api": {
		Upstream: echo.URL, Header: "authorization", Prefix: "Bearer ", Secret: []byte(modelKey),
		Headers: map[string]string{"openai-organization": "org-fixed", "X-Tier": "low"},
	}}})
	req, _ := http.NewRequest(http.MethodGet, "http://api.airlock.internal/anything?x=1", nil)
	req.Header.Set("Authorization", "Bearer sk-mine")
	req.Header.Set("OpenAI-Organization", "org-other")
	req.Header["X-TIER"] = []string{"high"}
	req.Header.Set("X-Agent", "a1")
	resp, err := h.client(jobSrc).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	r := echo.next(t)
	for k, want := range map[string]string{"Authorization": "Bearer " + modelKey, "Openai-Organization": "org-fixed", "X-Tier": "low", "X-Agent": "a1"} {
		if got := r.header.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s = %q, want %q", k, got, want)
		}
	}
	if strings.Contains(strings.ToLower(fmt.Sprint(resp.Header)), modelKey) {
		t.Errorf("the job received the key: %v", resp.Header)
	}
	if resp.Header.Get("X-Request-Id") != "req-1" {
		t.Error("an ordinary upstream header was dropped")
	}
	if a := <-attempts; a.Path != "/anything" || a.Status != 200 || strings.Contains(fmt.Sprint(a), modelKey) {
		t.Errorf("attempt = %+v", a)
	}
}

func TestLoadCAFile_FailsClosed(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string { return writeFile(t, dir, name, data) }
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	defer srv.Close()
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	for name, path := range map[string]string{
		"missing":      filepath.Join(dir, "missing.pem"),
		"a directory":  dir,
		"empty":        write("empty.pem", ""),
		"not PEM":      write("text.pem", "not a certificate\n"),
		"a key":        write("key.pem", certPEM+"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		"bad DER":      write("bad.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"over the cap": write("big.pem", strings.Repeat("#", maxCAFileBytes+1)),
	} {
		if pool, err := LoadCAFile(path); !errors.Is(err, ErrCAFile) || pool != nil {
			t.Errorf("%s: LoadCAFile = %v, %v; want ErrCAFile", name, pool, err)
		}
	}
	pool, err := LoadCAFile(write("ok.pem", "# comment\n"+certPEM))
	if err != nil {
		t.Fatal(err)
	}
	// The pool is the system's roots and the file's, not the file's alone.
	want, err := x509.SystemCertPool()
	if err != nil {
		t.Skipf("no system roots here: %v", err)
	}
	want.AddCert(srv.Certificate())
	if !pool.Equal(want) {
		t.Error("LoadCAFile's pool is not the system roots plus the file's certificate")
	}
}

func TestAttempt_PathIsCappedPrintableAndTunnelsHaveNone(t *testing.T) {
	o := newOrigin(t, nil)
	h := newHarness(t, Config{})
	h.host("web.test", "11.22.33.1", o)
	attempts := make(chan job.EgressAttempt, 4)
	h.registerJob(JobPolicy{JobID: "paths", Egress: rules(t, "web.test:80"), OnAttempt: func(a job.EgressAttempt) { attempts <- a }})

	long := "/" + strings.Repeat("a", 300)
	if code, _ := h.raw("GET http://web.test" + long + "?secret=q HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n"); code != 200 {
		t.Fatalf("got %d", code)
	}
	if a := <-attempts; len(a.Path) != maxShownPath || !strings.HasSuffix(a.Path, "...") || !strings.HasPrefix(a.Path, "/aaa") || a.Status != 200 {
		t.Errorf("long path attempt: %q (%d bytes), status %d", a.Path, len(a.Path), a.Status)
	}
	if code, _ := h.raw("GET http://web.test/x%00\xffy?q=1 HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n"); code != 200 {
		t.Fatalf("got %d", code)
	}
	if a := <-attempts; a.Path != "/x%00y" {
		t.Errorf("path %q, want printable ASCII without the query", a.Path)
	}
	if code, _ := h.raw("GET http://other.test/denied?q HTTP/1.1\r\nHost: other.test\r\n\r\n"); code != 403 {
		t.Fatalf("got %d", code)
	}
	if a := <-attempts; a.Path != "/denied" || a.Status != 403 || a.Allowed {
		t.Errorf("refused attempt = %+v", a)
	}
	if code, _ := h.raw("CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\n\r\n"); code != 403 {
		t.Fatalf("got %d", code)
	}
	if a := <-attempts; a.Path != "" || a.Status != 403 || a.Method != http.MethodConnect {
		t.Errorf("refused tunnel = %+v", a)
	}
}

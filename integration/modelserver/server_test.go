package modelserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitLimit bounds every wait on the server in these tests; reaching it is
// a failure, never a way of synchronising.
const waitLimit = 20 * time.Second

// startPlain starts a server without TLS and returns it with its own
// client, both cleaned up after the test.
func startPlain(t *testing.T, opts Options) (*Server, *http.Client) {
	t.Helper()
	srv, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return srv, &http.Client{Transport: tr}
}

type call struct {
	path, body string
	header     map[string]string
}

func (c call) do(ctx context.Context, client *http.Client, base string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+c.path, strings.NewReader(c.body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	return client.Do(req)
}

func openAICall(model string, extra string) call {
	return call{path: PathChatCompletions, body: `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]` + extra + `}`}
}

func anthropicCall(model string, extra string) call {
	return call{
		path:   PathMessages,
		body:   `{"model":"` + model + `","max_tokens":100,"messages":[{"role":"user","content":"hi"}]` + extra + `}`,
		header: map[string]string{"anthropic-version": "2023-06-01"},
	}
}

// heapSampler reads a body and keeps the highest heap seen while doing so.
type heapSampler struct {
	r          io.Reader
	read, next int64
	peak       uint64
	tail       []byte
}

const sampleEvery = 4 << 20

func (h *heapSampler) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.read += int64(n)
	h.tail = append(h.tail, p[:n]...)
	if len(h.tail) > 4096 {
		h.tail = append(h.tail[:0], h.tail[len(h.tail)-1024:]...)
	}
	if h.read >= h.next {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		h.peak = max(h.peak, ms.HeapAlloc)
		h.next = h.read + sampleEvery
	}
	return n, err
}

func TestPadBytes_100MiBIsWrittenWithoutBeingHeld(t *testing.T) {
	const pad = 100 << 20
	// The reply's text is generated as it is written; a server that built
	// it first would hold at least 100 MiB while the client reads.
	const heapBound = 32 << 20
	srv, client := startPlain(t, Options{Scripts: map[string]Script{
		"big": func(*Turn) Reply { return Reply{Text: "start: ", PadBytes: pad} },
	}})
	for _, tc := range []struct {
		name string
		c    call
		end  string
	}{
		{"openai", openAICall("big", ""), `"total_tokens":`},
		{"openai stream", openAICall("big", `,"stream":true`), "data: [DONE]\n\n"},
		{"anthropic", anthropicCall("big", ""), `"output_tokens":`},
		{"anthropic stream", anthropicCall("big", `,"stream":true`), "event: message_stop\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			resp, err := tc.c.do(context.Background(), client, srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			h := &heapSampler{r: resp.Body}
			if _, err := io.Copy(io.Discard, h); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if h.read < pad || h.read > pad+pad/2 {
				t.Errorf("read %d bytes for a %d-byte text", h.read, pad)
			}
			if !bytes.Contains(h.tail, []byte(tc.end)) {
				t.Errorf("the reply does not end as it should: ...%q", h.tail)
			}
			if grew := int64(h.peak) - int64(before.HeapAlloc); grew > heapBound {
				t.Errorf("the heap grew by %d MiB while reading, want < %d MiB", grew>>20, heapBound>>20)
			}
		})
	}
}

// hangingServer starts a server whose "hang" model hangs, and reports each
// request arriving and each handler returning.
func hangingServer(t *testing.T, latency time.Duration) (srv *Server, client *http.Client, arrived, returned chan struct{}) {
	arrived, returned = make(chan struct{}, 8), make(chan struct{}, 8)
	srv, client = startPlain(t, Options{
		Latency: latency,
		Scripts: map[string]Script{"hang": func(*Turn) Reply { return Reply{Hang: true} }},
		hooks: testHooks{
			recorded: func() { arrived <- struct{}{} },
			done:     func() { returned <- struct{}{} },
		},
	})
	return srv, client, arrived, returned
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestHang_ReturnsOnClose(t *testing.T) {
	for _, tc := range []struct {
		name    string
		latency time.Duration
		c       call
	}{
		{"openai", 0, openAICall("hang", "")},
		{"anthropic stream", 0, anthropicCall("hang", `,"stream":true`)},
		// A long latency is a wait of its own that Close must end.
		{"latency", time.Hour, openAICall("hang", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, client, arrived, returned := hangingServer(t, tc.latency)
			got := make(chan error, 1)
			go func() {
				resp, err := tc.c.do(context.Background(), client, srv.URL())
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				got <- err
			}()
			waitFor(t, arrived, "the request")
			closed := make(chan error, 1)
			go func() { closed <- srv.Close() }()
			select {
			case err := <-closed:
				if err != nil {
					t.Errorf("Close: %v", err)
				}
			case <-time.After(waitLimit):
				t.Fatal("Close did not return with a reply hanging")
			}
			// Close returned only after the handler did.
			select {
			case <-returned:
			default:
				t.Error("Close returned before the hanging handler")
			}
			select {
			case err := <-got:
				if err == nil {
					t.Error("the client got a whole reply from a hanging script")
				}
			case <-time.After(waitLimit):
				t.Fatal("the client is still waiting after Close")
			}
		})
	}
}

func TestHang_ReturnsWhenTheClientGoesAway(t *testing.T) {
	srv, client, arrived, returned := hangingServer(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		resp, err := openAICall("hang", `,"stream":true`).do(ctx, client, srv.URL())
		if err == nil {
			resp.Body.Close()
		}
		got <- err
	}()
	waitFor(t, arrived, "the request")
	cancel()
	waitFor(t, returned, "the handler to return after the client went away")
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v, want context.Canceled", err)
	}
}

func TestStart_RefusesAddressesOffLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0", "example.com:0", "nonsense"} {
		_, err := Start(Options{Addr: addr})
		if err == nil {
			t.Errorf("%q: started", addr)
			continue
		}
		if addr != "nonsense" && !errors.Is(err, ErrNotLoopback) {
			t.Errorf("%q: err = %v, want ErrNotLoopback", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "127.1.2.3:0"} {
		srv, err := Start(Options{Addr: addr})
		if err != nil {
			t.Errorf("%q: %v", addr, err)
			continue
		}
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	}
}

// errorBody is both APIs' error bodies in one.
type errorBody struct {
	Type  string `json:"type"`
	Error struct {
		Type    string  `json:"type"`
		Message string  `json:"message"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func TestErrors_AreTheAPIsOwn(t *testing.T) {
	srv, client := startPlain(t, Options{Key: "k", Scripts: map[string]Script{
		"ok":         func(*Turn) Reply { return Reply{Text: "ok"} },
		"busy":       func(*Turn) Reply { return Reply{Status: http.StatusTooManyRequests, Text: "slow down"} },
		"overloaded": func(*Turn) Reply { return Reply{Status: 529} },
		"broken":     func(*Turn) Reply { return Reply{Status: http.StatusInternalServerError} },
	}})
	bearer := map[string]string{"Authorization": "Bearer k"}
	anthropicKey := map[string]string{"x-api-key": "k", "anthropic-version": "2023-06-01"}
	with := func(c call, h map[string]string) call {
		merged := map[string]string{}
		for k, v := range c.header {
			merged[k] = v
		}
		for k, v := range h {
			merged[k] = v
		}
		c.header = merged
		return c
	}
	for _, tc := range []struct {
		name      string
		c         call
		status    int
		errType   string
		param     string
		inMessage string
	}{
		{"openai no key", openAICall("ok", ""), 401, "invalid_request_error", "", "API key"},
		{"openai wrong key", with(openAICall("ok", ""), map[string]string{"Authorization": "Bearer x"}), 401, "invalid_request_error", "", "API key"},
		{"openai key as x-api-key", with(openAICall("ok", ""), map[string]string{"x-api-key": "k"}), 401, "invalid_request_error", "", ""},
		{"openai unknown model", with(openAICall("gpt-x", ""), bearer), 404, "invalid_request_error", "", "gpt-x"},
		{"openai bad JSON", with(call{path: PathChatCompletions, body: `{"model":`}, bearer), 400, "invalid_request_error", "", "JSON"},
		{"openai no messages", with(call{path: PathChatCompletions, body: `{"model":"ok","messages":[]}`}, bearer), 400, "invalid_request_error", "messages", ""},
		{"openai bad role", with(call{path: PathChatCompletions, body: `{"model":"ok","messages":[{"role":"robot","content":"x"}]}`}, bearer), 400, "invalid_request_error", "messages[0].role", "robot"},
		{"openai tool without id", with(call{path: PathChatCompletions, body: `{"model":"ok","messages":[{"role":"tool","content":"x"}]}`}, bearer), 400, "invalid_request_error", "messages[0].tool_call_id", ""},
		{"openai stream_options without stream", with(openAICall("ok", `,"stream_options":{"include_usage":true}`), bearer), 400, "invalid_request_error", "stream_options", ""},
		{"openai max_tokens 0", with(openAICall("ok", `,"max_completion_tokens":0`), bearer), 400, "invalid_request_error", "max_completion_tokens", ""},
		{"openai 429", with(openAICall("busy", ""), bearer), 429, "requests", "", "slow down"},
		{"openai 500", with(openAICall("broken", ""), bearer), 500, "server_error", "", ""},
		{"openai unknown path", with(call{path: "/v1/completions", body: `{}`}, bearer), 404, "invalid_request_error", "", "Invalid URL"},
		{"anthropic no key", anthropicCall("ok", ""), 401, "authentication_error", "", ""},
		{"anthropic wrong x-api-key beats a right bearer", with(anthropicCall("ok", ""), map[string]string{"x-api-key": "x", "Authorization": "Bearer k"}), 401, "authentication_error", "", ""},
		{"anthropic no version", with(call{path: PathMessages, body: anthropicCall("ok", "").body}, map[string]string{"x-api-key": "k"}), 400, "invalid_request_error", "", "anthropic-version"},
		{"anthropic no max_tokens", with(call{path: PathMessages, body: `{"model":"ok","messages":[{"role":"user","content":"hi"}]}`}, anthropicKey), 400, "invalid_request_error", "", "max_tokens: Field required"},
		{"anthropic bad role", with(call{path: PathMessages, body: `{"model":"ok","max_tokens":1,"messages":[{"role":"system","content":"hi"}]}`}, anthropicKey), 400, "invalid_request_error", "", "messages.0.role"},
		{"anthropic unknown model", with(anthropicCall("claude-x", ""), anthropicKey), 404, "not_found_error", "", "claude-x"},
		{"anthropic 429", with(anthropicCall("busy", ""), anthropicKey), 429, "rate_limit_error", "", "slow down"},
		{"anthropic 529", with(anthropicCall("overloaded", ""), anthropicKey), 529, "overloaded_error", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.c.do(context.Background(), client, srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var body errorBody
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("%d %s: %v", resp.StatusCode, raw, err)
			}
			if resp.StatusCode != tc.status || body.Error.Type != tc.errType || !strings.Contains(body.Error.Message, tc.inMessage) || body.Error.Message == "" {
				t.Errorf("got %d %s, want %d %s with %q", resp.StatusCode, raw, tc.status, tc.errType, tc.inMessage)
			}
			if tc.c.path == PathMessages {
				if body.Type != "error" || resp.Header.Get("request-id") == "" {
					t.Errorf("not Anthropic's error form: %s", raw)
				}
			} else if body.Error.Param == nil && tc.param != "" || body.Error.Param != nil && *body.Error.Param != tc.param {
				t.Errorf("param = %v, want %q", body.Error.Param, tc.param)
			}
		})
	}
	// The right keys pass.
	for _, c := range []call{with(openAICall("ok", ""), bearer), with(anthropicCall("ok", ""), anthropicKey),
		with(anthropicCall("ok", ""), map[string]string{"Authorization": "Bearer k"})} {
		resp, err := c.do(context.Background(), client, srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s with the key: %d", c.path, resp.StatusCode)
		}
	}
}

func TestBody_TooLargeIs413AndRecordedCapped(t *testing.T) {
	srv, client := startPlain(t, Options{Scripts: map[string]Script{"ok": func(*Turn) Reply { return Reply{Text: "ok"} }}})
	big := `{"model":"ok","messages":[{"role":"user","content":"` + strings.Repeat("a", MaxBodyBytes) + `"}]}`
	for _, tc := range []struct {
		c       call
		errType string
	}{
		{call{path: PathChatCompletions, body: big}, "invalid_request_error"},
		{call{path: PathMessages, body: big, header: map[string]string{"anthropic-version": "2023-06-01"}}, "request_too_large"},
	} {
		resp, err := tc.c.do(context.Background(), client, srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body errorBody
		_ = json.Unmarshal(raw, &body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || body.Error.Type != tc.errType {
			t.Errorf("%s: %d %s", tc.c.path, resp.StatusCode, raw)
		}
	}
	for _, r := range srv.Requests() {
		if len(r.Body) != MaxRecordedBodyBytes {
			t.Errorf("recorded %d bytes of the body, want %d", len(r.Body), MaxRecordedBodyBytes)
		}
	}
}

func TestStopReason_IsSaidInEachAPIsWords(t *testing.T) {
	srv, client := startPlain(t, Options{Scripts: map[string]Script{
		"cut-openai":    func(*Turn) Reply { return Reply{Text: "cut", StopReason: "max_tokens"} },
		"cut-anthropic": func(*Turn) Reply { return Reply{Text: "cut", StopReason: "length"} },
	}})
	for _, tc := range []struct {
		c    call
		want string
	}{
		{openAICall("cut-openai", ""), `"finish_reason":"length"`},
		{openAICall("cut-openai", `,"stream":true`), `"finish_reason":"length"`},
		{anthropicCall("cut-anthropic", ""), `"stop_reason":"max_tokens"`},
		{anthropicCall("cut-anthropic", `,"stream":true`), `"stop_reason":"max_tokens"`},
	} {
		resp, err := tc.c.do(context.Background(), client, srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(raw), tc.want) {
			t.Errorf("%s: no %s in %s", tc.c.body, tc.want, raw)
		}
	}
}

func TestServer_AnswersConcurrentRequests(t *testing.T) {
	const n = 32
	srv, client := startPlain(t, Options{MaxRecorded: n / 2, Scripts: map[string]Script{
		"echo": func(t *Turn) Reply { return Reply{Text: LastUserText(t)} },
	}})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			// é is in no id, so its count is the text's whatever the pieces.
			want := strings.Repeat("é", i+1)
			c := call{path: PathChatCompletions, body: `{"model":"echo","stream":` + map[bool]string{true: "true", false: "false"}[i%2 == 0] +
				`,"messages":[{"role":"user","content":"` + want + `"}]}`}
			resp, err := c.do(context.Background(), client, srv.URL())
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || bytes.Count(raw, []byte("é")) != i+1 {
				errs <- errors.New("request " + want + ": " + string(raw))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(srv.Requests()); got != n/2 {
		t.Errorf("kept %d requests, want MaxRecorded %d", got, n/2)
	}
}

func TestStream_UsageChunkOnlyWhenAskedFor(t *testing.T) {
	srv, client := startPlain(t, Options{Scripts: map[string]Script{"ok": func(*Turn) Reply { return Reply{Text: "ok"} }}})
	for _, tc := range []struct {
		extra      string
		usageChunk bool
	}{
		{`,"stream":true`, false},
		{`,"stream":true,"stream_options":{"include_usage":false}`, false},
		{`,"stream":true,"stream_options":{"include_usage":true}`, true},
	} {
		resp, err := openAICall("ok", tc.extra).do(context.Background(), client, srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Errorf("content type %q", ct)
		}
		if got := bytes.Contains(raw, []byte(`"choices":[],"usage":{`)); got != tc.usageChunk {
			t.Errorf("%s: usage chunk %v, want %v:\n%s", tc.extra, got, tc.usageChunk, raw)
		}
		if !bytes.HasSuffix(raw, []byte("data: [DONE]\n\n")) {
			t.Errorf("%s: does not end with [DONE]", tc.extra)
		}
	}
}

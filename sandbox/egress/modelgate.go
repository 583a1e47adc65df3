package egress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/airlock/airlock/sandbox/job"
)

// ModelPolicy puts a job's model service behind a gate: every limit of the
// model holds here, outside the sandbox, whatever the agent does.
type ModelPolicy struct {
	// Alias is the service alias that leads to the model.
	Alias string
	// API is "openai" (Chat Completions) or "anthropic" (Messages).
	API string
	// Name is the only model the job may use: the gate sets every
	// request's "model" to it.
	Name string
	// MaxTurns caps the requests let through.
	MaxTurns int
	// MaxInputTokens: no request is let through once the replies' input
	// tokens sum to it.
	MaxInputTokens int64
	// MaxOutputTokens clamps each request's max tokens, and sets it when
	// absent.
	MaxOutputTokens int64
	// MaxReplyBytes cuts a reply body longer than it; the call fails.
	MaxReplyBytes int64
	// OnCall, if set, is called as each call ends, on the connection's
	// goroutine.
	OnCall func(job.ModelCall)
}

// MaxModelRequestBytes caps a request body to the model, which the gate
// reads whole to rewrite.
const MaxModelRequestBytes = 8 << 20

// modelPaths are the one path each API is reached on.
var modelPaths = map[string]string{"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}

// modelGate is one session's gate and its counts.
type modelGate struct {
	pol ModelPolicy
	// slot lets one call at a time past the limit checks and upstream, so
	// that each check sees the tokens of every call before it: concurrent
	// calls would all pass a check that none of them has counted towards.
	slot chan struct{}

	mu    sync.Mutex
	turns int
	usage job.ModelUsage
}

func newModelGate(mp *ModelPolicy, services map[string]service) (*modelGate, error) {
	if mp == nil {
		return nil, nil
	}
	switch {
	case modelPaths[mp.API] == "":
		return nil, fmt.Errorf("model: unknown api %q", mp.API)
	case mp.Name == "":
		return nil, errors.New("model: no name")
	case mp.MaxTurns <= 0 || mp.MaxInputTokens <= 0 || mp.MaxOutputTokens <= 0 || mp.MaxReplyBytes <= 0:
		return nil, errors.New("model: every limit must be positive")
	}
	pol := *mp
	pol.Alias = strings.ToLower(pol.Alias)
	if _, ok := services[pol.Alias]; !ok {
		return nil, fmt.Errorf("model: alias %q is not one of the job's services", mp.Alias)
	}
	return &modelGate{pol: pol, slot: make(chan struct{}, 1)}, nil
}

// ModelUsage returns the model gate's totals; zero for a session without a model.
func (s *Session) ModelUsage() job.ModelUsage {
	if s.model == nil {
		return job.ModelUsage{}
	}
	s.model.mu.Lock()
	defer s.model.mu.Unlock()
	return s.model.usage
}

// modelCall is one request to the model, from admit to its one end.
type modelCall struct {
	job.ModelCall
	g *modelGate
	// slot is set while the call holds the gate's slot.
	slot bool
	done bool
}

// admit decides whether a request to the model may go: its method and
// path, then, holding the slot, the turn and token limits. It numbers the
// call. A refused call is ended already; the caller ends an admitted one.
func (g *modelGate) admit(ctx context.Context, method, pathQuery string) (mc *modelCall, status int, reason string) {
	g.mu.Lock()
	g.turns++
	mc = &modelCall{g: g, ModelCall: job.ModelCall{Time: time.Now(), Turn: g.turns}}
	g.mu.Unlock()
	defer func() {
		if status != 0 {
			mc.Reason = reason
			mc.end()
		}
	}()
	if want := modelPaths[g.pol.API]; method != http.MethodPost || pathQuery != want {
		return mc, http.StatusForbidden, fmt.Sprintf("the model service takes only POST %s", want)
	}
	select {
	case g.slot <- struct{}{}:
		mc.slot = true
	case <-ctx.Done():
		return mc, http.StatusServiceUnavailable, "session closed"
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.usage.Calls >= g.pol.MaxTurns:
		mc.Limit = "maxTurns"
		return mc, http.StatusTooManyRequests, fmt.Sprintf("the job has made its %d model requests (model.maxTurns)", g.pol.MaxTurns)
	case g.usage.InputTokens >= g.pol.MaxInputTokens:
		mc.Limit = "maxInputTokens"
		return mc, http.StatusTooManyRequests, fmt.Sprintf("the job has used its %d input tokens (model.maxInputTokens)", g.pol.MaxInputTokens)
	}
	return mc, 0, ""
}

// end counts the call, frees the slot and reports the call, once; later
// calls do nothing, so every path out of a request may end it.
func (mc *modelCall) end() {
	if mc == nil || mc.done {
		return
	}
	mc.done = true
	c := mc.ModelCall
	c.Duration = time.Since(c.Time)
	g := mc.g
	g.mu.Lock()
	u := &g.usage
	switch {
	case !c.Allowed:
		u.Refused++
	case c.Status < 200 || c.Status > 299 || c.Reason != "":
		u.Calls++
		u.Failed++
		u.LastStatus = c.Status
		if c.Status >= 200 && c.Status <= 299 {
			u.LastStatus = 0
		}
	default:
		u.Calls++
	}
	if c.Reason != "" {
		u.LastFailure = c.Reason
	}
	if c.Limit != "" && u.Limit == "" {
		u.Limit = c.Limit
	}
	u.InputTokens += c.InputTokens
	u.OutputTokens += c.OutputTokens
	g.mu.Unlock()
	if mc.slot {
		mc.slot = false
		<-g.slot
	}
	if g.pol.OnCall != nil {
		g.pol.OnCall(c)
	}
}

// refuse ends a call the proxy did not send upstream.
func (mc *modelCall) refuse(reason string) {
	if mc == nil {
		return
	}
	mc.Allowed, mc.Reason = false, reason
	mc.end()
}

// fail ends a call that was let through but got no usable reply; status
// is the upstream's, 0 when there was none.
func (mc *modelCall) fail(status int, reason string) {
	if mc == nil {
		return
	}
	mc.Allowed, mc.Status, mc.Reason = true, status, reason
	mc.end()
}

// modelRequestHeaders are the job's headers a model request keeps. Any
// other could undo a limit: Accept-Encoding would hide the usage in a
// compressed reply, a beta or project header could change the model's
// terms. Headers the operator needs are the service's fixed Headers.
var modelRequestHeaders = []string{"Accept", "User-Agent"}

// modelHeader is the header of a model request, built from the job's.
func modelHeader(job http.Header) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	for _, k := range modelRequestHeaders {
		if v, ok := job[k]; ok {
			h[k] = v
		}
	}
	return h
}

// rewrite reads the request body and returns it with the model fixed and
// the output tokens clamped; for a streamed OpenAI request it also asks
// for the usage chunk, so that the gate can count the tokens. Every other
// member is kept as sent; the members come out sorted, which JSON objects
// do not give meaning to, and a duplicate key comes out once, as the
// upstream would most likely read it.
func (g *modelGate) rewrite(r io.Reader) ([]byte, int, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxModelRequestBytes+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("read request body: %w", err)
	}
	if len(data) > MaxModelRequestBytes {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", MaxModelRequestBytes)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(data, &body); err != nil || body == nil {
		return nil, http.StatusBadRequest, errors.New("request body is not a JSON object")
	}
	body["model"], _ = json.Marshal(g.pol.Name)
	clamp := func(key string, limit int64) {
		var n int64
		if err := json.Unmarshal(body[key], &n); err != nil || n <= 0 || n > limit {
			body[key] = json.RawMessage(strconv.FormatInt(limit, 10))
		}
	}
	if _, ok := body["max_completion_tokens"]; ok && g.pol.API == "openai" {
		clamp("max_completion_tokens", g.pol.MaxOutputTokens)
		if _, ok := body["max_tokens"]; ok {
			clamp("max_tokens", g.pol.MaxOutputTokens)
		}
	} else {
		clamp("max_tokens", g.pol.MaxOutputTokens)
	}
	if _, ok := body["n"]; ok && g.pol.API == "openai" {
		// Each of n choices may use the whole max tokens.
		clamp("n", 1)
	}
	var stream bool
	if g.pol.API == "openai" && json.Unmarshal(body["stream"], &stream) == nil && stream {
		var opts map[string]json.RawMessage
		if json.Unmarshal(body["stream_options"], &opts) != nil || opts == nil {
			opts = map[string]json.RawMessage{}
		}
		opts["include_usage"] = json.RawMessage("true")
		if body["stream_options"], err = marshalJSON(opts); err != nil {
			return nil, http.StatusBadRequest, errors.New("request body is not valid JSON")
		}
	}
	out, err := marshalJSON(body)
	if err != nil {
		return nil, http.StatusBadRequest, errors.New("request body is not valid JSON")
	}
	return out, 0, nil
}

// marshalJSON encodes v without escaping <, > and &, so that the job's
// text reaches the model byte for byte.
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

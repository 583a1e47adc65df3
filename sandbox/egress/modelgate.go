package egress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
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

// maxUsageLine bounds the reply lines scanned for usage; a longer line
// still passes, unscanned.
const maxUsageLine = 1 << 20

// errReplyCap cuts a reply at MaxReplyBytes.
var errReplyCap = errors.New("model reply over its byte cap")

// modelGate is one session's gate and its counts.
type modelGate struct {
	pol   ModelPolicy
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
	if _, ok := services[mp.Alias]; !ok {
		return nil, fmt.Errorf("model: alias %q is not one of the job's services", mp.Alias)
	}
	return &modelGate{pol: *mp}, nil
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

// admit decides whether a request to the model may go: the method and
// path, then the turn and token limits. It numbers the call.
func (g *modelGate) admit(method, pathQuery string) (call job.ModelCall, status int, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.turns++
	call = job.ModelCall{Time: time.Now(), Turn: g.turns}
	want := modelPaths[g.pol.API]
	switch {
	case method != http.MethodPost || pathQuery != want:
		return call, http.StatusForbidden, fmt.Sprintf("the model service takes only POST %s", want)
	case g.usage.Calls >= g.pol.MaxTurns:
		call.Limit = "maxTurns"
		return call, http.StatusTooManyRequests, fmt.Sprintf("the job has made its %d model requests (model.maxTurns)", g.pol.MaxTurns)
	case g.usage.InputTokens >= g.pol.MaxInputTokens:
		call.Limit = "maxInputTokens"
		return call, http.StatusTooManyRequests, fmt.Sprintf("the job has used its %d input tokens (model.maxInputTokens)", g.pol.MaxInputTokens)
	}
	g.usage.Calls++
	return call, 0, ""
}

// finish counts an ended call and reports it.
func (g *modelGate) finish(c job.ModelCall) {
	c.Duration = time.Since(c.Time)
	g.mu.Lock()
	u := &g.usage
	switch {
	case !c.Allowed:
		u.Refused++
	case c.Status < 200 || c.Status > 299 || c.Reason != "":
		u.Failed++
		u.LastStatus = c.Status
		if c.Status >= 200 && c.Status <= 299 {
			u.LastStatus = 0
		}
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
	if g.pol.OnCall != nil {
		g.pol.OnCall(c)
	}
}

// rewrite reads the request body and returns it with the model fixed and
// the output tokens clamped; for a streamed OpenAI request it also asks
// for the usage chunk, so that the gate can count the tokens.
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
	clamp := func(key string) {
		var n int64
		if err := json.Unmarshal(body[key], &n); err != nil || n <= 0 || n > g.pol.MaxOutputTokens {
			body[key] = json.RawMessage(strconv.FormatInt(g.pol.MaxOutputTokens, 10))
		}
	}
	if _, ok := body["max_completion_tokens"]; ok && g.pol.API == "openai" {
		clamp("max_completion_tokens")
		if _, ok := body["max_tokens"]; ok {
			clamp("max_tokens")
		}
	} else {
		clamp("max_tokens")
	}
	var stream bool
	if g.pol.API == "openai" && json.Unmarshal(body["stream"], &stream) == nil && stream {
		opts := map[string]json.RawMessage{}
		_ = json.Unmarshal(body["stream_options"], &opts)
		if opts == nil {
			opts = map[string]json.RawMessage{}
		}
		opts["include_usage"] = json.RawMessage("true")
		body["stream_options"], _ = json.Marshal(opts)
	}
	out, err := json.Marshal(body)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	return out, 0, nil
}

// replyMeter relays a reply body, cutting it at max bytes and reading the
// usage on the way through with bounded memory: each line of up to
// maxUsageLine bytes (server-sent events), and the last bytes of the body
// (a JSON reply, whose usage block comes last).
type replyMeter struct {
	r     io.Reader
	max   int64
	n     int64
	cut   bool
	line  []byte
	long  bool
	tail  []byte
	usage usageCount
}

func (m *replyMeter) Read(p []byte) (int, error) {
	if m.n >= m.max {
		// One byte more tells a reply that ends at the cap from one that
		// goes on.
		var one [1]byte
		if k, _ := m.r.Read(one[:]); k > 0 {
			m.cut = true
			return 0, errReplyCap
		}
	}
	if rest := m.max - m.n; int64(len(p)) > rest && rest > 0 {
		p = p[:rest]
	}
	k, err := m.r.Read(p)
	m.n += int64(k)
	m.scan(p[:k])
	return k, err
}

func (m *replyMeter) scan(b []byte) {
	const tailBytes = 64 << 10
	m.tail = append(m.tail, b...)
	if len(m.tail) > 2*tailBytes {
		m.tail = append(m.tail[:0], m.tail[len(m.tail)-tailBytes:]...)
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if !m.long {
			if len(m.line)+len(chunk) > maxUsageLine {
				m.long, m.line = true, m.line[:0]
			} else {
				m.line = append(m.line, chunk...)
			}
		}
		if i < 0 {
			break
		}
		if !m.long {
			m.usage.scan(m.line)
		}
		m.line, m.long = m.line[:0], false
		b = b[i+1:]
	}
}

// counts returns the tokens seen, the tail scanned last.
func (m *replyMeter) counts() (in, out int64) {
	if !m.long {
		m.usage.scan(m.line)
	}
	m.usage.scan(m.tail)
	return m.usage.in, m.usage.out
}

// usageCount keeps the last count of each kind a reply states. In raw JSON
// a key in quotes cannot occur inside a string value, whose quotes are
// escaped, so a model's text cannot forge one.
type usageCount struct{ in, out int64 }

var usageKey = regexp.MustCompile(`"(prompt_tokens|input_tokens|completion_tokens|output_tokens)"\s*:\s*([0-9]{1,15})`)

func (u *usageCount) scan(b []byte) {
	for _, m := range usageKey.FindAllSubmatch(b, -1) {
		n, err := strconv.ParseInt(string(m[2]), 10, 64)
		if err != nil {
			continue
		}
		switch string(m[1]) {
		case "prompt_tokens", "input_tokens":
			u.in = n
		default:
			u.out = n
		}
	}
}

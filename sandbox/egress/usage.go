package egress

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// maxUsageLine bounds the event-stream data the usage scanner holds; a
// longer line or event still passes to the job, unscanned.
const maxUsageLine = 1 << 20

// maxUsageObject bounds the top-level "usage" value the JSON scanner holds;
// a real one is a few hundred bytes.
const maxUsageObject = 64 << 10

// errReplyCap cuts a reply at MaxReplyBytes.
var errReplyCap = errors.New("model reply over its byte cap")

// replyMeter relays a model's reply body, cutting it after max bytes, and
// reads the token usage on the way through with bounded memory.
type replyMeter struct {
	r   io.Reader
	max int64
	// n counts the bytes passed on; cut is set once the reply went past max.
	n   int64
	cut bool
	// Both readings run on every reply, whatever its Content-Type says:
	// valid JSON has no line that starts with "data:" and an event stream
	// has no top-level usage key that is not a real usage, so neither can
	// be fooled by the other's format, and counting the larger never
	// counts less than the upstream reported.
	events eventUsage
	object jsonUsage
}

func newReplyMeter(r io.Reader, max int64, api string) *replyMeter {
	return &replyMeter{r: r, max: max, events: eventUsage{api: api}, object: jsonUsage{api: api}}
}

// Read implements io.Reader.
func (m *replyMeter) Read(p []byte) (int, error) {
	if m.n >= m.max {
		// One byte more tells a reply that ends at the cap from one that
		// goes on.
		var one [1]byte
		if k, err := io.ReadAtLeast(m.r, one[:], 1); k == 0 {
			return 0, err
		}
		m.cut = true
		return 0, errReplyCap
	}
	if rest := m.max - m.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	k, err := m.r.Read(p)
	m.n += int64(k)
	m.events.write(p[:k])
	m.object.write(p[:k])
	return k, err
}

// counts returns the tokens the reply stated, once it has been read.
func (m *replyMeter) counts() (in, out int64) {
	m.events.flush()
	return max(m.events.in, m.object.in), max(m.events.out, m.object.out)
}

// tokenUsage is a usage block of either API. The counts are cumulative
// within a reply, so the larger of two readings is the later one.
type tokenUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	InputTokens      int64 `json:"input_tokens"`
	OutputTokens     int64 `json:"output_tokens"`
	// Anthropic counts cached input apart from input_tokens; it is still
	// input the job had the model read.
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
}

// tokens reads u as api states it. Negative counts, which no API sends,
// count as 0 rather than lowering a total.
func (u *tokenUsage) tokens(api string) (in, out int64) {
	if u == nil {
		return 0, 0
	}
	if api == "anthropic" {
		in, out = u.InputTokens+u.CacheCreationInputTokens+u.CacheReadInputTokens, u.OutputTokens
	} else {
		in, out = u.PromptTokens, u.CompletionTokens
	}
	return max(in, 0), max(out, 0)
}

// eventUsage reads the usage out of a server-sent event stream: OpenAI's
// usage chunk (any event with "usage"), Anthropic's message_start
// (message.usage) and message_delta (usage) events. Each event's data is
// parsed as a whole JSON document, so a model's text, which is inside a
// string there, cannot pose as a count.
type eventUsage struct {
	api     string
	in, out int64
	// line is the current line; long is set when it outgrew maxUsageLine
	// and is being skipped.
	line []byte
	long bool
	// data is the current event's data lines, joined by newlines;
	// dataLong is set when they outgrew maxUsageLine.
	data     []byte
	hasData  bool
	dataLong bool
}

func (e *eventUsage) write(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		part := b
		if i >= 0 {
			part = b[:i]
		}
		if !e.long && len(e.line)+len(part) > maxUsageLine {
			e.long, e.line = true, e.line[:0]
		}
		if !e.long {
			e.line = append(e.line, part...)
		}
		if i < 0 {
			return
		}
		e.endLine()
		b = b[i+1:]
	}
}

// endLine takes in a complete line (RFC: text/event-stream, "Interpreting
// an event stream").
func (e *eventUsage) endLine() {
	line, long := bytes.TrimSuffix(e.line, []byte("\r")), e.long
	e.line, e.long = e.line[:0], false
	switch {
	case long:
		// Whatever the line was, the event is no longer whole.
		e.hasData, e.dataLong = true, true
	case len(line) == 0:
		e.dispatch()
	case bytes.HasPrefix(line, []byte("data:")):
		v := bytes.TrimPrefix(line[len("data:"):], []byte(" "))
		if e.hasData {
			e.data = append(e.data, '\n')
		}
		e.hasData = true
		if len(e.data)+len(v) > maxUsageLine {
			e.dataLong = true
		}
		if !e.dataLong {
			e.data = append(e.data, v...)
		}
	}
}

// dispatch reads one event's data.
func (e *eventUsage) dispatch() {
	data, skip := e.data, !e.hasData || e.dataLong
	e.data, e.hasData, e.dataLong = e.data[:0], false, false
	if skip || bytes.Equal(data, []byte("[DONE]")) {
		return
	}
	var ev struct {
		Type    string      `json:"type"`
		Usage   *tokenUsage `json:"usage"`
		Message *struct {
			Usage *tokenUsage `json:"usage"`
		} `json:"message"`
	}
	if json.Unmarshal(data, &ev) != nil {
		return
	}
	u := ev.Usage
	if e.api == "anthropic" && ev.Type == "message_start" && ev.Message != nil {
		u = ev.Message.Usage
	}
	in, out := u.tokens(e.api)
	e.in, e.out = max(e.in, in), max(e.out, out)
}

// flush ends the stream: a last event without its blank line still
// counts, since counting it can only count more.
func (e *eventUsage) flush() {
	if len(e.line) > 0 || e.long {
		e.endLine()
	}
	e.dispatch()
}

// jsonUsage reads the top-level "usage" member of a JSON reply as the
// bytes pass, holding only that member. It follows strings and nesting, so
// a key deeper down (a tool call's input, which the model writes) or text
// inside a string is never taken for it.
type jsonUsage struct {
	api     string
	in, out int64

	depth  int
	inStr  bool
	escape bool
	// object is set while the top level is an object.
	object bool
	// keyNext is set where the top-level object expects a key; inKey
	// while reading one; afterKey between a key and its colon.
	keyNext, inKey, afterKey bool
	key                      []byte
	keyLong                  bool
	// capture is set while the value of "usage" passes; value holds it.
	capture   bool
	value     []byte
	valueLong bool
}

func (j *jsonUsage) write(b []byte) {
	for _, c := range b {
		j.step(c)
	}
}

func (j *jsonUsage) step(c byte) {
	if j.capture {
		if len(j.value) < maxUsageObject {
			j.value = append(j.value, c)
		} else {
			j.valueLong = true
		}
	}
	if j.inStr {
		switch {
		case j.escape:
			j.escape = false
		case c == '\\':
			j.escape = true
		case c == '"':
			j.inStr = false
			if j.inKey {
				j.inKey, j.afterKey = false, true
			}
			return
		}
		if j.inKey {
			if len(j.key) < len("usage") {
				j.key = append(j.key, c)
			} else {
				j.keyLong = true
			}
		}
		return
	}
	switch c {
	case '"':
		j.inStr = true
		if j.depth == 1 && j.keyNext {
			j.keyNext, j.inKey, j.key, j.keyLong = false, true, j.key[:0], false
		}
	case '{', '[':
		j.depth++
		if j.depth == 1 {
			j.object = c == '{'
			j.keyNext = j.object
		}
	case '}', ']':
		j.depth--
		if j.capture && j.depth <= 1 {
			j.endValue()
		}
		j.depth = max(j.depth, 0)
	case ',':
		if j.depth == 1 && j.object {
			if j.capture {
				j.endValue()
			}
			j.keyNext = true
		}
	case ':':
		if j.depth == 1 && j.object && j.afterKey {
			j.afterKey = false
			if !j.keyLong && string(j.key) == "usage" {
				j.capture, j.value, j.valueLong = true, j.value[:0], false
			}
		}
	}
}

// endValue reads the captured usage value; one that is not an object (or
// is cut by its cap) is no count.
func (j *jsonUsage) endValue() {
	j.capture = false
	if j.valueLong {
		return
	}
	var u *tokenUsage
	if json.Unmarshal(j.value, &u) != nil {
		return
	}
	in, out := u.tokens(j.api)
	j.in, j.out = max(j.in, in), max(j.out, out)
}

package modelserver

import (
	"encoding/json"
	"math/rand/v2"
	"time"
)

// parseTurn reads a request body of api into a Turn. The Turn is returned
// as far as it was read even with an error, so the request's model can be
// recorded.
func parseTurn(api string, body []byte) (*Turn, error) {
	if api == APIAnthropic {
		return parseAnthropic(body)
	}
	return parseOpenAI(body)
}

// outcome is a Reply made ready to write in either API's form: ids and
// usage filled in, arguments made valid JSON.
type outcome struct {
	id, model string
	created   int64
	text      textBody
	calls     []ToolCall
	// stop is the finish or stop reason in the API's own words.
	stop         string
	includeUsage bool

	inputTokens, outputTokens int64
}

func newOutcome(t *Turn, r Reply, requestBytes int64) *outcome {
	o := &outcome{
		model:        t.Model,
		created:      time.Now().Unix(),
		text:         newTextBody(r),
		includeUsage: t.includeUsage,
		inputTokens:  r.InputTokens,
		outputTokens: r.OutputTokens,
	}
	if t.API == APIAnthropic {
		o.id = "msg_01" + randomID(22)
	} else {
		o.id = "chatcmpl-" + randomID(29)
	}
	outBytes := o.text.Len()
	for _, c := range r.ToolCalls {
		if c.ID == "" {
			if t.API == APIAnthropic {
				c.ID = "toolu_01" + randomID(22)
			} else {
				c.ID = "call_" + randomID(24)
			}
		}
		// OpenAI carries arguments as a string, so a script may send broken
		// ones to see what a client does; Anthropic's input is JSON itself.
		if len(c.Arguments) == 0 || (t.API == APIAnthropic && !json.Valid(c.Arguments)) {
			c.Arguments = json.RawMessage("{}")
		}
		outBytes += int64(len(c.Name) + len(c.Arguments))
		o.calls = append(o.calls, c)
	}
	o.stop = stopReason(t.API, r.StopReason, len(o.calls) > 0)
	if o.inputTokens == 0 {
		o.inputTokens = estimateTokens(requestBytes)
	}
	if o.outputTokens == 0 {
		o.outputTokens = estimateTokens(outBytes)
	}
	return o
}

// stopWords pairs each stop reason in Chat Completions' words with the
// same in Messages' words, so that a script may use either.
var stopWords = []struct{ openai, anthropic string }{
	{"stop", "end_turn"},
	{"length", "max_tokens"},
	{"tool_calls", "tool_use"},
	{"content_filter", "refusal"},
	{"stop", "stop_sequence"},
}

// stopReason says reason in api's words; an empty one is a reply's natural
// end, with or without tool calls.
func stopReason(api, reason string, calls bool) string {
	if reason == "" {
		reason = "stop"
		if calls {
			reason = "tool_calls"
		}
	}
	for _, w := range stopWords {
		if api == APIAnthropic && reason == w.openai {
			return w.anthropic
		}
		if api != APIAnthropic && reason == w.anthropic {
			return w.openai
		}
	}
	return reason
}

// estimateTokens is the usual rule of thumb of four bytes a token.
func estimateTokens(n int64) int64 { return max(n/4, 1) }

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomID makes an id of the look the APIs use. It need only be unique,
// not secret.
func randomID(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = idAlphabet[rand.IntN(len(idAlphabet))]
	}
	return string(b)
}

// newRequestID makes the id an API puts in its request-id header.
func newRequestID() string { return "req_" + randomID(24) }

// jsonString is s as a JSON string.
func jsonString(s string) string { return string(mustJSON(s)) }

// mustJSON marshals values that cannot fail to marshal: strings, numbers,
// maps and structs of them.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

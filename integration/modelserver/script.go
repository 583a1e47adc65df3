package modelserver

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"unicode"
)

// AnswerTool is the tool through which an Anthropic client takes its final
// structured answer: Anthropic has no response_format, so a client forces
// the use of a tool whose input_schema is the answer's schema.
const AnswerTool = "respond"

// ContentDir is where a sandboxed agent finds its content items, which the
// stand-in model asks to read.
const ContentDir = "/input/content/"

// quoteRunes bounds the stand-in model's quote of the conversation.
const quoteRunes = 160

// Answer is the final structured answer v in the way the API expects it:
// for OpenAI the reply's text is v as JSON (response_format); for
// Anthropic it is a call of AnswerTool with v as input, or v as JSON text
// when the client asked for output_config.format or did not offer that
// tool.
func Answer(t *Turn, v any) Reply {
	b, err := json.Marshal(v)
	if err != nil {
		return Reply{Status: http.StatusInternalServerError, Text: "the script's answer is not JSON: " + err.Error()}
	}
	if t.API == APIAnthropic && t.Format == "" && t.HasTool(AnswerTool) {
		return Reply{ToolCalls: []ToolCall{{Name: AnswerTool, Arguments: b}}}
	}
	return Reply{Text: string(b)}
}

// Call is a reply that calls one tool with args as its arguments.
func Call(name string, args any) Reply {
	b, err := json.Marshal(args)
	if err != nil {
		return Reply{Status: http.StatusInternalServerError, Text: "the script's tool arguments are not JSON: " + err.Error()}
	}
	return Reply{ToolCalls: []ToolCall{{Name: name, Arguments: b}}}
}

// LastToolResult is the conversation's last tool message, if any.
func LastToolResult(t *Turn) (Message, bool) {
	return lastMessage(t, "tool")
}

// LastUserText is the text of the conversation's last user message.
func LastUserText(t *Turn) string {
	m, _ := lastMessage(t, "user")
	return m.Text
}

func lastMessage(t *Turn, roles ...string) (Message, bool) {
	for i := len(t.Messages) - 1; i >= 0; i-- {
		for _, r := range roles {
			if t.Messages[i].Role == r {
				return t.Messages[i], true
			}
		}
	}
	return Message{}, false
}

// MayCall reports whether the model may call the tool name in this turn:
// it is offered, and tool_choice neither forbids tools nor forces another.
func MayCall(t *Turn, name string) bool {
	if !t.HasTool(name) {
		return false
	}
	switch t.ToolChoice {
	case "", "auto", "any", "required", name:
		return true
	}
	return false
}

// Builtin returns the models every airlock-modelserver serves:
//
//   - "stand-in", the demo model: it reads the first content item the
//     conversation names with the read tool, when offered and nothing has
//     been read yet, and then answers with a short quote of what it last
//     read or was told, shaped to the answer's schema by Fill;
//   - "instant", for benchmarks: it answers Fill(schema, "ok") at once.
func Builtin() map[string]Script {
	return map[string]Script{
		"stand-in": standIn,
		"instant":  func(t *Turn) Reply { return structured(t, "ok") },
	}
}

func standIn(t *Turn) Reply {
	if MayCall(t, "read") {
		if _, read := LastToolResult(t); !read {
			if name, ok := contentName(t); ok {
				return Call("read", map[string]string{"path": ContentDir + name})
			}
		}
	}
	m, _ := lastMessage(t, "user", "tool")
	return structured(t, Quote(m.Text))
}

// structured answers text in the shape the client asked for: fitted to its
// schema, as a JSON object for OpenAI's json_object, else as plain text.
func structured(t *Turn, text string) Reply {
	switch {
	case len(t.Schema) > 0:
		return Answer(t, Fill(t.Schema, text))
	case t.Format == "json_object":
		return Answer(t, map[string]string{"answer": text})
	}
	return Reply{Text: text}
}

// contentPatterns find a content item's name where an agent would mention
// it: as a path, or as a name field. The data is datamarked (whitespace
// turned into U+02C6), so that counts as a space too.
var contentPatterns = []*regexp.Regexp{
	regexp.MustCompile(`/input/content/([A-Za-z0-9._-]+)`),
	regexp.MustCompile(`(?i)\bname[\sˆ]*[=:][\sˆ]*["']?([A-Za-z0-9._-]+)`),
}

// contentName is the first content item named in the user turns.
func contentName(t *Turn) (string, bool) {
	for _, m := range t.Messages {
		if m.Role != "user" {
			continue
		}
		for _, re := range contentPatterns {
			for _, sub := range re.FindAllStringSubmatch(m.Text, -1) {
				if name := sub[1]; name != "." && name != ".." {
					return name, true
				}
			}
		}
	}
	return "", false
}

// boundaryPattern matches the boundary lines a client wraps data in, such
// as <<airlock-data-…>>, which are no part of what the data says.
var boundaryPattern = regexp.MustCompile(`<<[^<>\n]{0,200}>>`)

// Quote is a short quote of text for an answer: boundaries removed, the
// datamarking character (U+02C6) and every run of whitespace or control
// characters made one space, cut to 160 runes.
func Quote(text string) string {
	text = boundaryPattern.ReplaceAllString(text, " ")
	text = strings.Map(func(r rune) rune {
		if r == 'ˆ' || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, text)
	text = strings.Join(strings.Fields(text), " ")
	if r := []rune(text); len(r) > quoteRunes {
		text = strings.TrimSpace(string(r[:quoteRunes]))
	}
	return text
}

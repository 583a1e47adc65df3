package result

import "strings"

// Details of chat-template findings.
const detailTemplateToken = "chat_template_token"

// templateTokens are the fixed chat-template and tokenizer control tokens
// removeTemplateTokens deletes, lowercased; they are matched ignoring ASCII
// case. Every <|…|> token is matched by shape instead (ChatML, Llama 3,
// Phi, and DeepSeek's <｜…｜> once NFKC has folded the fullwidth bars).
var templateTokens = []string{
	"<s>", "</s>", "<<sys>>", "<</sys>>",
	"<bos>", "<eos>", "<unk>", "<pad>",
	"<start_of_turn>", "<end_of_turn>",
	"[inst]", "[/inst]",
	"[system_prompt]", "[/system_prompt]",
	"[available_tools]", "[/available_tools]",
	"[tool_calls]", "[tool_results]", "[/tool_results]",
}

// maxGenericToken bounds the name inside <|…|>.
const maxGenericToken = 64

// removeTemplateTokens deletes chat-template tokens, which a model may obey
// as turn boundaries if the result is pasted into its prompt. Deleting a
// token can join two halves of another ("<|im_<|x|>start|>"), so it works
// like a stack: each byte is appended, and a token that the output now ends
// with is popped at once. The output therefore contains no token at all,
// which keeps Sanitize idempotent.
func removeTemplateTokens(s string, ns *notes) string {
	if !hasTemplateToken(s) {
		return s
	}
	out := make([]byte, 0, len(s))
	n := 0
	for i := 0; i < len(s); i++ {
		out = append(out, s[i])
		if c := s[i]; c == '>' || c == ']' {
			// The output had no token before this byte, so popping one
			// token leaves an output that has none either.
			if l := templateTokenSuffix(out); l > 0 {
				out = out[:len(out)-l]
				n++
			}
		}
	}
	ns.add(KindRemoved, detailTemplateToken, n)
	ns.add(KindFlagged, detailTemplateToken, n)
	return string(out)
}

// hasTemplateToken reports whether any token ends in s. Most text has no
// '>' or ']' that ends one, so this avoids copying.
func hasTemplateToken(s string) bool {
	for _, c := range []byte{'>', ']'} {
		for i := 0; ; {
			j := strings.IndexByte(s[i:], c)
			if j < 0 {
				break
			}
			i += j + 1
			if templateTokenSuffix(s[:i]) > 0 {
				return true
			}
		}
	}
	return false
}

// templateTokenSuffix returns the length of the token s ends with, or 0.
func templateTokenSuffix[T string | []byte](s T) int {
	for _, tok := range templateTokens {
		if len(s) >= len(tok) && tok[len(tok)-1] == s[len(s)-1] && equalFoldASCII(s[len(s)-len(tok):], tok) {
			return len(tok)
		}
	}
	// <|name|>: a name of 1 to maxGenericToken bytes with no space, '<',
	// '>' or '|'.
	if len(s) < 5 || s[len(s)-1] != '>' || s[len(s)-2] != '|' {
		return 0
	}
	lo := max(1, len(s)-3-maxGenericToken)
	for j := len(s) - 3; j >= lo; j-- {
		switch s[j] {
		case '|':
			if s[j-1] == '<' && j < len(s)-3 {
				return len(s) - j + 1
			}
			return 0
		case '<', '>', ' ', '\t', '\n':
			return 0
		}
	}
	return 0
}

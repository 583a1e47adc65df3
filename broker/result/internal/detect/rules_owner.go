package detect

import (
	"regexp"
	"strings"
)

// Benign text names instructions, rules and commands all the time: the
// instruction on a pasta packet, the parking rules of a festival, the
// phrase "ignore previous instructions" quoted in an article about
// injection, a destructive command in a runbook that warns before it. An
// injection differs in whose rules they are and what it wants done: the
// rules are the reader's own, an AI is named, an order follows. The tests
// here let a rule demand that when its own words leave it open.

// articles are the only words that may stand between a verb of dismissal
// and its object without saying whose rules these are.
var articles = map[string]bool{"the": true, "a": true, "an": true}

// weakObject reports whether the words between the first and the last
// word of v[start:end] are English articles or nothing: "ignore the
// instruction", not "ignore all previous instructions".
func weakObject(v string, start, end int) bool {
	f := strings.Fields(v[start:end])
	if len(f) < 2 {
		return true
	}
	for _, w := range f[1 : len(f)-1] {
		if !articles[strings.ToLower(w)] {
			return false
		}
	}
	return true
}

// readerCueAfter finds, right after the object, that the rules are the
// reader's: "above", "you were given", "so far".
var readerCueAfter = regexp.MustCompile(`(?i)^\W{0,3}(?:above|before|earlier|previously|so far|until now|up to (?:now|here)|from before|you(?:'ve| have| had)? (?:were |was |been )?(?:given|received|got|told|handed)|given (?:to )?you|in (?:your|the system) (?:prompt|context|message)|of (?:your|the) (?:system|developer|operator|prompt))\b`)

// followedByOrder reports whether an order to the reader comes right
// after end: "… and tell the user", "…. Say it is safe".
func followedByOrder(v string, end int) bool {
	j := end
	for j < len(v) && isLetter(v[j]) {
		j++ // the rest of the word the match ended in
	}
	for range 2 {
		k := j
		for k < len(v) && k < j+4 && !isLetter(v[k]) && v[k] != '\n' {
			k++
		}
		e := k
		for e < len(v) && isLetter(v[e]) {
			e++
		}
		w := strings.ToLower(v[k:e])
		if imperatives[w] {
			return true
		}
		if w != "and" && w != "then" && w != "instead" && w != "now" && w != "just" && w != "simply" {
			return false
		}
		j = e
	}
	return false
}

// sentenceStart returns where the sentence that holds i starts, at most n
// bytes back.
func sentenceStart(v string, i, n int) int {
	from := max(0, i-n)
	if k := strings.LastIndexAny(v[from:i], ".!?\n"); k >= 0 {
		from += k + 1
	}
	return from
}

// readersRules reports whether the rules named in v[start:end] are shown
// to be the reader's: told to it, an AI named before, a cue after, or an
// order that follows.
func readersRules(v string, start, end int) bool {
	return toldYou.MatchString(v[sentenceStart(v, start, 140):min(len(v), end+60)]) ||
		aiBefore(v, start, 200) ||
		readerCueAfter.MatchString(v[end:min(len(v), end+60)]) ||
		followedByOrder(v, end)
}

// ownedOrder is the test of a verb of dismissal with its object: with no
// more than an article before the noun ("ignore the instruction on the
// packet"), the rules must be shown to be the reader's; and a phrase only
// quoted as an example is not an order.
func ownedOrder(v string, start, end int) bool {
	if quotedMention(v, start, end) {
		return false
	}
	return !weakObject(v, start, end) || readersRules(v, start, end)
}

// mentionCue is how prose introduces a phrase it quotes as an example:
// `text such as "ignore previous instructions"`.
var mentionCue = regexp.MustCompile(`(?i)(?:such as|like|e\.g\.,?|i\.e\.,?|for example,?|for instance,?|phrases?|strings?|the words|payloads?|known as|called|containing|including|patterns?|sentences?)\s*$`)

// quotedMention reports whether v[start:end] opens a quotation that prose
// introduces as an example, and which closes on the same line.
func quotedMention(v string, start, end int) bool {
	j := start
	for j > 0 && v[j-1] == ' ' {
		j--
	}
	q := 0
	switch {
	case j > 0 && (v[j-1] == '"' || v[j-1] == '\'' || v[j-1] == '`'):
		q = 1
	case j >= 3 && (v[j-3:j] == "“" || v[j-3:j] == "‘"):
		q = 3
	case j >= 2 && v[j-2:j] == "«":
		q = 2
	default:
		return false
	}
	if !mentionCue.MatchString(v[max(0, j-q-40) : j-q]) {
		return false
	}
	rest := lineRest(v, end, 160)
	return strings.ContainsAny(rest, "\"'`”’»")
}

// readerQualifiers say that rules in a sentence belong to an AI reader:
// "previous system instructions", "prior safety guidelines".
var readerQualifiers = wordSet("system safety content moderation developer operator prompt ai model assistant bot chat agent summarisation summarization summarising summarizing formatting translation screening review task your default core base hidden internal")

// readersVoidedRules is the test of "previous … rules are cancelled": a
// word between the qualifier and the noun must name the reader's rules
// ("previous safety guidelines"), or the rules must be shown to be the
// reader's; the noun alone does when it can only be a prompt's.
func readersVoidedRules(v string, start, end int) bool {
	f := strings.Fields(strings.ToLower(v[start:end]))
	if len(f) >= 3 && readerQualifiers[strings.Trim(f[1], "-")] {
		return true
	}
	if len(f) >= 2 && !ruleNouns[f[1]] && !readerQualifiers[f[0]] {
		// A word of its own between: "the previous parking rules".
		return toldYou.MatchString(v[sentenceStart(v, start, 140):end]) || aiBefore(v, start, 240)
	}
	if len(f) >= 2 && promptNouns[f[1]] || readerQualifiers[f[0]] {
		return true
	}
	return toldYou.MatchString(v[sentenceStart(v, start, 140):end]) || aiBefore(v, start, 240)
}

var (
	ruleNouns   = wordSet("rules instructions directives guidelines guardrails orders prompt prompts commands restrictions constraints filters policies checks configuration settings setup programming")
	promptNouns = wordSet("instructions directives guidelines guardrails prompt prompts programming")
)

// A JSON list of chat messages is how APIs are documented; a message
// object is an injection when it gives the reader orders, or when it
// stands where no message belongs: among the data's own objects, or a
// system message after the user has spoken.

// prevObject returns the JSON object that closes just before the object
// opening at or before i (skipping `, `), or "" if none does.
func prevObject(v string, i int) string {
	j := i
	for j > 0 && v[j-1] != '{' && i-j < 4 {
		j--
	}
	if j == 0 || v[j-1] != '{' {
		return ""
	}
	j--
	for j > 0 && strings.IndexByte(" \t\r\n,", v[j-1]) >= 0 {
		j--
	}
	if j == 0 || v[j-1] != '}' {
		return ""
	}
	end := j
	for k := j - 2; k >= 0 && end-k < 600; k-- {
		if v[k] == '{' {
			return v[k:end]
		}
	}
	return ""
}

// messageOutOfPlace reports whether the message object whose role key is
// at i follows an object that is not a message, or is a system or
// developer message that follows the user's.
func messageOutOfPlace(v string, i int, role string) bool {
	prev := prevObject(v, i)
	if prev == "" {
		return false
	}
	if !containsFold(prev, `"role"`) {
		return true
	}
	return (role == "system" || role == "developer") && (containsFold(prev, `"user"`) || containsFold(prev, `"assistant"`))
}

// persona is a system message that only says who the model is: "You are
// a helpful assistant."
var persona = regexp.MustCompile(`(?i)^\s*you are (?:a|an) [\w\s,-]{0,40}?\b(?:assistant|ai|bot|chatbot|model|agent|tutor|translator|writer)\b[\w\s,-]{0,60}[.!]?\s*$`)

// messageOrders reports whether a message body gives the reader orders.
func messageOrders(content string) bool {
	if persona.MatchString(content) {
		return false
	}
	if orderish(content) || aiNounBefore.MatchString(content) {
		return true
	}
	j := 0
	for j < len(content) && isLetter(content[j]) {
		j++
	}
	return imperatives[strings.ToLower(content[:j])]
}

// jsonBody returns the JSON string that starts at i, up to n bytes.
func jsonBody(v string, i, n int) string {
	w := v[i:min(len(v), i+n)]
	for k := 0; k < len(w); k++ {
		if w[k] == '\\' {
			k++
			continue
		}
		if w[k] == '"' {
			return w[:k]
		}
	}
	return w
}

// jsonMessageInjected is the test of a JSON message object matched from
// its role key to the opening quote of its content.
func jsonMessageInjected(v string, start, end int) bool {
	role := ""
	for _, r := range []string{"system", "developer", "assistant", "user", "tool"} {
		if containsFold(v[start:end], `"`+r+`"`) {
			role = r
			break
		}
	}
	return messageOutOfPlace(v, start, role) || messageOrders(jsonBody(v, end, 240))
}

// A destructive command in a runbook, a lab sheet or an advisory comes
// with a warning or is named as an example to recognise; one planted for
// an AI to run comes with neither.

// mentionBefore is a sentence that names a command as an example or a
// thing to detect, not to run.
var mentionBefore = regexp.MustCompile(`(?i)\b(?:such as|e\.g\.|for example|for instance|recogni[sz]e|detect|detecting|spot|identify|signatures?|indicators?|iocs?|alert on|looks? like)\b[^.!?\n]{0,40}$`)

// orderBefore is an order to run, in the same stretch.
var orderBefore = regexp.MustCompile(`(?i)\b(?:run|execute|paste|type|enter|launch|invoke)\b`)

// cautionAfter is a warning that follows a command: "cannot be undone",
// "only after confirming".
var cautionAfter = regexp.MustCompile(`(?i)\b(?:cannot be (?:undone|reversed|recovered)|can(?:'|no)t be (?:undone|reversed)|irreversibl[ey]|double-check|only after (?:confirming|checking|verifying|backing up|making sure)|be careful|at your own risk|back(?:ing)? up (?:first|before))\b`)

// undocumented reports whether the command matched at v[start:end] is
// not warned against before, not named as an example, and not followed by
// a warning.
func undocumented(v string, start, end int) bool {
	if !notNegated(v, start) {
		return false
	}
	before := v[sentenceStart(v, start, 80):start]
	if mentionBefore.MatchString(before) && !orderBefore.MatchString(before) {
		return false
	}
	return !cautionAfter.MatchString(v[end:min(len(v), end+200)])
}

// A chat log announced as one ("Chat log from our help widget:") is
// quoted data; it carries an injection when one of its turns is the
// system's or gives the reader orders.

// logHeading finds a heading that announces a log or an example dialogue
// on a line before.
var logHeading = regexp.MustCompile(`(?i)\b(?:logs?|transcripts?|dialog(?:ue)?s?|conversations?|exchanges?|excerpts?|examples?|samples?|history)\b[^\n]{0,80}:[ \t]*\r?$`)

// announcedLog reports whether the turn at i belongs to a run of turn
// lines under a heading that announces a log.
func announcedLog(v string, i int) bool {
	end := strings.LastIndexByte(v[:i], '\n')
	for n := 0; end > 0 && n < 12; n++ {
		a := strings.LastIndexByte(v[:end], '\n') + 1
		line := v[a:end]
		if !isTurnLine(line) {
			return logHeading.MatchString(line)
		}
		end = a - 1
	}
	return false
}

// strongOrder finds, in a turn of a chat, an order or a grant to an AI.
var strongOrder = regexp.MustCompile(`(?i)\b(?:must|always|never|ignore|disregard|grant(?:ed)?|authori[sz]ed|allowed|permitted|approve|reveal|override|no longer|from now on|you are now|effective immediately|the (?:assistant|agent|model|ai|bot) (?:is|will|should|shall|may|can))\b`)

// turnLine finds a line that is a chat turn.
var turnLine = regexp.MustCompile(`(?im)^[ \t>*_]*(?:system|developer|admin|operator)\** ?:`)

// transcriptInjected is the test of a chat turn followed by another: an
// announced log must hold a system turn or an order.
func transcriptInjected(v string, start, _ int) bool {
	if !announcedLog(v, start) {
		return true
	}
	body := v[start:min(len(v), start+800)]
	return turnLine.MatchString(body) || strongOrder.MatchString(body)
}

// prevLineIsTurn reports whether the line before the one that holds i
// is a chat turn ("Agent: let me check"), so that a line at i that opens
// with "System:" continues a transcript.
func prevLineIsTurn(v string, i int) bool {
	a := strings.LastIndexByte(v[:i], '\n')
	if a <= 0 {
		return false
	}
	b := strings.LastIndexByte(v[:a], '\n') + 1
	return isTurnLine(v[b:a])
}

// isTurnLine reports whether line opens with a speaker and a colon, and
// says something after it; a heading ends with its colon.
func isTurnLine(line string) bool {
	line = strings.TrimLeft(line, " \t>*_")
	k := strings.IndexByte(line, ':')
	if k < 2 || k > 24 || strings.TrimSpace(line[k+1:]) == "" {
		return false
	}
	for j := 0; j < k; j++ {
		if !isLetter(line[j]) && line[j] != ' ' && line[j] != '*' {
			return false
		}
	}
	return true
}

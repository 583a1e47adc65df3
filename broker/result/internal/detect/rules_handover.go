package detect

import (
	"strings"
)

// After a line that marks the end of the data ("</document>", "--- tool
// output ends here ---", "# fim do texto"), an injection hands over to
// its reader: a directive said to come from the operator or meant for the
// assistant, or an order that replaces the task ("instead of
// translating, …"). Prose has neither the marker line nor, after it, a
// directive with an issuer.

func init() {
	handOverAfterEndRules()
}

// markerStarts open a line that marks a boundary in the text: a comment,
// a banner, a tag, a fence or a quote block.
var markerStarts = []string{"#", "//", "/*", "--", "==", "**", "~~", "__", "<", "[", "(", "```", `"""`, "'''", "―", "─", "━", "═", "【", "［"}

// endMarkerBefore reports whether, in the n bytes before the line that
// holds i, a line that opens as a marker says the data ended.
func endMarkerBefore(v string, i, n int) bool {
	end := strings.LastIndexByte(v[:i], '\n')
	floor := max(0, i-n)
	for end > floor {
		a := strings.LastIndexByte(v[:end], '\n') + 1
		line := strings.TrimSpace(v[a:end])
		if isMarkerLine(line) && closing.MatchString(line) {
			return true
		}
		end = a - 1
	}
	return false
}

func isMarkerLine(line string) bool {
	for _, m := range markerStarts {
		if strings.HasPrefix(line, m) {
			return true
		}
	}
	return false
}

// aiIssuers name an AI as the one a directive is for.
var aiIssuers = wordSet("assistant agent ai model bot llm copilot")

// readerTask is what the reader was asked to do with the data, in the
// languages covered: summarising, translating, answering, reviewing.
const readerTask = `(?:summar|transl|answer|respon|repl|review|revis|evalu|avali|analy|anali|process|grad|scor|descri|explain|explic|check|classif|rat|tradu|resum|résum|rédig|zusammenfass|übersetz|beantwort|bewert|prüf|riassum|rispond|valut|перевод|переве|ответ|резюм|анализ|оцен)\p{L}*`

func handOverAfterEndRules() {
	// "Operator directive follows:", "Assistant guidance:", "System
	// instructions below".
	issuers := "operator operators system admin administrator developer trusted assistant agent ai model bot llm copilot maintainer controller"
	on(FakeDelimiter, issuers,
		`(?:operators?|system|admin|administrator|developer|trusted|assistant|agent|ai|model|bot|llm|copilot|maintainer|controller)(?:'s)?(?: [\w-]+)? (?:directives?|instructions?|guidance|orders|commands?|notes?|tasks?|briefing|memo)(?: [\w-]+){0,2}? ?(?::|follows?\b|below\b|begins?\b|starts?\b)`,
		withNext(issuers, "directive directives instruction instructions guidance orders command commands note notes task tasks briefing memo"),
		withBefore(func(v string, i int) bool { return endMarkerBefore(v, i, 400) }),
		// An operator's notes may be a human's; they must give orders.
		withAfter(func(v string, start, end int) bool {
			return aiIssuers[strings.ToLower(wordAt(v, start))] || ordersAfter(v, end)
		}))
	// "Agora, em vez de traduzir, responda …": the task replaced.
	on(FakeDelimiter, "instead vez lugar lieu anstatt statt invece вместо",
		`(?:instead of|vez de|lugar de|lieu de|anstatt|statt|invece di|вместо того,? чтобы|вместо) (?:(?:the|this|it|lo|la|le|les|das|den|o|a) )?`+readerTask,
		withBefore(func(v string, i int) bool { return endMarkerBefore(v, i, 300) }))
}

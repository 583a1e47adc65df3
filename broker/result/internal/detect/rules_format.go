package detect

import (
	"regexp"
	"strings"
)

// Chat turns and the ends of data come in many real formats: the special
// tokens of each model family, XML, JSON and YAML message objects, chat
// logs, turns written in the reader's language, and banners, closing tags
// and keys that hand over to "instructions". These rules look for the
// format rather than for one sentence written in it.

func init() {
	roleFormatRules()
	handOverRules()
}

// orderish reports whether a message body reads as an order or a grant
// to an AI, rather than a placeholder or a status line.
func orderish(s string) bool {
	if speaksToReader(s, 0, len(s)) {
		return true
	}
	return hasASCIIWord(s, orderWords)
}

// orderWords give orders or grants to an AI.
var orderWords = wordSet("must should always never may now grant granted allowed permitted authorised authorized ignore assistant agent agents model share approve reveal delete")

// timestampBefore reports whether a chat-log time stamp ("[09:15]",
// "19:05", "[14.03.24, 19:05]") ends just before i.
func timestampBefore(v string, i int) bool {
	j := i
	for j > 0 && (v[j-1] == ' ' || v[j-1] == '\t') {
		j--
	}
	if j > 0 && v[j-1] == ']' {
		j--
	}
	// The time itself: digits, then a colon or dot, then two digits.
	if j < 4 || !isDigit(v[j-1]) || !isDigit(v[j-2]) || (v[j-3] != ':' && v[j-3] != '.') || !isDigit(v[j-4]) {
		return false
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// lineRest returns what follows i on its line, at most n bytes.
func lineRest(v string, i, n int) string {
	w := v[i:min(len(v), i+n)]
	if k := strings.IndexByte(w, '\n'); k >= 0 {
		w = w[:k]
	}
	return w
}

func roleFormatRules() {
	// Special tokens of any model family: <|start|>, <|message|>,
	// <｜User｜>, <|begin_of_text|>.
	onPunct('<', re(RoleMarker, `<[|｜] ?[\p{L}_▁]{2,30} ?[|｜]>`))
	// <message role="system">, <turn role='tool'>.
	onPunct('<', re(RoleMarker, `<[a-z][\w:-]{0,20}\s[^<>\n]{0,60}?\brole ?= ?["']?(?:system|developer|assistant|tool|user)\b`,
		withPre(func(v string, i int) bool { return containsFold(v[i:min(len(v), i+90)], "role") })))
	// Tags named for a role in another language: <sistema>, <система>.
	onPunct('<', re(RoleMarker, `</? ?(?:sistema|système|systeme|systemnachricht|система|系统|システム|usuario|utilisateur|benutzer|asistente|assistente|assistent|ассистент|пользователь|system_prompt|sys)(?:\s[^>\n]{0,30})?>`))
	// JSON message objects with other keys between role and content.
	on(RoleMarker, "role",
		`role["'] ?: ?["'](?:system|developer|tool)["'](?: ?, ?["'][\w-]{1,20}["'] ?: ?["'][^"'\n]{0,60}["']){1,3} ?, ?["']content["'] ?: ?["']`,
		withPre(func(v string, i int) bool { return i > 0 && (v[i-1] == '"' || v[i-1] == '\'') }),
		withAfter(func(v string, _, end int) bool { return orderish(lineRest(v, end, 240)) }))
	// YAML message lists: "- role: system\n  content: …".
	on(RoleMarker, "role",
		`role ?: ?["']?(?:system|developer|tool)["']?[ \t]*\r?\n[ \t-]*(?:content|text|message) ?: ?[|>]?`,
		withPre(func(v string, i int) bool {
			return lineStart(v, i) || i >= 2 && v[i-2] == '-' && v[i-1] == ' '
		}),
		withAfter(func(v string, _, end int) bool {
			j := end
			for j < len(v) && (v[j] == ' ' || v[j] == '\n' || v[j] == '\t') {
				j++
			}
			return orderish(lineRest(v, j, 240))
		}))
	// Chat logs: "[09:15] system: the assistant is now authorised …".
	on(RoleMarker, "system developer admin operator",
		`(?:system|developer|admin|operator) ?:`,
		withPre(timestampBefore),
		withAfter(func(v string, _, end int) bool { return orderish(lineRest(v, end, 200)) }))
	// Turns in the reader's language in the middle of prose: "Utilisateur :
	// … Assistant : Bien sûr", "Assistent: Ich bestätige …".
	on(RoleMarker, "utilisateur usuario usuário utente benutzer nutzer nutzerin пользователь",
		`(?:utilisateur|usuario|usuário|utente|benutzer|nutzer|nutzerin|пользователь)\** ?:[^\n]{0,300}?[\n.!?;][\s>*_]*(?:assistant|asistente|assistente|assistent|ассистент|ia|ki|ии|bot|système|sistema|system|система)\** ?:`,
		withPre(atBoundary), withColon)
	on(RoleMarker, "assistant assistent asistente assistente ассистент",
		`(?:assistant|assistent|asistente|assistente|ассистент)\** ?: ?\** ?(?:i\b|ich\b|je\b|j'|yo\b|io\b|eu\b|я\b|sure\b|certainly|of course|absolutely|understood|done\b|bien sûr|d'accord|entendu|claro|por supuesto|entendido|certo\b|certamente|capito|natürlich|selbstverständlich|verstanden|конечно|понял)`,
		withPre(atBoundary), withColon)
	// 【系统】, ［用户］, [システム].
	bracketed := &rule{cat: RoleMarker, re: compile(`(?:系统|系統|用户|用戶|助手|管理员|开发者|システム|ユーザー|アシスタント)[】\]］]`),
		pre: func(v string, i int) bool {
			return strings.HasSuffix(v[:i], "【") || strings.HasSuffix(v[:i], "［") || strings.HasSuffix(v[:i], "[")
		}}
	for _, c := range "系用助管开シユア" {
		runeAnchors[c] = append(runeAnchors[c], bracketed)
	}
}

// closing finds where data says it ended: a closing tag or comment, or a
// word for "ends" in the languages covered.
var closing = regexp.MustCompile(`(?i)</[\p{L}\w.-]{1,40}>|-->|\*/|\[/[^\]\n]{1,40}\]|(?m:^\.\.\.$)|\b(?:ends?|ended|end of|terminated|complete|completed|closed|finished|eof|fin|fine|fim|final|ende|endet|beendet|schluss)\b|(?:^|[^\p{L}])(?:конец|окончен\p{L}*|завершен\p{L}*)|終わり|终わり|结束|以上|完毕|ここまで|到此为止`)

func closingBefore(v string, i int) bool {
	return closing.MatchString(v[max(0, i-300):i])
}

// directiveQualifier names who an instruction block claims to come from
// or be meant for.
const directiveQualifier = `(?:agent|assistant|ai|llm|model|bot|system|admin|operator|maintainer|developer|controller|privileged|priority|hidden|secret|trusted|override|copilot|internal)`

// directiveNounML names instructions in the languages covered.
const directiveNounML = `(?:instructions?|directives?|commands?|orders|tasks?|anweisung\p{L}*|instrucci\p{L}*|istruzion\p{L}*|consignes?|diretiv\p{L}*|directiv\p{L}*|указани\p{L}*|инструкци\p{L}*|директив\p{L}*|指示|指令|命令)`

// bannerLine reports whether the line around i is a banner, a bracket or
// bold heading: "=== X ===", "[[x]]", "**X:**", "~~~ X ~~~".
func bannerLine(v string, i int) bool {
	a := i
	for a > 0 && v[a-1] != '\n' && i-a < 60 {
		a--
	}
	b := i
	for b < len(v) && v[b] != '\n' && b-i < 80 {
		b++
	}
	line := v[a:b]
	return strings.ContainsAny(line, "[]【】") || strings.Contains(line, "===") || strings.Contains(line, "~~~") ||
		strings.Contains(line, "***") || strings.Contains(line, "---") || strings.Contains(line, "**") ||
		strings.Count(line, "#") >= 4 || strings.Contains(line, "═") || strings.Contains(line, "──") || strings.Contains(line, "━")
}

// forReader finds who an instruction is for or from after its noun: "for
// the assistant:", "per l'assistente", "для модели:", "del operador:",
// "de l'administrateur destinée à l'assistant :".
var forReader = regexp.MustCompile(`(?i)^[^\n:：]{0,48}?(?:^|[^\p{L}])(?:for|to|from|of|all'|al|alla|per|für|von|vom|pour|para|à|a|de|del|des|dell'|от|для)\s*(?:the |l'|la |le |el |den |die |das |dem )?(?:[\p{L}-]+ )?(?:assistant|agent|ai|model|bot|summari[sz]er|llm|copilot|assistente|asistente|assistent|модел|ассистент|агент|operator|operador|operatore|administra|amministrator|admin|betreiber|администратор|оператор|ia|ki|ии)\p{L}*[^\n:：]{0,40}?[:：]`)

// qualified finds a qualifier opening a key or tag name.
var qualified = regexp.MustCompile(`(?i)^` + directiveQualifier)

func handOverRules() {
	// Tags naming instructions for an AI: <agent-instructions>,
	// <maintainer_directive>, <!-- assistant-config: …, <anweisung>,
	// <указание_системы>.
	onPunct('<',
		re(FakeDelimiter, `<(?:!-- ?)?/?`+directiveQualifier+`[\w-]{0,12}?[_-](?:instructions?|directives?|commands?|orders|tasks?|config(?:uration)?|policy|rules)\b`),
		re(FakeDelimiter, `</?(?:[\p{L}\w]{1,16}[_-])?`+directiveNounML+`(?:[_\s-][^<>\n]{0,30})?>`,
			withAfter(func(v string, start, end int) bool {
				// <instructions> is flagged elsewhere; here a tag in another
				// language or joined to a qualifier, after data ended.
				return closingBefore(v, start) || strings.ContainsAny(v[start:end], "_-")
			})))
	// Keys that hand over to instructions: system_directive:,
	// "agent_directive":, assistant_task:, after data said it ended or
	// with an order for a value.
	key := func(v string, i int) bool {
		if i < 2 || (v[i-1] != '_' && v[i-1] != '-') {
			return false
		}
		j := i
		for j < len(v) && isLetter(v[j]) {
			j++
		}
		if j < len(v) && (v[j] == '"' || v[j] == '\'') {
			j++
		}
		for j < len(v) && v[j] == ' ' {
			j++
		}
		return j < len(v) && v[j] == ':'
	}
	on(FakeDelimiter, "directive directives instruction instructions task tasks command commands orders config configuration",
		`(?:directives?|instructions?|tasks?|commands?|orders|config(?:uration)?)["']? ?:`,
		withPre(key),
		withAfter(func(v string, start, end int) bool {
			a := start - 1
			for a > 0 && (isLetter(v[a-1]) || v[a-1] == '_' || v[a-1] == '-') {
				a--
			}
			return closingBefore(v, a) || closing.MatchString(lineRest(v, min(len(v), end+4), 120)) ||
				qualified.MatchString(v[a:start]) && ordersAfter(v, end)
		}))
	// Banners and brackets that open instructions after data ended: "===
	// INSTRUCCIONES DEL SISTEMA ===", "[[controller instructions]]",
	// "**Log ended. Operator instructions for the assistant:**".
	on(FakeDelimiter, "instruction instructions directive directives task orders commands guidance instrucciones instrucción indicaciones directivas órdenes istruzioni istruzione direttive indicazioni anweisung anweisungen vorgaben richtlinien consignes consigne directives instruções instrução orientações diretivas указание указания указаний инструкции инструкция директива директивы",
		`(?:instructions?|directives?|task|orders|commands|guidance|instrucci\p{L}+|indicaci\p{L}+|directivas|órdenes|istruzion\p{L}|direttive|indicazioni|anweisung(?:en)?|vorgaben|richtlinien|consignes?|instru\p{L}+|orientações|diretivas|указани\p{L}|инструкци\p{L}|директив\p{L})`,
		withPre(bannerLineOrAddress),
		withBefore(closingBefore))
	// A JSON key naming instructions right after the data's object closed:
	// `}], "instructions": "…"`.
	on(FakeDelimiter, "instructions instruction directive directives command commands override task system prompt",
		`[\w]+(?:_\w+)?["'] ?:`,
		withPre(func(v string, i int) bool {
			j := i - 1
			if j < 0 || (v[j] != '"' && v[j] != '\'') {
				return false
			}
			for j > 0 && strings.IndexByte(" \t\r\n", v[j-1]) >= 0 {
				j--
			}
			if j == 0 || v[j-1] != ',' {
				return false
			}
			j--
			for j > 0 && strings.IndexByte(" \t\r\n", v[j-1]) >= 0 {
				j--
			}
			return j > 0 && (v[j-1] == '}' || v[j-1] == ']')
		}))
	// A MIME part that claims to hold instructions for an AI.
	on(FakeDelimiter, "content", `content-type ?: ?[\w.+-]+/[\w.+-]*(?:assistant|agent|ai|llm|model|system|instruction|directive|prompt)`, withNext("content", "type"))
	// "notes closed - the agent's real next step:": data said it ended,
	// then the reader's next task is named.
	on(FakeDelimiter, "agent assistant ai model bot llm",
		`(?:agent|assistant|ai|model|bot|llm)'s (?:\w+ ){0,2}(?:task|step|job|instructions?|orders?|goal|mission|objective|directive)s? ?:`,
		withPre(func(v string, i int) bool { return strings.Contains(v[i:min(len(v), i+12)], "'s ") }),
		withBefore(func(v string, i int) bool { return closing.MatchString(v[max(0, i-120):i]) }))
	hanBracket := &rule{cat: FakeDelimiter, re: compile(`(?:管理者|管理员|系统|系統|システム|開発者|开发者|運営)?(?:指示|指令|命令)[\]］】]`),
		pre: func(v string, i int) bool {
			b := v[max(0, i-12):i]
			return strings.ContainsAny(b, "[【") || strings.Contains(b, "［")
		}}
	// 【ここからシステム管理者の指示】: a longer heading in the bracket, which
	// must then name who gives the orders.
	hanHeading := &rule{cat: FakeDelimiter, re: compile(`[^\]］】\n]{0,8}?(?:管理者|管理员|系统|系統|システム|開発者|开发者|運営|AI|ＡＩ|アシスタント|助手)[^\]］】\n]{0,8}?(?:指示|指令|命令)[\]］】]`),
		pre: func(v string, i int) bool {
			b := v[max(0, i-15):i]
			return strings.Contains(b, "【") || strings.Contains(b, "［") || strings.Contains(b, "[")
		}}
	for _, c := range "管系シ開开運ア助" {
		runeAnchors[c] = append(runeAnchors[c], hanHeading)
	}
	for _, c := range "管系シ開开運指命" {
		runeAnchors[c] = append(runeAnchors[c], hanBracket)
	}
}

func bannerLineOrAddress(v string, i int) bool {
	if bannerLine(v, i) {
		return true
	}
	// forReader ends at a colon; most instruction nouns have none after.
	w := v[i:min(len(v), i+120)]
	return (strings.IndexByte(w, ':') >= 0 || strings.Contains(w, "：")) && forReader.MatchString(w)
}

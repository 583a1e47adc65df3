package detect

import (
	"regexp"
	"strings"
)

// Data goes out by names as well as by addresses: a host name whose first
// label is to be the secret ("<value of AWS_SECRET_ACCESS_KEY>.chk.x"), a
// public gist or paste site that anyone can read.

func init() {
	publicSinkRules()
}

// identityHost is a placeholder that names the owner of a site, as
// documentation writes it: <username>.github.io, {tenant}.example.com.
var identityHost = regexp.MustCompile(`(?i)^[<{\[]{1,2} ?(?:your[-_ ]?|my[-_ ]?)?(?:user|username|account|name|org|organi[sz]ation|tenant|project|app|site|team|company|bucket|store|shop|subdomain|domain|host|hostname|region|env|environment|stage|workspace|instance)(?:[-_ ]?(?:name|id|slug))? ?[>}\]]`)

// notIdentityHost reports whether the placeholder host at start names
// data, not the site's owner.
func notIdentityHost(v string, start, _ int) bool {
	return !identityHost.MatchString(v[start:min(len(v), start+48)])
}

// secretWords name what a placeholder host would carry out.
var secretWords = regexp.MustCompile(`(?i)secret|token|api[ _-]?key|access[ _-]?key|private|passw|credential|cookie|session|ssn|otp|history|conversation|chat|prompt|card|iban`)

// publishVerb is an order to put data somewhere.
var publishVerb = regexp.MustCompile(`(?i)\b(?:paste|post|upload|publish|put|dump|share|copy|save|commit|push|send)\b`)

// sinkPrep is how the sink is reached, just before it: "into a new
// public", "to a", "on".
var sinkPrep = regexp.MustCompile(`(?i)\b(?:into|to|on|in|as|at)\s+(?:a |an |the |some )?(?:(?:new|brand-new|fresh|public|open|shared|anonymous|unlisted|world-readable)\s+){0,3}$`)

func publicSinkRules() {
	// A placeholder for a secret as the first label of a host, in words:
	// "<value of AWS_SECRET_ACCESS_KEY>.chk.attacker-dns.example".
	label := func(open, close byte) *rule {
		return re(Exfiltration, `\`+string(open)+`[^<>{}\[\]\n]{3,60}\`+string(close)+`\.(?:[\w-]+\.)+[a-z]{2,}\b`,
			withPre(func(v string, i int) bool {
				return strings.Contains(v[i:min(len(v), i+64)], string(close)+".")
			}),
			withAfter(func(v string, start, end int) bool {
				return secretWords.MatchString(v[start:end]) && notIdentityHost(v, start, end)
			}))
	}
	onPunct('<', label('<', '>'))
	onPunct('{', label('{', '}'))
	onPunct('[', label('[', ']'))
	// Private data pasted where the public reads it: a new public gist,
	// a paste site, a public channel. The sink is the rare word, so the
	// rule starts there and looks back for the verb and the data.
	sinks := "gist gists pastebin hastebin paste pastes public"
	on(Exfiltration, sinks,
		`(?:gists?|pastebin|hastebin|pastes?|public (?:repo(?:sitory)?|channel|page|post|issue|comment|bucket|link|forum|doc(?:ument)?|wiki|url|site|gist|paste))\b`,
		withNext("public", "repo repository channel page post issue comment bucket link forum doc document wiki url site gist paste"),
		withAfter(func(v string, start, _ int) bool {
			before := v[sentenceStart(v, start, 200):start]
			m := publishVerb.FindStringIndex(before)
			return m != nil && sinkPrep.MatchString(before) && sensitiveBefore.MatchString(before[m[1]:])
		}))
}

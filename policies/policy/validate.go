package policy

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/airlock/airlock/images/imageref"
)

// Enum values of the profile's string fields.
const (
	// ToolsAllowlist allows only the listed tools.
	ToolsAllowlist = "allowlist"
	// ToolsDenylist allows every known tool but the listed ones.
	ToolsDenylist = "denylist"
	// ExecDeny runs no command.
	ExecDeny = "deny"
	// ExecAllowlist runs only commands matching Exec.AllowedPatterns.
	ExecAllowlist = "allowlist"
	// ExecFull runs any command; development mode only.
	ExecFull = "full"
	// AskOff never asks for approval.
	AskOff = "off"
	// AskOnMiss asks when a command matches no allowed pattern.
	AskOnMiss = "on-miss"
	// AskAlways asks before every command.
	AskAlways = "always"
	// AskFallbackDeny denies a command whose approval nobody gave.
	AskFallbackDeny = "deny"
	// NetworkNone leaves the job with loopback only.
	NetworkNone = "none"
	// NetworkAllowlist routes the job through the egress proxy.
	NetworkAllowlist = "allowlist"
	// SeccompDefault is the runtime's default seccomp profile.
	SeccompDefault = "default"
	// SeccompStrict is Airlock's narrower seccomp profile.
	SeccompStrict = "strict"
	// RuntimeRunc is the default OCI runtime.
	RuntimeRunc = "runc"
	// RuntimeCrun is crun, runc's faster kin, where installed.
	RuntimeCrun = "crun"
	// RuntimeRunsc is gVisor, where installed.
	RuntimeRunsc = "runsc"
	// PlatformPtrace and PlatformKVM are how gVisor's sentry traps system
	// calls: ptrace everywhere, kvm where the host serves /dev/kvm.
	PlatformPtrace = "ptrace"
	PlatformKVM    = "kvm"
)

// RuntimeNeeds is what each runtime needs on the host's PATH, and how to
// install it, for airlockd and airlock doctor to say.
var RuntimeNeeds = map[string]struct{ Binary, Install string }{
	RuntimeRunc:  {"runc", "apt-get install runc"},
	RuntimeCrun:  {"crun", "apt-get install crun"},
	RuntimeRunsc: {"runsc", "apt-get install runsc"},
}

// Bounds on limits. The maxima are sane for one job on a small host; a
// profile that needs more is better split into smaller jobs.
const (
	minMemory, maxMemory             = 4 * Mi, 16 * Gi
	minPids, maxPids                 = 1, 4096
	minCPU, maxCPU                   = 0.01, 16
	minTimeout, maxTimeout           = time.Second, time.Hour
	minOutput, maxOutput             = Ki, 16 * Mi // the sanitizer must scan all of it
	minScratch, maxScratch           = Mi, 4 * Gi  // tmpfs size 0 would mean unbounded
	minStringLength, maxStringLength = 16, 1 << 20

	maxModelTurns                  = 64
	maxModelToolCalls              = 256
	maxModelInputTokens            = 10_000_000
	maxModelOutputTokens           = 1_000_000
	minReplyBytes, maxReplyBytes   = Ki, 64 * Mi
	maxModelNameBytes, maxAllowed  = 200, 32
	maxHeaders, maxHeaderValueSize = 16, 1024
)

// grantableCaps are the capabilities a profile may add. SETUID, SETGID,
// SETPCAP, SETFCAP and DAC_OVERRIDE are absent on purpose: any of them lets
// a non-root agent become root in effect.
var grantableCaps = []string{
	"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
}

// config holds what Options set.
type config struct {
	devMode bool
	// checkSchema compiles a result schema. Policy cannot import the result
	// package (that would link the JSON-schema library into the sandbox),
	// so the loader's caller supplies it.
	checkSchema func(schema string) error
	// schemaChecked is set by Tighten: the default schema was checked when
	// the profile was loaded, and Tighten never changes it.
	schemaChecked bool
}

// pos is where a value was written.
type pos struct {
	file string
	line int
}

// checker collects every problem, located by at, so that an operator fixes
// a file in one pass.
type checker struct {
	cfg  config
	at   func(field string) pos
	errs []error
}

func (c *checker) fail(field, format string, args ...any) {
	p := c.at(field)
	c.errs = append(c.errs, &FieldError{File: p.file, Line: p.line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) enum(field, v string, want ...string) bool {
	if slices.Contains(want, v) {
		return true
	}
	c.fail(field, "unknown value %q (want %s)", v, strings.Join(want, "|"))
	return false
}

func (c *checker) bytes(field string, v, lo, hi int64) {
	switch {
	case v <= 0:
		c.fail(field, "must be positive; an unset limit never means unlimited")
	case v < lo:
		c.fail(field, "%s is below the minimum %s", FormatBytes(v), FormatBytes(lo))
	case v > hi:
		c.fail(field, "%s is above the maximum %s", FormatBytes(v), FormatBytes(hi))
	}
}

// validate checks every rule on a resolved profile. It is the single source
// of the rules: Load runs it with source positions, and Tighten and tests
// run it with none.
func validate(p *Profile, cfg config, at func(field string) pos) []error {
	if at == nil {
		at = func(string) pos { return pos{} }
	}
	c := &checker{cfg: cfg, at: at}
	if !ValidLabel(p.Name) {
		c.fail("name", "%q is not a valid profile name (want lowercase letters, digits and inner hyphens)", p.Name)
	}
	checkTools(c, &p.Tools)
	checkExec(c, &p.Exec)
	checkNetwork(c, &p.Network)
	checkLimits(c, &p.Limits)
	checkIsolation(c, &p.Isolation)
	if p.Model != nil {
		checkModel(c, p.Model, &p.Network)
	}
	if p.Agent != nil {
		checkAgent(c, p)
	}
	if v := p.Result.MaxStringLength; v < minStringLength || v > maxStringLength {
		c.fail("result.maxStringLength", "%d is not in %d-%d", v, minStringLength, maxStringLength)
	}
	switch {
	case p.Result.DefaultSchema == "" || cfg.schemaChecked:
	case cfg.checkSchema == nil:
		// Fail closed: a schema nobody compiled could be one no result
		// ever fits, or one that fetches documents.
		c.fail("result.defaultSchema", "no schema compiler was given to Load (WithSchemaCheck); refusing an unchecked schema")
	default:
		if err := cfg.checkSchema(p.Result.DefaultSchema); err != nil {
			c.fail("result.defaultSchema", "%v", err)
		}
	}
	for i, pat := range p.Result.RedactPatterns {
		if _, err := regexp.Compile(pat); err != nil {
			c.fail(fmt.Sprintf("result.redactPatterns[%d]", i), "not a valid regular expression: %v", err)
		} else if regexp.MustCompile(pat).MatchString("") {
			c.fail(fmt.Sprintf("result.redactPatterns[%d]", i), "matches the empty string, so it would redact everywhere")
		}
	}
	return c.errs
}

func checkTools(c *checker, t *Tools) {
	c.enum("tools.policy", t.Policy, ToolsAllowlist, ToolsDenylist)
	for _, list := range []struct {
		field string
		names []string
	}{{"tools.allowed", t.Allowed}, {"tools.denied", t.Denied}} {
		field := list.field
		for i, n := range list.names {
			if !validToolName(n) {
				if strings.HasPrefix(strings.ToLower(n), groupPrefix) {
					c.fail(fmt.Sprintf("%s[%d]", field, i), "unknown group %q (want %s)", n, strings.Join(ToolGroups(), "|"))
				} else {
					c.fail(fmt.Sprintf("%s[%d]", field, i), "%q is not a tool name", n)
				}
			}
		}
	}
	if t.Policy == ToolsDenylist && len(t.Allowed) > 0 {
		c.fail("tools.allowed", "has no effect with tools.policy denylist; list what to deny in tools.denied")
	}
}

func checkExec(c *checker, e *Exec) {
	if c.enum("exec.security", e.Security, ExecDeny, ExecAllowlist, ExecFull) && e.Security == ExecFull && !c.cfg.devMode {
		c.fail("exec.security", "full lets the agent run any command; it loads only when the broker runs in development mode")
	}
	for i, pat := range e.AllowedPatterns {
		if pat == "" || len(pat) > 256 || strings.ContainsFunc(pat, isControl) {
			c.fail(fmt.Sprintf("exec.allowedPatterns[%d]", i), "want a non-empty pattern of at most 256 characters, without control characters")
		}
	}
	if len(e.AllowedPatterns) > 0 && e.Security != ExecAllowlist {
		c.fail("exec.allowedPatterns", "has no effect unless exec.security is allowlist")
	}
	if c.enum("exec.ask", e.Ask, AskOff, AskOnMiss, AskAlways) && e.Ask != AskOff && e.Security == ExecDeny {
		c.fail("exec.ask", "%s has no effect when exec.security is deny; set off", e.Ask)
	}
	// Jobs run unattended: an unanswered approval can only be a denial.
	c.enum("exec.askFallback", e.AskFallback, AskFallbackDeny)
}

func checkNetwork(c *checker, n *Network) {
	c.enum("network.mode", n.Mode, NetworkNone, NetworkAllowlist)
	for i, e := range n.Egress {
		r, err := ParseEgress(e)
		if err != nil {
			c.fail(fmt.Sprintf("network.egress[%d]", i), "%v (want host[:port] or *.suffix[:port], port 1-65535)", err)
			continue
		}
		// The proxy serves that domain's names as service aliases only;
		// an entry there would allow nothing, and read as if it did.
		if inServiceDomain(r.Host) {
			c.fail(fmt.Sprintf("network.egress[%d]", i), "%s is under %s, the domain of service aliases: name a service in network.services instead", r, ServiceDomain)
		}
	}
	if n.Mode == NetworkNone && len(n.Egress) > 0 {
		c.fail("network.egress", "has no effect with network.mode none; set mode allowlist or remove the entries")
	}
	if n.Mode == NetworkNone && len(n.Services) > 0 {
		c.fail("network.services", "need network.mode allowlist, since they are reached through the egress proxy")
	}
	for _, alias := range sortedKeys(n.Services) {
		checkService(c, "network.services."+alias, alias, n.Services[alias])
	}
}

// checkService never quotes the upstream or the secret reference: either
// may hold the very secret that the rule is about.
func checkService(c *checker, field, alias string, s Service) {
	if !ValidLabel(alias) {
		c.fail(field, "alias %q is not a DNS label (want lowercase letters, digits and inner hyphens)", alias)
	}
	u, err := url.Parse(s.Upstream)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		c.fail(field+".upstream", "want an absolute URL such as https://api.example.com")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		c.fail(field+".upstream", "must not carry userinfo, a query or a fragment: a credential there would be a literal secret; use inject")
	case u.Scheme == "http" && !c.cfg.devMode:
		c.fail(field+".upstream", "http sends the injected credential in clear; use https (http loads only in development mode)")
	case u.Scheme != "https" && u.Scheme != "http":
		c.fail(field+".upstream", "want an https URL")
	}
	if len(s.Headers) > maxHeaders {
		c.fail(field+".headers", "%d headers, at most %d", len(s.Headers), maxHeaders)
	}
	for _, name := range sortedKeys(s.Headers) {
		hf := field + ".headers." + name
		switch {
		case !validHeader(name):
			c.fail(hf, "want an HTTP header name such as anthropic-version")
		case reservedHeader(name):
			c.fail(hf, "is set by the proxy itself and cannot be fixed")
		case s.Inject.Header != "" && strings.EqualFold(name, s.Inject.Header):
			c.fail(hf, "is the inject header; a fixed value would replace the secret")
		case !validHeaderValue(s.Headers[name]):
			c.fail(hf, "want printable text of at most %d bytes", maxHeaderValueSize)
		}
	}
	in := s.Inject
	if in == (Inject{}) {
		return
	}
	if !validHeader(in.Header) {
		c.fail(field+".inject.header", "want an HTTP header name such as Authorization")
	}
	if !validSecretRef(in.SecretRef) {
		c.fail(field+".inject.secretRef", "want env:NAME or file:/abs/path; a literal secret is refused")
	}
	if !validHeaderValue(in.Prefix) {
		c.fail(field+".inject.prefix", "want printable text such as \"Bearer \"")
	}
}

// reservedHeader reports headers that describe the connection or that the
// proxy sets itself; a profile fixing them would break framing or routing.
func reservedHeader(name string) bool {
	for _, h := range []string{"Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Te", "Trailer", "Upgrade", "Expect"} {
		if strings.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// validHeaderValue accepts printable ASCII and spaces, so that no value can
// split a header or smuggle another.
func validHeaderValue(v string) bool {
	return len(v) <= maxHeaderValueSize && !strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r > '~' })
}

// checkModel refuses a model section that could not work or is unbounded:
// a job with a broken model would only fail later, at a caller's expense.
func checkModel(c *checker, m *Model, n *Network) {
	svc, ok := n.Services[m.Service]
	switch {
	case m.Service == "":
		c.fail("model.service", "is required: the alias in network.services that leads to the model")
	case !ok:
		c.fail("model.service", "%q is not an alias in network.services; the model is reached only through one", m.Service)
	case n.Mode != NetworkAllowlist:
		c.fail("model.service", "needs network.mode allowlist, since the model is reached through the egress proxy")
	}
	if c.enum("model.api", m.API, APIOpenAI, APIAnthropic) && ok && m.API == APIAnthropic && !hasHeader(svc.Headers, "anthropic-version") {
		c.fail("network.services."+m.Service+".headers", "an anthropic model needs a fixed anthropic-version header, such as 2023-06-01")
	}
	if !validModelName(m.Name) {
		c.fail("model.name", "want a model name of 1-%d printable characters without spaces", maxModelNameBytes)
	}
	if len(m.Allowed) > maxAllowed {
		c.fail("model.allowed", "%d names, at most %d", len(m.Allowed), maxAllowed)
	}
	for i, name := range m.Allowed {
		if !validModelName(name) {
			c.fail(fmt.Sprintf("model.allowed[%d]", i), "want a model name of 1-%d printable characters without spaces", maxModelNameBytes)
		}
	}
	count := func(field string, v, lo, hi int64) {
		if v < lo || v > hi {
			c.fail(field, "%d is not in %d-%d; an unset limit never means unlimited", v, lo, hi)
		}
	}
	count("model.maxTurns", int64(m.MaxTurns), 1, maxModelTurns)
	count("model.maxToolCalls", int64(m.MaxToolCalls), 0, maxModelToolCalls)
	count("model.maxInputTokens", m.MaxInputTokens, 1, maxModelInputTokens)
	count("model.maxOutputTokens", m.MaxOutputTokens, 1, maxModelOutputTokens)
	c.bytes("model.maxReplyBytes", m.MaxReplyBytes, minReplyBytes, maxReplyBytes)
}

func hasHeader(h map[string]string, name string) bool {
	for k := range h {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// validModelName keeps a name safe to put in a JSON request, a log line and
// a metric-free audit record.
func validModelName(s string) bool {
	return s != "" && len(s) <= maxModelNameBytes && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' })
}

func checkLimits(c *checker, l *Limits) {
	c.bytes("limits.memory", l.MemoryBytes, minMemory, maxMemory)
	if l.Pids < minPids || l.Pids > maxPids {
		c.fail("limits.pids", "%d is not in %d-%d", l.Pids, minPids, maxPids)
	}
	// Written so that NaN fails too.
	if !(l.CPU >= minCPU && l.CPU <= maxCPU) || math.IsInf(l.CPU, 0) {
		c.fail("limits.cpu", "%g is not in %g-%g cores", l.CPU, minCPU, float64(maxCPU))
	}
	if l.Timeout < minTimeout || l.Timeout > maxTimeout {
		c.fail("limits.timeout", "%s is not in %s-%s", l.Timeout, minTimeout, maxTimeout)
	}
	c.bytes("limits.output", l.OutputBytes, minOutput, maxOutput)
	c.bytes("limits.scratch", l.ScratchBytes, minScratch, maxScratch)
}

func checkIsolation(c *checker, iso *Isolation) {
	if iso.UID == 0 {
		c.fail("isolation.uid", "0 would run the agent as root")
	}
	if iso.GID == 0 {
		c.fail("isolation.gid", "0 would give the agent root's group")
	}
	if !iso.NoNewPrivileges && !c.cfg.devMode {
		c.fail("isolation.noNewPrivileges", "false lets setuid binaries gain privileges; it loads only in development mode")
	}
	for i, cp := range iso.Capabilities {
		if !slices.Contains(grantableCaps, canonicalCap(cp)) {
			c.fail(fmt.Sprintf("isolation.capabilities[%d]", i), "%q cannot be granted (grantable: %s)", cp, strings.Join(grantableCaps, ", "))
		}
	}
	c.enum("isolation.seccomp", iso.Seccomp, SeccompDefault, SeccompStrict)
	c.enum("isolation.runtime", iso.Runtime, RuntimeRunc, RuntimeCrun, RuntimeRunsc)
	if iso.Platform != "" {
		c.enum("isolation.platform", iso.Platform, PlatformPtrace, PlatformKVM)
		if iso.Runtime != RuntimeRunsc {
			c.fail("isolation.platform", "is gVisor's, and the runtime is %s, not runsc", cmp.Or(iso.Runtime, RuntimeRunc))
		}
	}
	for i, m := range iso.MaskedPaths {
		if !path.IsAbs(m) || path.Clean(m) != m || strings.ContainsFunc(m, isControl) {
			c.fail(fmt.Sprintf("isolation.maskedPaths[%d]", i), "%q is not a clean absolute path", m)
		}
	}
	for _, m := range DefaultMaskedPaths() {
		if !slices.Contains(iso.MaskedPaths, m) {
			c.fail("isolation.maskedPaths", "must include %s: a profile can mask more paths, never fewer", m)
		}
	}
}

// canonicalCap spells a capability as the OCI spec does: CAP_ and upper case.
func canonicalCap(s string) string {
	s = strings.ToUpper(s)
	if !strings.HasPrefix(s, "CAP_") {
		s = "CAP_" + s
	}
	return s
}

// validSecretRef accepts env:NAME and file:/abs/path, the only forms the
// broker resolves; anything else is most likely the secret itself.
func validSecretRef(s string) bool {
	if name, ok := strings.CutPrefix(s, "env:"); ok {
		if name == "" || name[0] >= '0' && name[0] <= '9' {
			return false
		}
		return !strings.ContainsFunc(name, func(r rune) bool {
			return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
		})
	}
	if p, ok := strings.CutPrefix(s, "file:"); ok {
		return path.IsAbs(p) && path.Clean(p) == p && !strings.ContainsFunc(p, isControl)
	}
	return false
}

// validHeader accepts an RFC 9110 token.
func validHeader(s string) bool {
	if s == "" {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r))
	})
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Bounds of agent.command.
const (
	maxAgentArgs     = 64
	maxAgentArgBytes = 4096
)

// checkAgent checks agent.image and agent.command. An imported image runs
// its own rootfs only: it has none of the tools image's audited busybox
// applets, so a profile naming one cannot allow exec, whose commands the
// gateway runs as those applets.
func checkAgent(c *checker, p *Profile) {
	a := p.Agent
	_, _, err := imageref.Parse(a.Image)
	switch {
	case a.Image == "":
		c.fail("agent.image", "is required when the agent section is set: NAME@sha256:DIGEST, as `airlock image list` shows it")
	case errors.Is(err, imageref.ErrNoDigest):
		c.fail("agent.image", "%q has no digest: pin it as %s (see `airlock image list`), so that the profile runs exactly that image", a.Image, imageref.Join(a.Image, imageref.DigestRule))
	case err != nil:
		c.fail("agent.image", "%s is not %s", quoteCapped(a.Image), imageref.RefRule)
	}
	if len(a.Command) > maxAgentArgs {
		c.fail("agent.command", "has %d words; at most %d", len(a.Command), maxAgentArgs)
	}
	for i, w := range a.Command {
		field := fmt.Sprintf("agent.command[%d]", i)
		switch {
		case len(w) > maxAgentArgBytes:
			c.fail(field, "is %d bytes; at most %d", len(w), maxAgentArgBytes)
		case strings.ContainsFunc(w, func(r rune) bool { return r == 0 }):
			c.fail(field, "contains NUL")
		case i == 0 && (!path.IsAbs(w) || path.Clean(w) != w):
			c.fail(field, "%s must be a clean absolute path in the image", quoteCapped(w))
		}
	}
	if p.ExecAllowed() {
		c.fail("agent.image", "a profile running an imported image cannot allow exec (exec.security %s): the gateway runs commands as the tools image's audited applets, which an imported image does not carry; set exec.security: deny", p.Exec.Security)
	}
}

// quoteCapped quotes s, cut to 64 bytes, for an error message.
func quoteCapped(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "..."
	}
	return strconv.Quote(s)
}

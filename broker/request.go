package broker

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies/policy"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// plan is a validated request, ready to run.
type plan struct {
	job    *job.Job
	schema *result.Schema
	// sanitize cleans everything of the job that crosses back: its
	// result, and every string it can influence on the way to the caller,
	// the stream and the audit log.
	sanitize result.SanitizeOptions
}

// plan validates req and resolves its policy. Every failure is an
// ErrInvalidRequest that names the field and says what to change, or the
// profile's refusal of the task; nothing has been made yet.
func (s *Server) plan(req *airlockv1.SpawnRequest) (*plan, error) {
	id, err := jobID(req.GetJobId())
	if err != nil {
		return nil, err
	}
	if err := checkLabels(req.GetLabels()); err != nil {
		return nil, err
	}
	p, err := s.profile(req.GetProfile(), req.GetOverrides())
	if err != nil {
		return nil, err
	}
	task := req.GetTask()
	if err := checkTask(p, task, s.tasks); err != nil {
		return nil, err
	}
	content, err := contentOf(req.GetContent(), p)
	if err != nil {
		return nil, err
	}
	schemaText, schema, err := schemaOf(req.GetResultSchema(), p)
	if err != nil {
		return nil, err
	}
	services, err := s.services(p)
	if err != nil {
		return nil, err
	}
	pl := &plan{
		job: &job.Job{
			ID:      id,
			Image:   p.Image(),
			Task:    task.GetName(),
			Params:  task.GetParams(),
			Content: content,
			// The agent task shapes its answer to the schema; the others
			// are told nothing they do not use.
			Instructions: task.GetInstructions(),
			Schema:       agentSchema(task.GetName(), schemaText),
			Tools:        p.EffectiveTools(policy.KnownTools),
			Policy:       p,
			Services:     services,
		},
		schema: schema,
	}
	pl.sanitize = s.sanitizeOptions(pl.job)
	return pl, nil
}

// jobID is the caller's idempotency key, or a fresh one. A refused key is
// described, never echoed: it may be megabytes, or text meant for a
// terminal or a log reader.
func jobID(id string) (string, error) {
	if id == "" {
		return uuid.NewString(), nil
	}
	if len(id) > maxJobIDBytes || !jobIDPattern.MatchString(id) {
		return "", badField("job_id", "job_id must be 1-%d characters of letters, digits, '.', '_' or '-', starting with a letter or digit; got %s",
			maxJobIDBytes, describeValue(id, isJobIDByte))
	}
	return id, nil
}

// Bounds on a request's labels, which the audit log records as they are:
// Kubernetes' rules for label keys and values, and a count.
const (
	maxJobIDBytes       = 128
	maxLabels           = 32
	maxLabelNameBytes   = 63  // a value, and a key's name part
	maxLabelPrefixBytes = 253 // a key's DNS prefix, before '/'
	// maxShownValueBytes caps the prefix of a refused value that an error
	// quotes.
	maxShownValueBytes = 16
)

// checkLabels refuses labels that are too many, or whose keys or values
// are not Kubernetes-style label keys and values: [prefix/]name, the
// prefix a lowercase DNS subdomain of at most 253 bytes, the name and the
// value at most 63 bytes of letters, digits, '-', '_' and '.', starting
// and ending with a letter or digit (a value may be empty). The audit log
// and its readers then never see control characters, markup or megabytes
// the caller chose.
func checkLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return badField("labels", "labels has %d entries; at most %d", len(labels), maxLabels)
	}
	// Sorted, so that the same request is always refused for the same label.
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := checkLabelKey(k); err != nil {
			return badField("labels", "labels: a key of %s: %v; a key is [prefix/]name, the prefix a lowercase DNS name of at most %d bytes, the name 1-%d letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
				describeValue(k, isLabelKeyByte), err, maxLabelPrefixBytes, maxLabelNameBytes)
		}
		// The key passed, so it may be quoted whole.
		if v := labels[k]; v != "" && !isLabelName(v) {
			return badField("labels", "labels[%q]: the value must be at most %d letters, digits, '-', '_' or '.', starting and ending with a letter or digit; got %s",
				k, maxLabelNameBytes, describeValue(v, isLabelNameByte))
		}
	}
	return nil
}

// checkLabelKey checks one label key, saying which part is wrong.
func checkLabelKey(k string) error {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		prefix, name = "", k
	}
	if hasPrefix && !isDNSSubdomain(prefix) {
		return errors.New("the prefix is not a lowercase DNS name")
	}
	if !isLabelName(name) {
		return errors.New("the name is not 1-63 letters, digits, '-', '_' or '.' between a letter or digit at each end")
	}
	return nil
}

// isLabelName reports whether s is a Kubernetes label name (or non-empty
// label value).
func isLabelName(s string) bool {
	if s == "" || len(s) > maxLabelNameBytes || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLabelNameByte(s[i]) {
			return false
		}
	}
	return true
}

// isDNSSubdomain reports whether s is a lowercase RFC 1123 subdomain.
func isDNSSubdomain(s string) bool {
	if s == "" || len(s) > maxLabelPrefixBytes {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" || len(part) > 63 || !isLowerAlnum(part[0]) || !isLowerAlnum(part[len(part)-1]) {
			return false
		}
		for i := 0; i < len(part); i++ {
			if c := part[i]; !isLowerAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool      { return isLowerAlnum(c) || c >= 'A' && c <= 'Z' }
func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
func isLabelNameByte(c byte) bool {
	return isAlnum(c) || c == '-' || c == '_' || c == '.'
}
func isLabelKeyByte(c byte) bool { return isLabelNameByte(c) || c == '/' }
func isJobIDByte(c byte) bool    { return isLabelNameByte(c) }

// Bounds on the egress a request may narrow its profile to: entries are
// host[:port] patterns, and a profile never needs more.
const (
	maxEgressOverrides     = 64
	maxEgressOverrideBytes = 261 // a DNS name, a colon and a port
	// maxShownErrorBytes caps a parser's error quoted back to the caller.
	maxShownErrorBytes = 512
)

// checkEgressOverrides bounds overrides.egress before anything parses it:
// its count, and each entry's length and characters (printable ASCII, no
// space), so that no error about it repeats much of the caller's text.
func checkEgressOverrides(egress []string) error {
	if len(egress) > maxEgressOverrides {
		return badField("overrides.egress", "overrides.egress has %d entries; at most %d", len(egress), maxEgressOverrides)
	}
	for i, e := range egress {
		if e == "" || len(e) > maxEgressOverrideBytes || strings.IndexFunc(e, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
			return badField(fmt.Sprintf("overrides.egress[%d]", i), "overrides.egress[%d] must be a host[:port] pattern of 1-%d printable ASCII characters; got %s",
				i, maxEgressOverrideBytes, describeValue(e, isPrintableByte))
		}
	}
	return nil
}

func isPrintableByte(c byte) bool { return c > ' ' && c <= '~' }

// quoteName quotes a name the caller sent (a profile, a task, a job ID)
// when it is short and plain, and otherwise describes it without
// repeating it.
func quoteName(s string) string {
	if s != "" && len(s) <= maxJobIDBytes && strings.IndexFunc(s, func(r rune) bool { return r >= utf8.RuneSelf || !isLabelNameByte(byte(r)) }) < 0 {
		return strconv.Quote(s)
	}
	return "(" + describeValue(s, isLabelNameByte) + ")"
}

// boundedError is err's message on one line, cut to maxShownErrorBytes: a
// parser's error can quote what it was given.
func boundedError(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if len(msg) > maxShownErrorBytes {
		cut := maxShownErrorBytes
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	return strings.ToValidUTF8(msg, "?")
}

// describeValue describes a refused value without repeating it: its
// length, the first byte outside the field's characters, and a short
// quoted prefix in which every byte outside them is '?'. The value is the
// caller's, but the message also reaches logs and terminals.
func describeValue(s string, ok func(byte) bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d bytes", len(s))
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			fmt.Fprintf(&b, ", byte %d is %#02x", i, s[i])
			break
		}
	}
	prefix := []byte(s[:min(len(s), maxShownValueBytes)])
	for i, c := range prefix {
		if !ok(c) {
			prefix[i] = '?'
		}
	}
	more := ""
	if len(s) > len(prefix) {
		more = "..."
	}
	fmt.Fprintf(&b, ", starting %q%s", prefix, more)
	return b.String()
}

// profile resolves the named profile (the default when unnamed) and
// tightens it with the request's overrides, which may never loosen it.
func (s *Server) profile(name string, ov *airlockv1.Overrides) (*policy.Profile, error) {
	if name == "" {
		name = s.defaultProfile
	}
	base, err := s.profiles.Get(name)
	if err != nil {
		return nil, badField("profile", "unknown profile %s; known profiles: %v", quoteName(name), s.profiles.Names())
	}
	var o policy.Overrides
	if ov != nil {
		if ov.GetTimeout() != nil {
			if err := ov.GetTimeout().CheckValid(); err != nil || ov.GetTimeout().AsDuration() <= 0 {
				return nil, badField("overrides.timeout", "overrides.timeout must be a positive duration")
			}
			o.Timeout = ov.GetTimeout().AsDuration()
		}
		if ov.GetMemoryBytes() < 0 {
			return nil, badField("overrides.memory_bytes", "overrides.memory_bytes must not be negative")
		}
		if ov.GetOutputBytes() < 0 {
			return nil, badField("overrides.output_bytes", "overrides.output_bytes must not be negative")
		}
		o.MemoryBytes = ov.GetMemoryBytes()
		o.OutputBytes = ov.GetOutputBytes()
		if err := checkEgressOverrides(ov.GetEgress()); err != nil {
			return nil, err
		}
		o.Egress = ov.GetEgress()
		if m := ov.GetModel(); m != nil {
			o.Model, o.MaxTurns, o.MaxToolCalls = m.GetName(), int(m.GetMaxTurns()), int(m.GetMaxToolCalls())
			o.MaxInputTokens, o.MaxOutputTokens = m.GetMaxInputTokens(), m.GetMaxOutputTokens()
		}
	}
	p, err := base.Tighten(o)
	if err != nil {
		return nil, badField(overrideField(base, o), "overrides: %s", boundedError(err))
	}
	return p, nil
}

// overrideField names the override Tighten refused, checking in Tighten's
// order; "overrides" when it is their combination.
func overrideField(base *policy.Profile, o policy.Overrides) string {
	switch {
	case o.Timeout > base.Limits.Timeout:
		return "overrides.timeout"
	case o.MemoryBytes > base.Limits.MemoryBytes:
		return "overrides.memory_bytes"
	case o.OutputBytes > base.Limits.OutputBytes:
		return "overrides.output_bytes"
	}
	if m := base.Model; m != nil || o.Model != "" {
		for _, f := range []struct {
			name string
			o    policy.Overrides
		}{
			{"name", policy.Overrides{Model: o.Model}},
			{"max_turns", policy.Overrides{MaxTurns: o.MaxTurns}},
			{"max_tool_calls", policy.Overrides{MaxToolCalls: o.MaxToolCalls}},
			{"max_input_tokens", policy.Overrides{MaxInputTokens: o.MaxInputTokens}},
			{"max_output_tokens", policy.Overrides{MaxOutputTokens: o.MaxOutputTokens}},
		} {
			if _, err := base.Tighten(f.o); err != nil {
				return "overrides.model." + f.name
			}
		}
	} else if o.MaxTurns != 0 || o.MaxToolCalls != 0 || o.MaxInputTokens != 0 || o.MaxOutputTokens != 0 {
		return "overrides.model"
	}
	for i, e := range o.Egress {
		if _, err := base.Tighten(policy.Overrides{Egress: []string{e}}); err != nil {
			return fmt.Sprintf("overrides.egress[%d]", i)
		}
	}
	return "overrides"
}

// contentOf copies the request's content into the job, within the bounds
// of the broker's memory and disk; a url item must be one the job's
// egress lets the sandbox fetch.
func contentOf(items []*airlockv1.Content, p *policy.Profile) ([]job.Content, error) {
	if len(items) == 0 {
		return nil, badField("content", "content is required")
	}
	if len(items) > maxContentItems {
		return nil, badField("content", "%d content items; at most %d", len(items), maxContentItems)
	}
	var total int
	over := -1 // the item that takes the total over the bound
	content := make([]job.Content, 0, len(items))
	for i, c := range items {
		if n := len(c.GetData()); n > job.MaxContentItemBytes {
			return nil, badField(fmt.Sprintf("content[%d].data", i), "content[%d] is %d bytes; an item may be at most %d, the most the agent reads: split it into several items or jobs", i, n, job.MaxContentItemBytes)
		}
		if c.GetUrl() != "" {
			if err := checkContentURL(i, c, p); err != nil {
				return nil, err
			}
		}
		total += len(c.GetData())
		if total > maxContentBytes && over < 0 {
			over = i
		}
		content = append(content, job.Content{Data: c.GetData(), MediaType: c.GetMediaType(), Source: c.GetSource(), URL: c.GetUrl()})
	}
	if over >= 0 {
		return nil, badField(fmt.Sprintf("content[%d].data", over), "content is %d bytes; at most %d in all: split it over several jobs", total, maxContentBytes)
	}
	return content, nil
}

// checkContentURL refuses a url item the sandbox could not fetch: one with
// data too, one that is not an absolute http or https URL, one under a
// profile without egress, or one whose host and port no egress entry of
// the job allows. The proxy checks every request again, redirects too.
// A refused URL is described, never echoed.
func checkContentURL(i int, c *airlockv1.Content, p *policy.Profile) error {
	field := fmt.Sprintf("content[%d].url", i)
	if len(c.GetData()) > 0 {
		return badField(field, "%s: content[%d] has both data and a url: give one", field, i)
	}
	u, err := job.ParseFetchURL(c.GetUrl())
	if err != nil {
		return badField(field, "%s: %s", field, strings.TrimPrefix(err.Error(), job.ErrBadParam.Error()+": "))
	}
	if p.Network.Mode != policy.NetworkAllowlist {
		return badField(field, "%s: profile %s has network.mode %s; a url is fetched by the sandbox through the egress proxy, which only network.mode allowlist has: send the bytes as data, or use a profile with egress", field, p.Name, p.Network.Mode)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return badField(field, "%s: the port is not in 1-65535", field)
	}
	if p.EgressEntry(u.Hostname(), uint16(n)) != "" {
		return nil
	}
	return badField(field, "%s: its host and port are not among the job's egress entries (profile %s, narrowed by overrides.egress): the proxy would refuse the fetch", field, p.Name)
}

// schemaOf compiles the request's result schema, or the profile's default,
// and returns its text with it.
func schemaOf(text string, p *policy.Profile) (string, *result.Schema, error) {
	if text == "" {
		text = p.Result.DefaultSchema
	}
	if text == "" {
		return "", nil, badField("result_schema", "result_schema is required: profile %s has no default schema", p.Name)
	}
	if len(text) > maxSchemaBytes {
		return "", nil, badField("result_schema", "result_schema is longer than %d bytes", maxSchemaBytes)
	}
	schema, err := result.CompileSchema(text)
	if err != nil {
		return "", nil, badField("result_schema", "result_schema: %s", boundedError(err))
	}
	return text, schema, nil
}

// agentSchema is the schema text the agent task is given; nil for a task
// that does not shape its answer to one.
func agentSchema(task, text string) []byte {
	if task != TaskAgent {
		return nil
	}
	return []byte(text)
}

// services resolves the profile's service aliases. A secret that cannot be
// read fails the request before any sandbox starts: an alias must never be
// forwarded without its credential.
func (s *Server) services(p *policy.Profile) (map[string]job.Service, error) {
	if len(p.Network.Services) == 0 {
		return nil, nil
	}
	if s.resolveSecret == nil {
		return nil, fmt.Errorf("%w: profile %s uses service aliases but this broker has no secret source", ErrPrecondition, p.Name)
	}
	out := make(map[string]job.Service, len(p.Network.Services))
	for alias, svc := range p.Network.Services {
		var secret []byte
		if svc.Inject.SecretRef != "" {
			v, err := s.resolveSecret(svc.Inject.SecretRef)
			if err != nil {
				return nil, fmt.Errorf("%w: service %s of profile %s: %v", ErrPrecondition, alias, p.Name, err)
			}
			secret = v
		}
		out[alias] = job.Service{Upstream: svc.Upstream, Header: svc.Inject.Header, Prefix: svc.Inject.Prefix, Secret: secret, Headers: svc.Headers}
	}
	return out, nil
}

// TaskAgent is the reference agent's model-driven task.
const TaskAgent = "agent"

// checkInstructions refuses instructions where no model reads them, and an
// agent task the profile gives no model or the caller gives no
// instructions. The instructions are the caller's own words and go to the
// model as such; they are bounded and must be text.
func checkInstructions(p *policy.Profile, task *airlockv1.Task) error {
	in := task.GetInstructions()
	if task.GetName() != TaskAgent {
		if in != "" {
			return badField("task.instructions", "task.instructions is only for the agent task, not %s; use task.params", task.GetName())
		}
		return nil
	}
	if p.Model == nil {
		return &taskError{profile: p.Name, task: TaskAgent, msg: fmt.Sprintf("task agent needs a model, and profile %s has no model section", p.Name)}
	}
	switch {
	case strings.TrimSpace(in) == "":
		return badField("task.instructions", "task.instructions is required for the agent task: say what the model should do with the content")
	case len(in) > maxInstructionsBytes:
		return badField("task.instructions", "task.instructions is %d bytes; at most %d (put documents in content)", len(in), maxInstructionsBytes)
	case !utf8.ValidString(in) || strings.ContainsRune(in, 0):
		return badField("task.instructions", "task.instructions must be UTF-8 text without NUL")
	}
	return nil
}

// checkTask checks the task's form and bounds, then refuses a task the
// profile's tool policy rules out: a task that is itself a tool
// (extract_text, fetch, ...) must be one of the job's tools, and run,
// which only makes tool calls, needs a tool gateway.
func checkTask(p *policy.Profile, task *airlockv1.Task, specs []job.TaskSpec) error {
	name := task.GetName()
	if !taskNamePattern.MatchString(name) {
		return badField("task.name", "task.name %s must be a lowercase task name such as summarize", quoteName(name))
	}
	if p.Agent != nil {
		// An imported agent's tasks are its own, and it checks their
		// params; the broker still bounds them, and the tool policy below
		// still applies.
		specs = []job.TaskSpec{{Name: name, Doc: "a task of the profile's agent image", AnyParams: true}}
	}
	if !slices.ContainsFunc(specs, func(s job.TaskSpec) bool { return s.Name == name }) {
		return badField("task.name", "%v", job.CheckTask(specs, name, nil))
	}
	if err := checkInstructions(p, task); err != nil {
		return err
	}
	if name == "run" {
		if !p.ToolGateway() {
			return &taskError{profile: p.Name, task: name, msg: fmt.Sprintf("task run makes tool calls, and profile %s allows none that the broker decides (exec, %s)",
				p.Name, strings.Join(policy.GatewayTools, ", "))}
		}
	} else if slices.Contains(policy.KnownTools, name) && !slices.Contains(p.EffectiveTools(policy.KnownTools), name) {
		return &taskError{profile: p.Name, task: name, msg: fmt.Sprintf("task %s is a tool that profile %s does not allow (its tools: %s)",
			name, p.Name, strings.Join(p.EffectiveTools(policy.KnownTools), ", "))}
	}
	if len(task.GetParams()) > maxParams {
		return badField("task.params", "task.params has %d entries; at most %d", len(task.GetParams()), maxParams)
	}
	for k, v := range task.GetParams() {
		if len(k)+len(v) > maxParamBytes {
			return badField("task.params", "task.params[%s] is longer than %d bytes", quoteName(k), maxParamBytes)
		}
	}
	// Bounded above, so the checks parse little; a param's value is the
	// caller's own, and the error may quote it back.
	if err := job.CheckTask(specs, name, task.GetParams()); err != nil {
		field := "task.params"
		if te, ok := err.(*job.TaskError); ok && te.Param != "" {
			field = "task.params[" + te.Param + "]"
		}
		return badField(field, "%v", err)
	}
	return nil
}

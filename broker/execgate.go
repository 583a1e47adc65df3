package broker

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/bidi"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies/execpolicy"
	"github.com/airlock/airlock/policies/policy"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// Bounds on what one job's commands cost the broker and the caller. The
// gateway also rate-limits requests; these bound what gets past it.
const (
	// DefaultApprovalTimeout is how long a command waits for Approve.
	DefaultApprovalTimeout = 60 * time.Second
	// maxPendingApprovals caps one job's unanswered approval requests: a
	// job cannot bury its caller in prompts.
	maxPendingApprovals = 4
	// maxApprovalRequests caps one job's approval requests in all; later
	// ones fall back without asking.
	maxApprovalRequests = 64
	// maxExecRecords caps the decisions kept for the response; the audit
	// record still counts every one.
	maxExecRecords = 256
	// maxShownArgs and maxShownArgRunes cap the words of a command shown
	// to the caller: they are the hostile job's words. A command asked
	// about must fit them whole, rendered, or it is denied unasked.
	maxShownArgs     = 64
	maxShownArgRunes = 1024
	// maxReasonRunes caps a decision's reason: the broker's words around
	// the job's, quoted.
	maxReasonRunes = 512
)

// gateVerdict is what the profile alone says of a call, before anyone is
// asked. The zero value denies, so a path that forgets to decide refuses.
type gateVerdict int

const (
	gateDeny  gateVerdict = iota // refused by the profile; nobody is asked
	gateAllow                    // allowed by the profile
	gateAsk                      // the caller decides, or exec.askFallback
)

// execVerdict is the API's verdict for a decision the profile made alone.
func (v gateVerdict) execVerdict() airlockv1.ExecVerdict {
	if v == gateAllow {
		return airlockv1.ExecVerdict_EXEC_VERDICT_ALLOWED
	}
	return airlockv1.ExecVerdict_EXEC_VERDICT_DENIED
}

// execGate decides one job's commands. It lives as long as the job's run,
// and answers every request still pending with the fallback when closed.
type execGate struct {
	jobID  string
	policy *policy.Profile
	// tools are the job's effective tools, as its job.json lists them.
	tools       []string
	interactive bool
	timeout     time.Duration
	emit        func(*airlockv1.SpawnStreamResponse)
	sanitize    result.SanitizeOptions

	mu sync.Mutex
	// deadline is when the job will be killed: from the gate's making
	// until the task starts (earlier than the truth), then from the
	// start. An approval never waits past it.
	deadline time.Time
	closed   bool
	seq      int
	asked    int
	pending  map[string]chan airlockv1.ApprovalDecision
	records  []*airlockv1.ExecDecision
	counts   map[string]int
	dropped  int
	// calls counts every request decided; maxCalls, when positive, refuses
	// those past it (the agent task's model.maxToolCalls), when negative
	// refuses all, and limitHit says one was refused.
	calls    int
	maxCalls int
	limitHit bool
	closing  chan struct{}
}

func newExecGate(jobID string, p *policy.Profile, interactive bool, timeout time.Duration, emit func(*airlockv1.SpawnStreamResponse), opts result.SanitizeOptions) *execGate {
	if opts.MaxStringLength <= 0 || opts.MaxStringLength > maxShownArgRunes {
		opts.MaxStringLength = maxShownArgRunes
	}
	return &execGate{
		jobID: jobID, policy: p, tools: p.EffectiveTools(policy.KnownTools), interactive: interactive, timeout: timeout, emit: emit, sanitize: opts,
		deadline: time.Now().Add(p.Limits.Timeout),
		pending:  map[string]chan airlockv1.ApprovalDecision{},
		counts:   map[string]int{},
		closing:  make(chan struct{}),
	}
}

// started sets the job's deadline from the moment its task started.
func (g *execGate) started(at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.deadline = at.Add(g.policy.Limits.Timeout)
}

// decide is the job's Job.OnExec: the profile's exec or tool policy, then
// the caller when it asks for one. A tool call is recorded and shown like a
// command, as its tool name and target ("read", "/tmp/x"), with no cwd. A
// command line is recorded as one word, the line itself, so that the caller
// sees the whole chain it decides on, operators included.
func (g *execGate) decide(ctx context.Context, req job.ExecRequest) job.ExecDecision {
	isTool := req.Tool != ""
	isLine := !isTool && req.Command != ""
	shown := req
	switch {
	case isTool:
		shown = job.ExecRequest{Argv: []string{req.Tool, req.Target}}
	case isLine:
		shown = job.ExecRequest{Argv: []string{req.Command}, Cwd: req.Cwd}
	}
	if g.overLimit() {
		reason := fmt.Sprintf("refused: the job has made its %d tool calls (model.maxToolCalls)", max(g.maxCalls, 0))
		g.emitToolCall(req, job.ExecRequest{Argv: []string{req.Tool, req.Target}}, false, reason)
		return job.ExecDecision{Reason: reason}
	}
	argv, cwd := g.shown(shown)
	rec := &airlockv1.ExecDecision{Time: timestamppb.Now(), Argv: argv, Cwd: cwd}
	var gv gateVerdict
	var reason string
	if isTool {
		gv, reason = g.toolVerdict(req)
	} else {
		gv, reason = g.policyVerdict(req)
	}
	verdict := gv.execVerdict()
	if gv == gateAsk {
		if view, err := g.approvalView(req); err != nil {
			verdict, reason = airlockv1.ExecVerdict_EXEC_VERDICT_DENIED, reason+"; "+err.Error()+", so it is denied without asking"
		} else {
			verdict, reason = g.ask(ctx, rec, view, reason)
		}
	}
	// The reason quotes the job's words (a path, a pattern miss): it is
	// cleaned like them, once, for the caller, the stream, the audit and
	// the job alike.
	reason = cleanLine(reason, maxReasonRunes, g.sanitize)
	rec.Verdict, rec.Reason = verdict, reason
	rec.Allowed = verdict == airlockv1.ExecVerdict_EXEC_VERDICT_ALLOWED || verdict == airlockv1.ExecVerdict_EXEC_VERDICT_APPROVED
	g.record(rec)
	g.emit(toolCallEvent(g.jobID, req, argv, rec.Allowed, reason))
	d := job.ExecDecision{Allow: rec.Allowed, Reason: reason}
	if d.Allow && !isTool {
		d.Done = func(code int) {
			g.mu.Lock()
			rec.ExitCode = int32(code)
			g.mu.Unlock()
		}
	}
	return d
}

// policyVerdict applies the profile alone. gateAsk means the caller
// must be asked, for the reason returned. A command line is decided as a
// whole: every segment must match, and a line the runner could not run as
// parsed (a refused construct, a pipe) is denied before anyone is asked.
func (g *execGate) policyVerdict(req job.ExecRequest) (gateVerdict, string) {
	p := g.policy
	denied := gateDeny
	if !p.ExecAllowed() {
		return denied, "the profile does not allow exec (exec.security deny, or the exec tool is not allowed)"
	}
	isLine := req.Command != ""
	if isLine {
		if len(req.Argv) > 0 {
			return denied, "both an argv and a command line"
		}
		if _, err := execpolicy.ParseChain(req.Command); err != nil {
			return denied, err.Error()
		}
	}
	if p.Exec.Security == policy.ExecFull {
		// Loads only in development mode; the loader enforces that. The
		// tools stay read-only even then.
		if err := checkWrites(req); err != nil {
			return denied, err.Error()
		}
		return gateAllow, "exec.security is full"
	}
	if p.Exec.Security != policy.ExecAllowlist {
		return denied, fmt.Sprintf("exec.security %q allows nothing", p.Exec.Security)
	}
	var d execpolicy.Decision
	var err error
	if isLine {
		d, err = execpolicy.Match(p.Exec.AllowedPatterns, req.Command)
	} else {
		d, err = execpolicy.MatchArgv(p.Exec.AllowedPatterns, req.Argv)
	}
	if err != nil {
		// Not a command that can be shown or run; nobody is asked.
		return denied, err.Error()
	}
	matched, n := matchedPatterns(d)
	word := "pattern"
	if n > 1 {
		word = "patterns"
	}
	switch {
	case p.Exec.Ask == policy.AskAlways:
		if matched != "" {
			return gateAsk, "exec.ask is always (matches " + matched + ")"
		}
		return gateAsk, "exec.ask is always; " + d.Reason
	case matched != "":
		return gateAllow, "matches allowed " + word + " " + matched
	case p.Exec.Ask == policy.AskOnMiss:
		return gateAsk, d.Reason
	default:
		return denied, d.Reason + "; exec.ask is off"
	}
}

// checkWrites refuses a command any of whose argvs would write a file
// (execpolicy.CheckWrites).
func checkWrites(req job.ExecRequest) error {
	segs := []execpolicy.Segment{{Argv: req.Argv}}
	if req.Command != "" {
		var err error
		if segs, err = execpolicy.ParseChain(req.Command); err != nil {
			return err
		}
	}
	for _, s := range segs {
		if err := execpolicy.CheckWrites(s.Argv); err != nil {
			return err
		}
	}
	return nil
}

// matchedPatterns quotes the distinct patterns an allowed decision matched,
// in the order of its segments, and counts them; empty for a miss.
func matchedPatterns(d execpolicy.Decision) (string, int) {
	if !d.Allowed {
		return "", 0
	}
	var quoted []string
	for _, s := range d.Segments {
		if q := strconv.Quote(s.Pattern); !slices.Contains(quoted, q) {
			quoted = append(quoted, q)
		}
	}
	return strings.Join(quoted, ", "), len(quoted)
}

// toolVerdict applies the profile to a file tool or fetch call. Like a
// command, a call outside the tool's bounds is a miss that exec.ask
// decides; a tool the job does not have, or a malformed target, is denied
// without asking anyone.
func (g *execGate) toolVerdict(req job.ExecRequest) (gateVerdict, string) {
	check, why := g.policy.CheckToolCall(g.tools, req.Tool, req.Target)
	switch {
	case check == policy.ToolRefused:
		return gateDeny, why
	case g.policy.Exec.Ask == policy.AskAlways:
		return gateAsk, "exec.ask is always; " + why
	case check == policy.ToolWithin:
		return gateAllow, why
	case g.policy.Exec.Ask == policy.AskOnMiss:
		return gateAsk, why
	default:
		return gateDeny, why + "; exec.ask is off"
	}
}

// ask emits ApprovalNeeded, showing view, and waits for Approve, the
// timeout, or the job's end. Without a stream to ask on, askFallback
// decides at once. The wait, and the timeout the event advertises, end at
// the approval timeout or the job's deadline, whichever comes first: an
// approver is never told of time the job does not have.
func (g *execGate) ask(ctx context.Context, rec *airlockv1.ExecDecision, view approval, why string) (airlockv1.ExecVerdict, string) {
	fallback := func(reason string) (airlockv1.ExecVerdict, string) {
		// askFallback has one value, deny, which the loader enforces.
		return airlockv1.ExecVerdict_EXEC_VERDICT_FALLBACK, fmt.Sprintf("%s; %s, so exec.askFallback (%s) applies", why, reason, g.policy.Exec.AskFallback)
	}
	if !g.interactive {
		return fallback("no caller to ask on a unary Spawn")
	}
	id, answer, wait, bound, refused := g.reserve(ctx)
	if refused != "" {
		return fallback(refused)
	}
	defer func() {
		g.mu.Lock()
		delete(g.pending, id)
		g.mu.Unlock()
	}()
	rec.RequestId = id

	g.emit(&airlockv1.SpawnStreamResponse{JobId: g.jobID, Event: &airlockv1.SpawnStreamResponse_ApprovalNeeded{
		ApprovalNeeded: &airlockv1.ApprovalNeeded{
			Request: view.request, RequestId: id, Argv: view.argv, Cwd: view.cwd,
			Reason: cleanLine(why, maxReasonRunes, g.sanitize), Timeout: durationpb.New(wait),
		}}})
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case d := <-answer:
		if d == airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE {
			return airlockv1.ExecVerdict_EXEC_VERDICT_APPROVED, why + "; approved once by the caller"
		}
		return airlockv1.ExecVerdict_EXEC_VERDICT_DENIED_BY_CALLER, why + "; denied by the caller"
	case <-timer.C:
		return fallback(bound)
	case <-ctx.Done():
		return fallback("the job ended before an answer")
	case <-g.closing:
		return fallback("the job is ending")
	}
}

// reserve makes a pending request for ask, with its wait and the reason
// it ends with when unanswered, or says why none may be made. The lock is
// released by defer: a gate left locked would hang its job's end.
func (g *execGate) reserve(ctx context.Context) (id string, answer chan airlockv1.ApprovalDecision, wait time.Duration, bound, refused string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.closed:
		return "", nil, 0, "", "the job is ending"
	case g.asked >= maxApprovalRequests:
		return "", nil, 0, "", fmt.Sprintf("the job already asked %d times", maxApprovalRequests)
	case len(g.pending) >= maxPendingApprovals:
		return "", nil, 0, "", fmt.Sprintf("%d approvals are already waiting", maxPendingApprovals)
	}
	wait, bound = g.timeout, fmt.Sprintf("no answer within %s", g.timeout)
	if left := time.Until(g.deadline); left < wait {
		wait, bound = left, "no answer before the job's deadline"
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait, bound = time.Until(dl), "no answer before the job's deadline"
	}
	// Whole milliseconds: what is advertised is never more than the wait.
	if wait = wait.Truncate(time.Millisecond); wait <= 0 {
		return "", nil, 0, "", "the job's deadline has passed"
	}
	g.seq++
	g.asked++
	id = "exec-" + strconv.Itoa(g.seq)
	answer = make(chan airlockv1.ApprovalDecision, 1)
	g.pending[id] = answer
	return id, answer, wait, bound, ""
}

// answer delivers a caller's decision to a waiting request, and reports
// whether one was waiting.
func (g *execGate) answer(requestID string, d airlockv1.ApprovalDecision) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch, ok := g.pending[requestID]
	if !ok {
		return false
	}
	// Deleted here so that a second answer to the same request is
	// NotFound, not a second decision.
	delete(g.pending, requestID)
	ch <- d
	return true
}

// overLimit counts a call and reports whether it is past maxCalls. The
// broker's count is the wall a hijacked agent cannot lift; the agent
// keeps its own.
func (g *execGate) overLimit() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	if g.maxCalls < 0 || g.maxCalls > 0 && g.calls > g.maxCalls {
		g.limitHit = true
		g.counts["LIMIT_EXCEEDED"]++
		return true
	}
	return false
}

// emitToolCall shows a call refused before the profile was asked.
func (g *execGate) emitToolCall(req, shown job.ExecRequest, allowed bool, reason string) {
	argv, _ := g.shown(shown)
	g.emit(toolCallEvent(g.jobID, req, argv, allowed, reason))
}

// toolCallEvent is the stream's ToolCall for a decided request, in the
// sanitized words shown: argv for a command, tool and target otherwise.
func toolCallEvent(jobID string, req job.ExecRequest, argv []string, allowed bool, reason string) *airlockv1.SpawnStreamResponse {
	tc := &airlockv1.ToolCall{Tool: toolName(req.Tool), Allowed: allowed, Reason: reason}
	switch {
	case req.Tool == "":
		tc.Tool, tc.Argv = "exec", argv
	case len(argv) > 1:
		tc.Target = argv[1]
	}
	return &airlockv1.SpawnStreamResponse{JobId: jobID, Time: timestamppb.Now(), Event: &airlockv1.SpawnStreamResponse_ToolCall{ToolCall: tc}}
}

// toolName is a tool call's name as the caller may see it: one the broker
// knows, or "unknown"; the name is the job's word.
func toolName(tool string) string {
	if t := strings.ToLower(tool); slices.Contains(policy.KnownTools, t) {
		return t
	}
	return "unknown"
}

// toolCalls returns how many calls were decided and whether one was
// refused at maxCalls.
func (g *execGate) toolCalls() (int, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls, g.limitHit
}

// close ends every wait; later requests fall back at once.
func (g *execGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		close(g.closing)
	}
}

func (g *execGate) record(rec *airlockv1.ExecDecision) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.counts[rec.Verdict.String()]++
	if len(g.records) < maxExecRecords {
		g.records = append(g.records, rec)
	} else {
		g.dropped++
	}
}

// results returns copies of the decisions and the counts by verdict.
func (g *execGate) results() ([]*airlockv1.ExecDecision, map[string]int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	recs := make([]*airlockv1.ExecDecision, 0, len(g.records))
	for _, r := range g.records {
		recs = append(recs, proto.CloneOf(r))
	}
	counts := make(map[string]int, len(g.counts))
	for k, v := range g.counts {
		counts[k] = v
	}
	return recs, counts
}

// shown is the request's argv and cwd as the record and the stream show
// them: sanitized like a result's strings, each on one line, and capped,
// with a marker where a word was cut. It is a record of what was asked,
// never what an approver consents to: that is approvalView.
func (g *execGate) shown(req job.ExecRequest) ([]string, string) {
	n := min(len(req.Argv), maxShownArgs)
	words := make([]any, 0, n+1)
	for _, a := range req.Argv[:n] {
		words = append(words, oneLine(a))
	}
	words = append(words, oneLine(req.Cwd))
	clean, findings := result.Sanitize(words, g.sanitize)
	out := make([]string, 0, n+1)
	list, _ := clean.([]any)
	for _, w := range list {
		s, _ := w.(string)
		out = append(out, s)
	}
	if len(out) != n+1 {
		// Sanitize keeps a list's length; refuse to show a misaligned one.
		return []string{"[unprintable]"}, ""
	}
	for _, f := range findings {
		if f.Kind != result.KindTruncated {
			continue
		}
		for i := range out {
			if f.Path == fmt.Sprintf("$[%d]", i) {
				out[i] += cutMarker
			}
		}
	}
	argv, cwd := out[:n], out[n]
	if extra := len(req.Argv) - n; extra > 0 {
		argv = append(argv, fmt.Sprintf("[%d more arguments]", extra))
	}
	return argv, cwd
}

// cutMarker ends a word that was cut to be shown.
const cutMarker = " [cut]"

// approval is what an approver is shown: exactly what will run.
type approval struct {
	// request is every argv that will run, shell-quoted, joined by the
	// line's operators: one line a person can read and paste.
	request string
	// argv is every word that will run, in order, argv[0] of each command
	// resolved as the runner resolves it, and each operator of a line as
	// a word of its own.
	argv []string
	// cwd is the directory the commands run in; empty for a tool call.
	cwd string
}

// errNotShowable means a request cannot be shown whole to an approver.
var errNotShowable = errors.New("the request cannot be shown whole to an approver")

// approvalView is what an approver is asked about: for a command, exactly
// the argvs the runner will run and their directory; for a tool call, its
// name and target. It fails when that cannot be shown whole: a command
// that cannot run as asked (it would not resolve, or its directory is not
// a clean absolute path); more than maxShownArgs words or maxShownArgRunes
// characters rendered; a character that does not render plainly (controls,
// tabs, newlines, format characters, combining marks, blanks other than
// the space, right-to-left characters that reorder a line); a word the
// sanitizer would change (a secret, a template token, a link off the
// allowlist); or an argument that is itself an operator, which would make
// the list ambiguous. Such a request is denied, never asked about: what an
// approver cannot see whole, they cannot consent to.
func (g *execGate) approvalView(req job.ExecRequest) (approval, error) {
	fail := func(format string, a ...any) (approval, error) {
		return approval{}, fmt.Errorf("%w (%s)", errNotShowable, fmt.Sprintf(format, a...))
	}
	var v approval
	var runs []execpolicy.Segment
	switch {
	case req.Tool != "":
		v.argv = []string{req.Tool, req.Target}
		v.request = shellQuote(v.argv)
	case req.Command != "":
		segs, err := execpolicy.ParseChain(req.Command)
		if err != nil {
			return fail("it does not parse")
		}
		runs = segs
	default:
		runs = []execpolicy.Segment{{Argv: req.Argv}}
	}
	if req.Tool == "" {
		v.cwd = req.Cwd
		if v.cwd == "" {
			v.cwd = "/"
		}
		if !path.IsAbs(v.cwd) || path.Clean(v.cwd) != v.cwd {
			return fail("its directory is not a clean absolute path, so it cannot run")
		}
		var lines []string
		for i, r := range runs {
			if len(r.Argv) == 0 {
				return fail("a command is empty")
			}
			bin, err := execpolicy.Resolve(r.Argv[0])
			if err != nil {
				return fail("command %d does not resolve, so it cannot run", i+1)
			}
			argv := append([]string{bin}, r.Argv[1:]...)
			for _, a := range argv[1:] {
				if isOperator(a) {
					return fail("an argument is the operator %s, which the list of words could not tell from one", a)
				}
			}
			if i > 0 {
				v.argv = append(v.argv, string(r.Op))
				lines = append(lines, string(r.Op))
			}
			v.argv = append(v.argv, argv...)
			lines = append(lines, shellQuote(argv))
		}
		v.request = strings.Join(lines, " ")
	}
	if len(v.argv) > maxShownArgs {
		return fail("%d words, more than %d", len(v.argv), maxShownArgs)
	}
	if n := utf8.RuneCountInString(v.request); n > maxShownArgRunes {
		return fail("%d characters, more than %d", n, maxShownArgRunes)
	}
	for i, w := range append([]string{v.request, v.cwd}, v.argv...) {
		if r, ok := unrenderable(w); ok {
			return fail("it holds %U, which does not render plainly", r)
		}
		if w != "" && result.SanitizeText(w, g.sanitize) != w {
			what := "a word"
			if i == 0 {
				what = "the line"
			}
			return fail("sanitizing would change %s: it holds a secret, a template token, a link off the allowlist or text that normalizes", what)
		}
	}
	return v, nil
}

// isOperator reports whether w is one of a command line's operators.
func isOperator(w string) bool {
	switch execpolicy.Operator(w) {
	case execpolicy.OpAnd, execpolicy.OpOr, execpolicy.OpSeq, execpolicy.OpPipe:
		return true
	}
	return false
}

// unrenderable returns the first rune of s that does not render plainly in
// a line: anything but graphic characters and the ASCII space, a
// combining mark (which draws over its neighbour, a quote included), a
// blank other than the space, and a right-to-left character or Arabic
// digit, which reorders what is displayed around it.
func unrenderable(s string) (rune, bool) {
	for _, r := range s {
		if r == ' ' {
			continue
		}
		if !unicode.IsGraphic(r) || unicode.Is(unicode.Zs, r) || unicode.Is(unicode.M, r) || r == 0x2800 || r == utf8.RuneError {
			return r, true
		}
		if p, _ := bidi.LookupRune(r); p.Class() == bidi.R || p.Class() == bidi.AL || p.Class() == bidi.AN {
			return r, true
		}
	}
	return 0, false
}

// shellQuote renders argv as one line a person can read and paste.
func shellQuote(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-=:,+@%", r))
		}) < 0 {
			b.WriteString(a)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	return b.String()
}

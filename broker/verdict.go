package broker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies/policy"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// egressProto is an egress attempt as the caller, the stream and the
// audit see it. The host, method and path are the job's words and the
// reason quotes them: each is cleaned with the job's sanitizer options and
// capped.
func egressProto(a job.EgressAttempt, opts result.SanitizeOptions) *airlockv1.EgressAttempt {
	return &airlockv1.EgressAttempt{
		Time: timestamppb.New(a.Time), Host: cleanLine(a.Host, maxShownHostRunes, opts), Port: uint32(a.Port), Allowed: a.Allowed,
		Reason: cleanLine(a.Reason, maxReasonRunes, opts),
		Method: cleanLine(printable(a.Method, maxShownMethodBytes), maxShownMethodBytes, opts), BytesUp: a.BytesUp, BytesDown: a.BytesDown,
		Path: cleanLine(printable(a.Path, maxShownPathBytes), maxShownPathBytes, opts), Status: int32(a.Status),
	}
}

// Caps on an egress attempt's words as shown; the proxy caps them too.
const (
	maxShownPathBytes   = 256
	maxShownHostRunes   = 253 // a DNS name's limit
	maxShownMethodBytes = 16
	// maxMessageRunes caps a response's message.
	maxMessageRunes = 1024
)

// cleanText is text the sandbox could influence as the caller, the stream
// or the audit log may see it: sanitized like a result's strings with the
// job's options (escapes, controls, bidi and invisible characters,
// template tokens, the job's secrets and credential shapes, links off the
// allowlist) and cut to maxRunes, after redacting, so that no secret is
// shown cut in two. A long s is read a window at a time, so a megabyte
// usually costs what a few kilobytes do: a window is enough once what
// remains of it, cleaned, reaches past the cap by more than a secret
// (URL-encoded, three bytes per byte, or neutralized, three characters
// per character) could take, since only a secret at the window's end can
// be cut in two there. Stripped text shrinks, so the window doubles until
// it is, up to all of s.
func cleanText(s string, maxRunes int, opts result.SanitizeOptions) string {
	longest := 0
	for _, sec := range opts.Secrets {
		longest = max(longest, len(sec))
	}
	margin := 3 * (3*longest + 16)
	opts.MaxStringLength = maxRunes
	for window := 4 * (maxRunes + margin); window < len(s); window *= 2 {
		wide := opts
		wide.MaxStringLength = window // no cut
		if t := result.SanitizeText(s[:window], wide); utf8.RuneCountInString(t) >= maxRunes+margin {
			return result.SanitizeText(t, opts)
		}
	}
	return result.SanitizeText(s, opts)
}

// cleanLine is cleanText on one line: tabs and line breaks become spaces,
// so that a reason cannot forge another line of a log or a terminal.
func cleanLine(s string, maxRunes int, opts result.SanitizeOptions) string {
	return oneLine(cleanText(oneLine(s), maxRunes, opts))
}

// oneLine replaces tabs and line breaks with spaces.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\t\n\r\v\f\u0085\u2028\u2029") {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '\t', '\n', '\r', '\v', '\f', 0x85, 0x2028, 0x2029:
			return ' '
		}
		return r
	}, s)
}

// printable keeps printable ASCII of s, at most n bytes: a path is the
// job's text, and what it would say beyond a cap or in control characters
// is nothing a caller needs.
func printable(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return -1
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n]
	}
	return s
}

// modelTurnProto is a model call as the stream shows it. The proxy writes
// its reason and limit, but the reason can carry an upstream's words.
func modelTurnProto(c job.ModelCall, opts result.SanitizeOptions) *airlockv1.ModelTurn {
	return &airlockv1.ModelTurn{
		Turn: int32(c.Turn), Allowed: c.Allowed, Status: int32(c.Status),
		InputTokens: c.InputTokens, OutputTokens: c.OutputTokens, BytesUp: c.BytesUp, BytesDown: c.BytesDown,
		Duration: durationpb.New(c.Duration), Reason: cleanLine(printable(c.Reason, maxReasonBytes), maxReasonBytes, opts),
		Limit: cleanLine(printable(c.Limit, 32), 32, opts),
	}
}

// maxReasonBytes caps a proxy-made reason shown to the caller. The proxy
// writes it, but it can carry an upstream's error words.
const maxReasonBytes = 512

// maxLoggedErrorRunes caps a sandbox failure in the operator's log.
const maxLoggedErrorRunes = 4096

// fetchMessages are the verdict messages of a job whose content url was
// not fetched, by the agent's exit code: fixed words, whichever the job
// chose.
var fetchMessages = map[int]string{
	job.ExitFetchRefused:  "a content url was not fetched: the egress proxy refused it or one of its redirects; the egress log says which and why",
	job.ExitFetchTooLarge: fmt.Sprintf("a content url was not fetched: its body is larger than the agent reads (%d MiB)", job.MaxFetchBytes>>20),
	job.ExitFetchTimeout:  "a content url was not fetched: the server was too slow, and the fetch ran past half the job's deadline",
	job.ExitFetchFailed:   "a content url was not fetched: it answered an error status, a type the agent does not read (text, HTML, Markdown, JSON), or nothing",
}

// sanitizeOptions is how a job's result is cleaned: every secret the
// broker holds and the job's service secrets are redacted, links are kept
// only to the job's egress hosts, strings are capped by the profile.
func (s *Server) sanitizeOptions(job *job.Job) result.SanitizeOptions {
	p := job.Policy
	opts := result.SanitizeOptions{MaxStringLength: p.Result.MaxStringLength, KeepLinks: p.Result.KeepLinks}
	if s.secrets != nil {
		opts.Secrets = append(opts.Secrets, s.secrets()...)
	}
	for _, svc := range job.Services {
		if len(svc.Secret) > 0 {
			opts.Secrets = append(opts.Secrets, svc.Secret)
		}
	}
	var rules []policy.EgressRule
	for _, e := range p.Network.Egress {
		if r, err := policy.ParseEgress(e); err == nil {
			rules = append(rules, r)
		}
	}
	opts.AllowedHosts = func(host string) bool {
		for _, r := range rules {
			if r.Matches(host, r.Port) {
				return true
			}
		}
		return false
	}
	for _, pat := range p.Result.RedactPatterns {
		// Validated at load; a pattern that fails here is skipped rather
		// than failing every job.
		if re, err := regexp.Compile(pat); err == nil {
			opts.ExtraPatterns = append(opts.ExtraPatterns, re)
		}
	}
	return opts
}

// verdict turns what came out of the sandbox into the response. The raw
// result is parsed and validated here, and only the validated value can
// leave.
func (s *Server) verdict(ctx context.Context, pl *plan, out *job.Outcome, runErr error, toolLimit bool) *airlockv1.SpawnResponse {
	p := pl.job.Policy
	resp := s.newResponse(pl)
	// Every message goes through the sanitizer: some quote the job's
	// words (a result's keys, a model's failure), and the rest cost
	// nothing to clean.
	set := func(v airlockv1.Verdict, format string, a ...any) *airlockv1.SpawnResponse {
		resp.Verdict = v
		resp.Message = cleanLine(fmt.Sprintf(format, a...), maxMessageRunes, pl.sanitize)
		return resp
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return set(airlockv1.Verdict_VERDICT_CANCELLED, "job cancelled before it finished")
		}
		// The cause names host paths, containerd's words and whatever the
		// job did to provoke it: the operator's log has it, cleaned; the
		// caller gets what to do.
		s.log.Error("sandbox failed", "job", pl.job.ID, "err", cleanLine(runErr.Error(), maxLoggedErrorRunes, pl.sanitize))
		return set(airlockv1.Verdict_VERDICT_SANDBOX_ERROR, "the broker could not run the job in a sandbox; this is not the request's fault: retry, and if it persists, ask the operator to look up job %s in airlockd's log", pl.job.ID)
	}
	for _, a := range out.Egress {
		resp.Egress = append(resp.Egress, egressProto(a, pl.sanitize))
	}
	resp.Usage.EgressDropped = int32(min(out.EgressDropped, math.MaxInt32))
	resp.Usage.EgressDeniedPackets = int64(min(out.EgressDeniedPackets, math.MaxInt64))
	resp.Usage.ExitCode = int32(out.ExitCode)
	resp.Usage.MemoryPeakBytes = out.MemoryPeakBytes
	resp.Usage.Cpu = durationpb.New(out.CPU)
	resp.Usage.OutputBytes = int64(len(out.Result))
	resp.Usage.ModelTurns = int32(out.Model.Calls)
	resp.Usage.InputTokens, resp.Usage.OutputTokens = out.Model.InputTokens, out.Model.OutputTokens
	agent := pl.job.Task == TaskAgent && p.Model != nil
	switch {
	case out.TimedOut:
		return set(airlockv1.Verdict_VERDICT_TIMEOUT, "job ran past its %s deadline and was killed", p.Limits.Timeout)
	case out.OOMKilled:
		return set(airlockv1.Verdict_VERDICT_OOM, "job exceeded its %d-byte memory limit", p.Limits.MemoryBytes)
	case out.PidsLimitHit:
		return set(airlockv1.Verdict_VERDICT_RESOURCE_LIMIT, "job hit its limit of %d processes", p.Limits.Pids)
	case out.OutputTooLarge:
		return set(airlockv1.Verdict_VERDICT_OUTPUT_TOO_LARGE, "result is larger than the %d-byte output cap", p.Limits.OutputBytes)
	case agent && out.ExitCode != job.ExitOK && (out.ExitCode == job.ExitLimit || out.Model.Limit != "" || toolLimit):
		return set(airlockv1.Verdict_VERDICT_LIMIT_EXCEEDED, "%s", limitMessage(p.Model, out, toolLimit))
	case agent && (out.ExitCode == job.ExitModel || out.ExitCode != job.ExitOK && out.Model.Failed > 0):
		return set(airlockv1.Verdict_VERDICT_MODEL_ERROR, "%s", modelErrorMessage(p.Model, out))
	case agent && out.ExitCode == job.ExitAnswer:
		return set(airlockv1.Verdict_VERDICT_SCHEMA_INVALID, "the model's answer did not fit the result schema, also after one repair turn; make the schema simpler or the instructions clearer")
	case out.ExitCode != job.ExitOK && fetchMessages[out.ExitCode] != "" && hasURL(pl.job.Content):
		return set(airlockv1.Verdict_VERDICT_FETCH_FAILED, "%s", fetchMessage(out.ExitCode, resp.Egress))
	case out.ExitCode == job.ExitContract:
		return set(airlockv1.Verdict_VERDICT_SANDBOX_ERROR, "the agent refused the job: it does not speak the contract version of the job.json this airlockd wrote (docs/agent-contract.md); this is not the request's fault: ask the operator to run an agent image built for this airlockd")
	case out.ExitCode != job.ExitOK:
		return set(airlockv1.Verdict_VERDICT_SANDBOX_ERROR, "the agent exited with code %d before it wrote a result; the request passed every check at the door, so retry, and if it persists ask the operator to look up job %s in the audit log", out.ExitCode, pl.job.ID)
	case out.Result == nil:
		return set(airlockv1.Verdict_VERDICT_SCHEMA_INVALID, "no result: %s", out.ResultProblem)
	}
	st, findings, err := result.Process(out.Result, pl.schema, p.Limits.OutputBytes, pl.sanitize)
	for _, f := range findings {
		resp.Sanitization.Findings = append(resp.Sanitization.Findings, &airlockv1.SanitizationFinding{
			Path: f.Path, Kind: f.Kind, Detail: f.Detail, Count: int32(f.Count)})
	}
	if pe, ok := errors.AsType[*result.PanicError](err); ok {
		s.log.Error("result processing panicked", "job", pl.job.ID,
			"panic", cleanLine(fmt.Sprint(pe.Value), maxLoggedErrorRunes, pl.sanitize), "stack", string(pe.Stack))
		resp.Sanitization.Findings = nil
		return set(airlockv1.Verdict_VERDICT_SANDBOX_ERROR, "the broker failed to process this job's result, and returns nothing of it; this is a bug: ask the operator to look up job %s in airlockd's log", pl.job.ID)
	}
	if err != nil {
		return set(airlockv1.Verdict_VERDICT_SCHEMA_INVALID, "result rejected: %v", err)
	}
	resp.Result = st
	resp.Verdict = airlockv1.Verdict_VERDICT_OK
	return resp
}

// newResponse is the job's response before its verdict: its ID, node and
// effective policy, and empty usage and report.
func (s *Server) newResponse(pl *plan) *airlockv1.SpawnResponse {
	return &airlockv1.SpawnResponse{
		JobId:        pl.job.ID,
		Node:         s.node,
		Policy:       effectivePolicy(pl.job.Policy),
		Usage:        &airlockv1.Usage{},
		Sanitization: &airlockv1.SanitizationReport{},
	}
}

// policyDenied turns a job that failed (SANDBOX_ERROR after it ran) into
// POLICY_DENIED when the policy refused something it tried: egress off
// the allowlist, or a command (denied by the policy, by its fallback or by
// the approver). The caller's remedy is then a profile that
// allows it, not a retry. What the message names (a host, a command) is
// the job's and was sanitized with the response.
func policyDenied(resp *airlockv1.SpawnResponse, p *policy.Profile, sanitize result.SanitizeOptions) {
	if resp.Verdict != airlockv1.Verdict_VERDICT_SANDBOX_ERROR {
		return
	}
	var what string
	for _, e := range resp.Egress {
		if !e.GetAllowed() {
			what = fmt.Sprintf("egress to %s:%d; if the job needs it, use a profile whose egress allowlist has it", e.GetHost(), e.GetPort())
			break
		}
	}
	if what == "" {
		for _, d := range resp.Exec {
			if !d.GetAllowed() {
				what = fmt.Sprintf("the command %s (%s); if the job needs it, use a profile whose exec allowlist has it, or approve it when asked", strings.Join(d.GetArgv(), " "),
					strings.ToLower(strings.TrimPrefix(d.GetVerdict().String(), "EXEC_VERDICT_")))
				break
			}
		}
	}
	if what == "" {
		return
	}
	resp.Verdict = airlockv1.Verdict_VERDICT_POLICY_DENIED
	resp.Message = cleanLine(fmt.Sprintf("the job failed after profile %s refused %s", p.Name, what), maxMessageRunes, sanitize)
}

func effectivePolicy(p *policy.Profile) *airlockv1.EffectivePolicy {
	return &airlockv1.EffectivePolicy{Profile: p.Name, Hash: p.Hash(), Summary: p.Summary()}
}

// limitMessage names the model limit an agent job reached, as the proxy
// and the broker counted, never as the job said.
func limitMessage(m *policy.Model, out *job.Outcome, toolLimit bool) string {
	var which string
	switch {
	case out.Model.Limit != "":
		which = out.Model.Limit
	case toolLimit:
		which = "maxToolCalls"
	case out.Model.Calls >= m.MaxTurns:
		which = "maxTurns"
	}
	bound := map[string]int64{
		"maxTurns": int64(m.MaxTurns), "maxToolCalls": int64(m.MaxToolCalls), "maxInputTokens": m.MaxInputTokens,
		"maxOutputTokens": m.MaxOutputTokens, "maxReplyBytes": m.MaxReplyBytes,
	}
	n, ok := bound[which]
	if !ok {
		return "the agent stopped at a model limit before it answered (model turns, tool calls or tokens); see usage"
	}
	return fmt.Sprintf("the agent reached model.%s (%d) before it answered; lower the work the instructions ask for, or raise the limit in the profile", which, n)
}

// modelErrorMessage says how the model failed, from the proxy's record of
// the job's model calls.
func modelErrorMessage(m *policy.Model, out *job.Outcome) string {
	u := out.Model
	switch {
	case u.LastStatus != 0:
		return fmt.Sprintf("the model service %q answered HTTP %d %s; check the model name, the key and the upstream", m.Service, u.LastStatus, http.StatusText(u.LastStatus))
	case u.LastFailure != "":
		return fmt.Sprintf("the model service %q failed: %s", m.Service, printable(u.LastFailure, maxReasonBytes))
	case u.Calls == 0 && u.Refused == 0:
		return fmt.Sprintf("the agent could not reach the model service %q", m.Service)
	}
	return fmt.Sprintf("the model %s sent a reply the agent could not use (malformed, cut off, or neither text nor tool calls)", m.Name)
}

// fetchMessage is fetchMessages' line, with the first refused attempt
// when the proxy refused: what the caller's allowlist is missing.
func fetchMessage(code int, egress []*airlockv1.EgressAttempt) string {
	msg := fetchMessages[code]
	if code != job.ExitFetchRefused {
		return msg
	}
	for _, e := range egress {
		if !e.GetAllowed() {
			return fmt.Sprintf("%s: %s:%d: %s", msg, e.GetHost(), e.GetPort(), e.GetReason())
		}
	}
	return msg
}

func hasURL(content []job.Content) bool {
	for _, c := range content {
		if c.URL != "" {
			return true
		}
	}
	return false
}

package broker

import (
	"context"
	"fmt"
	"regexp"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies/policy"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

func egressProto(a job.EgressAttempt) *airlockv1.EgressAttempt {
	return &airlockv1.EgressAttempt{
		Time: timestamppb.New(a.Time), Host: a.Host, Port: uint32(a.Port), Allowed: a.Allowed, Reason: a.Reason,
		Method: a.Method, BytesUp: a.BytesUp, BytesDown: a.BytesDown,
	}
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
func (s *Server) verdict(ctx context.Context, pl *plan, out *job.Outcome, runErr error) *airlockv1.SpawnResponse {
	p := pl.job.Policy
	resp := &airlockv1.SpawnResponse{
		JobId:        pl.job.ID,
		Policy:       effectivePolicy(p),
		Usage:        &airlockv1.Usage{},
		Sanitization: &airlockv1.SanitizationReport{},
	}
	set := func(v airlockv1.Verdict, format string, a ...any) *airlockv1.SpawnResponse {
		resp.Verdict = v
		resp.Message = fmt.Sprintf(format, a...)
		return resp
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return set(airlockv1.Verdict_VERDICT_CANCELLED, "job cancelled before it finished")
		}
		s.log.Error("sandbox failed", "job", pl.job.ID, "err", runErr)
		return set(airlockv1.Verdict_VERDICT_SANDBOX_ERROR, "sandbox failed: %v", runErr)
	}
	for _, a := range out.Egress {
		resp.Egress = append(resp.Egress, egressProto(a))
	}
	resp.Usage.ExitCode = int32(out.ExitCode)
	resp.Usage.MemoryPeakBytes = out.MemoryPeakBytes
	resp.Usage.Cpu = durationpb.New(out.CPU)
	resp.Usage.OutputBytes = int64(len(out.Result))
	switch {
	case out.TimedOut:
		return set(airlockv1.Verdict_VERDICT_TIMEOUT, "job ran past its %s deadline and was killed", p.Limits.Timeout)
	case out.OOMKilled:
		return set(airlockv1.Verdict_VERDICT_OOM, "job exceeded its %d-byte memory limit", p.Limits.MemoryBytes)
	case out.PidsLimitHit:
		return set(airlockv1.Verdict_VERDICT_RESOURCE_LIMIT, "job hit its limit of %d processes", p.Limits.Pids)
	case out.OutputTooLarge:
		return set(airlockv1.Verdict_VERDICT_OUTPUT_TOO_LARGE, "result is larger than the %d-byte output cap", p.Limits.OutputBytes)
	case out.ExitCode != 0:
		return set(airlockv1.Verdict_VERDICT_SANDBOX_ERROR, "agent exited with code %d", out.ExitCode)
	case out.Result == nil:
		return set(airlockv1.Verdict_VERDICT_SCHEMA_INVALID, "no result: %s", out.ResultProblem)
	}
	st, findings, err := result.Process(out.Result, pl.schema, p.Limits.OutputBytes, s.sanitizeOptions(pl.job))
	for _, f := range findings {
		resp.Sanitization.Findings = append(resp.Sanitization.Findings, &airlockv1.SanitizationFinding{
			Path: f.Path, Kind: f.Kind, Detail: f.Detail, Count: int32(f.Count)})
	}
	if err != nil {
		return set(airlockv1.Verdict_VERDICT_SCHEMA_INVALID, "result rejected: %v", err)
	}
	resp.Result = st
	resp.Verdict = airlockv1.Verdict_VERDICT_OK
	return resp
}

func effectivePolicy(p *policy.Profile) *airlockv1.EffectivePolicy {
	return &airlockv1.EffectivePolicy{Profile: p.Name, Hash: p.Hash(), Summary: p.Summary()}
}

package broker

import (
	"cmp"
	"strings"
	"time"

	"github.com/airlock/airlock/broker/audit"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/policies/prompt"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// record writes the job's audit record and counts it in the metrics.
func (s *Server) record(req *airlockv1.SpawnRequest, pl *plan, out *job.Outcome, resp *airlockv1.SpawnResponse, owner string, execCounts map[string]int) {
	rec := s.auditRecord(req, pl, out, resp, owner, execCounts)
	s.observe(rec, resp, owner)
	s.log.Info("job finished", "job", rec.JobID, "profile", rec.Profile, "verdict", rec.Verdict,
		"policy_hash", rec.PolicyHash, "wall_ms", rec.WallMillis)
	if s.audit != nil {
		if err := s.audit.Write(rec); err != nil {
			s.log.Error("audit log write failed", "job", rec.JobID, "err", err)
		}
	}
}

// auditRecord is the job's audit record. It holds counts and identifiers,
// never the content or the result; the task's own output only capped,
// sanitized and redacted.
func (s *Server) auditRecord(req *airlockv1.SpawnRequest, pl *plan, out *job.Outcome, resp *airlockv1.SpawnResponse, owner string, execCounts map[string]int) audit.Record {
	rec := audit.Record{
		Time:        time.Now().UTC(),
		JobID:       resp.JobId,
		Owner:       owner,
		Profile:     pl.job.Policy.Name,
		PolicyHash:  resp.Policy.GetHash(),
		Runtime:     cmp.Or(pl.job.Policy.Isolation.Runtime, policy.RuntimeRunc),
		Image:       pl.job.Image,
		Task:        pl.job.Task,
		Labels:      req.GetLabels(),
		Verdict:     resp.Verdict.String(),
		Message:     resp.Message,
		ExitCode:    int(resp.Usage.GetExitCode()),
		WallMillis:  resp.Usage.GetWall().AsDuration().Milliseconds(),
		MemoryPeak:  resp.Usage.GetMemoryPeakBytes(),
		CPUMillis:   resp.Usage.GetCpu().AsDuration().Milliseconds(),
		OutputBytes: resp.Usage.GetOutputBytes(),

		EgressDeniedPackets: resp.Usage.GetEgressDeniedPackets(),

		ModelTurns:   int(resp.Usage.GetModelTurns()),
		InputTokens:  resp.Usage.GetInputTokens(),
		OutputTokens: resp.Usage.GetOutputTokens(),
		ToolCalls:    int(resp.Usage.GetToolCalls()),
	}
	if m := pl.job.Policy.Model; m != nil && pl.job.Task == TaskAgent {
		rec.Model = m.Name
		rec.PromptVersion = prompt.Version
	}
	if out != nil && len(out.GatewayRefused) > 0 {
		if execCounts == nil {
			execCounts = map[string]int{}
		}
		refused := map[string]int{}
		for reason, n := range out.GatewayRefused {
			refused[gatewayReason(reason)] += n
		}
		for reason, n := range refused {
			execCounts["GATEWAY_REFUSED_"+strings.ToUpper(reason)] += n
		}
		s.log.Warn("tool gateway refused requests", "job", resp.JobId, "refused", refused)
	}
	if len(execCounts) > 0 {
		// Counts by verdict, never the commands: they are the job's words.
		rec.Exec = execCounts
	}
	if out != nil {
		rec.ImageDigest = out.ImageDigest
		// The task's own output is hostile text: it is recorded capped,
		// and sanitized and redacted like a result, never raw. It is cut
		// after redacting, so that no secret is recorded cut in two.
		rec.Logs = cleanText(string(out.Logs), maxAuditLogBytes, pl.sanitize)
	}
	for _, f := range resp.GetSanitization().GetFindings() {
		if rec.Findings == nil {
			rec.Findings = map[string]int{}
		}
		rec.Findings[f.Kind]++
	}
	for _, e := range resp.GetEgress() {
		if e.Allowed {
			rec.EgressAllowed++
		} else {
			rec.EgressDenied++
		}
	}
	return rec
}

// gatewayReason is a reason the tool gateway gave for refusals, as a key
// of the audit record and the log: the gateway's fixed words, such as
// wrong_capability, or "other". The Outcome is the sandbox side's, and
// nothing of it is trusted.
func gatewayReason(reason string) string {
	if reason == "" || len(reason) > 32 || strings.IndexFunc(reason, func(r rune) bool { return (r < 'a' || r > 'z') && r != '_' }) >= 0 {
		return "other"
	}
	return reason
}

// observe counts a finished job in the metrics and the anomaly detector.
func (s *Server) observe(rec audit.Record, resp *airlockv1.SpawnResponse, owner string) {
	s.metrics.JobFinished(rec.Profile, resp.GetVerdict())
	for kind, n := range rec.Findings {
		s.metrics.Sanitizer.WithLabelValues(kind).Add(float64(n))
	}
	// The rule label comes from the profile the job ran under, never from
	// the host the job named: that is the job's text.
	base, _ := s.profiles.Get(rec.Profile)
	for _, e := range resp.GetEgress() {
		if !e.Allowed {
			s.anomalies.Observe("egress_denials", owner)
		}
		rule := ""
		if e.Allowed && base != nil {
			rule = base.EgressRule(e.Host, uint16(e.Port))
		}
		s.metrics.EgressAttempt(rule, e.Allowed)
	}
}

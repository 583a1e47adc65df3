package sandbox

import (
	"errors"
	"fmt"
	"net"

	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/egress"
	"github.com/airlock/airlock/sandbox/job"
)

// DefaultProxyPort is the egress proxy's port on each job's gateway.
const DefaultProxyPort = 3128

// jobPolicy is the proxy's view of the job: its (possibly tightened)
// egress entries and the services the broker resolved.
func jobPolicy(j *job.Job) (egress.JobPolicy, error) {
	jp := egress.JobPolicy{JobID: j.ID, Services: j.Services, OnAttempt: j.OnEgress}
	for _, e := range j.Policy.Network.Egress {
		rule, err := policy.ParseEgress(e)
		if err != nil {
			return jp, fmt.Errorf("egress entry %q: %w", e, err)
		}
		jp.Egress = append(jp.Egress, rule)
	}
	if len(j.Policy.Network.Services) != len(j.Services) {
		return jp, fmt.Errorf("the profile names %d services but %d were resolved", len(j.Policy.Network.Services), len(j.Services))
	}
	if m := j.Policy.Model; m != nil {
		// Whatever the task: any job that can reach the model's alias goes
		// through the gate, so no task is a way around its limits.
		jp.Model = &egress.ModelPolicy{
			Alias: m.Service, API: m.API, Name: m.Name, MaxTurns: m.MaxTurns, MaxInputTokens: m.MaxInputTokens,
			MaxOutputTokens: m.MaxOutputTokens, MaxReplyBytes: m.MaxReplyBytes, OnCall: j.OnModelCall,
		}
	}
	return jp, nil
}

// ProxyEnv is the environment that points a sandbox at its proxy. It is
// the one exception to the env allowlist, and holds no secret.
func ProxyEnv(proxyURL string) []string {
	if proxyURL == "" {
		return nil
	}
	return []string{"HTTP_PROXY=" + proxyURL, "HTTPS_PROXY=" + proxyURL, "http_proxy=" + proxyURL, "https_proxy=" + proxyURL, "NO_PROXY=", "no_proxy="}
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

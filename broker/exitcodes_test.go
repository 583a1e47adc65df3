package broker_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/agent"
	"github.com/airlock/airlock/sandbox/job"
	"github.com/airlock/airlock/sandbox/job/jobtest"
)

// TestExitCodes_EachFailureOfTheAgentGetsItsVerdict: the agent and the
// broker take their exit codes from sandbox/job, and this proves they mean
// the same by each. For every class of failure the reference agent tells
// apart, the code it exits with (agent.ExitCode) selects the verdict the
// broker means for that class; and every code of the contract is one of
// them, so that a code added to sandbox/job needs a class here. Only this
// test links sandbox/agent into the broker's: the broker itself must not
// (docs/layers_test.go).
func TestExitCodes_EachFailureOfTheAgentGetsItsVerdict(t *testing.T) {
	// An agent task with a content URL: every code has its meaning.
	req := agentRequest()
	req.Profile = "fetcher"
	req.Content = []*airlockv1.Content{{Url: "https://pages.example/a", MediaType: "text/html"}}
	fetch := func(err error) error { return fmt.Errorf("%w: content %q: %w", agent.ErrFetch, "0", err) }
	tests := []struct {
		name    string
		err     error // the agent's failure
		verdict airlockv1.Verdict
		want    string
	}{
		{"a result", nil, airlockv1.Verdict_VERDICT_OK, ""},
		{"a job that could not be done", errors.New("write result.json: no space left on device"), airlockv1.Verdict_VERDICT_SANDBOX_ERROR, "exited with code"},
		{"a malformed job.json", fmt.Errorf("%w: job.json: unknown field %q", agent.ErrBadJob, "mode"), airlockv1.Verdict_VERDICT_SANDBOX_ERROR, "exited with code"},
		{"an unknown task", fmt.Errorf("%w: %q", agent.ErrUnknownTask, "rm"), airlockv1.Verdict_VERDICT_SANDBOX_ERROR, "exited with code"},
		{"another contract version", fmt.Errorf("%w: job.json: %w 2, this agent speaks 1", agent.ErrBadJob, agent.ErrContract), airlockv1.Verdict_VERDICT_SANDBOX_ERROR, "contract version"},
		{"a model that failed", fmt.Errorf("%w: the reply is not JSON", agent.ErrModel), airlockv1.Verdict_VERDICT_MODEL_ERROR, "could not reach the model service"},
		{"a model limit", fmt.Errorf("%w: maxTurns", agent.ErrLimit), airlockv1.Verdict_VERDICT_LIMIT_EXCEEDED, "model limit"},
		{"an answer off the schema", agent.ErrAnswerInvalid, airlockv1.Verdict_VERDICT_SCHEMA_INVALID, "after one repair turn"},
		{"a fetch the proxy refused", fetch(fmt.Errorf("403 Forbidden: %w", agent.ErrEgressRefused)), airlockv1.Verdict_VERDICT_FETCH_FAILED, "the egress proxy refused it"},
		{"a body over the cap", fetch(fmt.Errorf("body: %w: over %d bytes", agent.ErrTooLarge, job.MaxFetchBytes)), airlockv1.Verdict_VERDICT_FETCH_FAILED, fmt.Sprintf("larger than the agent reads (%d MiB)", job.MaxFetchBytes/(1<<20))},
		{"a slow server", fetch(agent.ErrFetchTimeout), airlockv1.Verdict_VERDICT_FETCH_FAILED, "too slow"},
		{"an error status", fetch(fmt.Errorf("%w: 404 Not Found", agent.ErrHTTPStatus)), airlockv1.Verdict_VERDICT_FETCH_FAILED, "an error status"},
		{"a type the agent does not read", fetch(agent.ErrMediaType), airlockv1.Verdict_VERDICT_FETCH_FAILED, "a type the agent does not read"},
	}
	used := map[int]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := job.Outcome{ExitCode: agent.ExitCode(tt.err)}
			used[out.ExitCode] = true
			if tt.err == nil {
				out.Result = []byte(`{"title":"T"}`)
			}
			runner := &fakeRunner{outcome: func(*job.Job) (*job.Outcome, error) { return &out, nil }}
			resp, err := agentBroker(t, runner, nil).Spawn(ctx(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetVerdict() != tt.verdict || !strings.Contains(resp.GetMessage(), tt.want) {
				t.Errorf("the agent exits %d: verdict %v %q, want %v containing %q", out.ExitCode, resp.GetVerdict(), resp.GetMessage(), tt.verdict, tt.want)
			}
		})
	}
	for name, code := range jobtest.ExitCodes(t) {
		if !used[code] {
			t.Errorf("job.%s (%d) is the exit of no failure above: add the agent's failure that exits with it", name, code)
		}
	}
}

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/airlock/airlock/policies/policy"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// DefaultTask is the trivial job every system runs unless told otherwise:
// it reads one small page and writes its title and text.
const DefaultTask = "extract_text"

// DefaultContent is the page the default job reads.
var DefaultContent = []byte("<html><head><title>Airlock bench</title></head><body><p>A short page for timing sandbox spawns.</p></body></html>")

// DefaultSchema fits extract_text's result exactly.
const DefaultSchema = `{"type":"object","additionalProperties":false,"required":["title","text"],` +
	`"properties":{"title":{"type":"string"},"text":{"type":"string"}}}`

// Options configures RunBroker.
type Options struct {
	// N is how many jobs to spawn, Concurrency how many at once.
	N, Concurrency int
	// Profile is the broker profile every job names.
	Profile string
	// Task and Params are what the agent is asked to do.
	Task   string
	Params map[string]string
	// Content is each job's input.
	Content []*airlockv1.Content
	// Schema is the result schema; empty uses the profile's default.
	Schema string
	// Interval, when set, is the least time between two jobs' starts:
	// jobs arrive at a pace instead of back to back, which is what a warm
	// pool is for. Every system gets the same pace.
	Interval time.Duration
}

// DefaultJobContent is DefaultContent as a request's content list.
func DefaultJobContent() []*airlockv1.Content {
	return []*airlockv1.Content{{Data: DefaultContent, MediaType: "text/html", Source: "airlock-bench"}}
}

// RunBroker spawns o.N jobs through the broker, o.Concurrency at a time,
// and times each Spawn call from request to response: admission, the
// sandbox's whole life including teardown, and sanitizing. Any RPC error
// or verdict other than OK is a failure, reported in Stats.Errors.
func RunBroker(ctx context.Context, conn airlockv1.BrokerClient, o Options) (Stats, error) {
	if conn == nil {
		return Stats{}, errors.New("bench: no broker connection")
	}
	task := o.Task
	if task == "" {
		task = DefaultTask
	}
	content := o.Content
	if len(content) == 0 {
		content = DefaultJobContent()
	}
	return drive(ctx, o.N, o.Concurrency, o.Interval, func(ctx context.Context) error {
		// A fresh request per call: an empty job_id makes each one a new
		// job, never an idempotent replay of an earlier response.
		resp, err := conn.Spawn(ctx, &airlockv1.SpawnRequest{
			Profile:      o.Profile,
			Task:         &airlockv1.Task{Name: task, Params: o.Params},
			Content:      content,
			ResultSchema: o.Schema,
		})
		if err != nil {
			return fmt.Errorf("spawn: %w", err)
		}
		if v := resp.GetVerdict(); v != airlockv1.Verdict_VERDICT_OK {
			return fmt.Errorf("verdict %s: %s", v, resp.GetMessage())
		}
		return nil
	})
}

// ProfileOf asks the broker for a profile's effective policy, so the
// baselines run under exactly the spec the broker enforces, including any
// operator changes to the shipped profiles.
func ProfileOf(ctx context.Context, conn airlockv1.BrokerClient, name string) (*policy.Profile, error) {
	resp, err := conn.ExplainProfile(ctx, &airlockv1.ExplainProfileRequest{Profile: name})
	if err != nil {
		return nil, fmt.Errorf("explain profile %q: %w", name, err)
	}
	var p policy.Profile
	if err := json.Unmarshal([]byte(resp.GetEffectiveJson()), &p); err != nil {
		return nil, fmt.Errorf("profile %q: decode effective policy: %w", name, err)
	}
	if p.Name == "" {
		return nil, fmt.Errorf("profile %q: the broker returned no effective policy", name)
	}
	return &p, nil
}

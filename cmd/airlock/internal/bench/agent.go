package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"text/tabwriter"
	"time"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// AgentTask is the model-driven task; its jobs are timed against plain
// DefaultTask jobs under the same profile, in the same run.
const AgentTask = "agent"

// DefaultInstructions are what each benchmarked agent job asks.
const DefaultInstructions = "What is this page's title? Answer in the schema."

// AgentSchema is the answer the benchmarked agent jobs give.
const AgentSchema = `{"type":"object","additionalProperties":false,"required":["answer"],"properties":{"answer":{"type":"string"}}}`

// AgentConfig configures RunAgent.
type AgentConfig struct {
	Broker airlockv1.BrokerClient
	// Options are the jobs; Profile must have a model, and its model
	// should answer at once (the stand-in's instant model), so that what
	// is left is Airlock's own time.
	Options      Options
	Instructions string
	Warmup       int
	Rounds       int
	Progress     io.Writer
}

// AgentReport compares agent jobs with plain jobs of the same profile.
type AgentReport struct {
	Profile, PolicySummary string
	N, Concurrency, Rounds int
	CPUs                   int
	LoadBefore, LoadAfter  string
	Agent, Plain           Stats
	// Turns is the mean model turns per agent job, as the proxy counted.
	Turns float64
	// ModelTime is the mean time per agent job between the proxy sending
	// a model request and the reply's end: the model's time, which the
	// benchmark takes out.
	ModelTime time.Duration
	// OverheadPerTurn is (agent mean - plain mean - model time) / turns:
	// what Airlock adds per model turn (the agent's prompt and parsing,
	// the proxy's gate and relay, the larger result).
	OverheadPerTurn time.Duration
}

// RunAgent runs o.N agent jobs and o.N plain DefaultTask jobs, in rounds
// that take turns, o.Concurrency at a time, and reports Airlock's overhead
// per model turn. Agent jobs run on SpawnStream to read the proxy's
// per-turn timings.
func RunAgent(ctx context.Context, cfg AgentConfig) (*AgentReport, error) {
	o := cfg.Options
	if cfg.Broker == nil {
		return nil, errors.New("bench: no broker connection")
	}
	rounds := max(cfg.Rounds, 1)
	if o.N < rounds || o.Concurrency < 1 || o.N/rounds < o.Concurrency {
		return nil, fmt.Errorf("bench: -n %d -c %d --rounds %d: need at least -c jobs per round", o.N, o.Concurrency, rounds)
	}
	p, err := ProfileOf(ctx, cfg.Broker, o.Profile)
	if err != nil {
		return nil, err
	}
	if p.Model == nil {
		return nil, fmt.Errorf("bench: profile %s has no model section; --task agent needs one", p.Name)
	}
	instructions := cfg.Instructions
	if instructions == "" {
		instructions = DefaultInstructions
	}
	schema := o.Schema
	if schema == "" {
		schema = AgentSchema
	}
	content := o.Content
	if len(content) == 0 {
		content = DefaultJobContent()
	}
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	var turns, modelNanos atomic.Int64
	agentJob := func(ctx context.Context) error {
		events, err := cfg.Broker.SpawnStream(ctx, &airlockv1.SpawnStreamRequest{Spawn: &airlockv1.SpawnRequest{
			Profile: o.Profile, Task: &airlockv1.Task{Name: AgentTask, Instructions: instructions}, Content: content, ResultSchema: schema,
		}})
		if err != nil {
			return fmt.Errorf("spawn: %w", err)
		}
		var model time.Duration
		for {
			ev, err := events.Recv()
			if err != nil {
				return fmt.Errorf("stream: %w", err)
			}
			if t := ev.GetModelTurn(); t != nil {
				model += t.GetDuration().AsDuration()
			}
			if d := ev.GetDone(); d != nil {
				if d.GetVerdict() != airlockv1.Verdict_VERDICT_OK {
					return fmt.Errorf("verdict %s: %s", d.GetVerdict(), d.GetMessage())
				}
				turns.Add(int64(d.GetUsage().GetModelTurns()))
				modelNanos.Add(int64(model))
				return nil
			}
		}
	}
	plain := Options{N: o.N / rounds, Concurrency: o.Concurrency, Profile: o.Profile, Task: DefaultTask, Content: DefaultJobContent(), Schema: DefaultSchema, Interval: o.Interval}
	for i := 0; i < cfg.Warmup; i++ {
		if err := agentJob(ctx); err != nil {
			return nil, fmt.Errorf("warm-up agent job: %w", err)
		}
		if _, err := RunBroker(ctx, cfg.Broker, Options{N: 1, Concurrency: 1, Profile: o.Profile, Task: DefaultTask, Content: DefaultJobContent(), Schema: DefaultSchema}); err != nil {
			return nil, fmt.Errorf("warm-up plain job: %w", err)
		}
	}
	rep := &AgentReport{Profile: p.Name, PolicySummary: p.Summary(), N: o.N, Concurrency: o.Concurrency, Rounds: rounds, CPUs: runtime.NumCPU(), LoadBefore: loadAvg()}
	var agentRuns, plainRuns []Stats
	for r := 0; r < rounds; r++ {
		progress("round %d/%d: %d agent jobs, then %d %s jobs", r+1, rounds, o.N/rounds, o.N/rounds, DefaultTask)
		a, err := drive(ctx, o.N/rounds, o.Concurrency, o.Interval, agentJob)
		if err != nil {
			return nil, err
		}
		agentRuns = append(agentRuns, a)
		pl, err := RunBroker(ctx, cfg.Broker, plain)
		if err != nil {
			return nil, err
		}
		plainRuns = append(plainRuns, pl)
	}
	rep.LoadAfter = loadAvg()
	rep.Agent, rep.Plain = Merge(agentRuns...), Merge(plainRuns...)
	if ok := len(rep.Agent.Latencies); ok > 0 {
		rep.Turns = float64(turns.Load()) / float64(ok)
		rep.ModelTime = time.Duration(modelNanos.Load() / int64(ok))
	}
	if rep.Turns > 0 && len(rep.Plain.Latencies) > 0 {
		rep.OverheadPerTurn = time.Duration(float64(rep.Agent.Mean-rep.Plain.Mean-rep.ModelTime) / rep.Turns)
	}
	return rep, nil
}

// WriteTable prints the report for a person.
func (r *AgentReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "profile %s (%s), %d jobs each, %d at once, %d round(s); %d CPUs, load %s -> %s\n\n",
		r.Profile, r.PolicySummary, r.N, r.Concurrency, r.Rounds, r.CPUs, r.LoadBefore, r.LoadAfter)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "jobs\tok\tp50\tp95\tp99\tmean\tjobs/s")
	for _, row := range []struct {
		name string
		s    Stats
	}{{AgentTask, r.Agent}, {DefaultTask, r.Plain}} {
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\t%.1f\n", row.name, row.s.N-row.s.Failures, row.s.N,
			msString(row.s.P50), msString(row.s.P95), msString(row.s.P99), msString(row.s.Mean), row.s.JobsPerSec)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nmodel turns per agent job %.2f; model time per job %s (proxy to upstream and back)\n", r.Turns, msString(r.ModelTime))
	fmt.Fprintf(w, "Airlock's overhead per model turn: %s  = (agent mean - %s mean - model time) / turns\n", msString(r.OverheadPerTurn), DefaultTask)
	for _, s := range []Stats{r.Agent, r.Plain} {
		for _, e := range s.Errors {
			fmt.Fprintf(w, "error: %s\n", e)
		}
	}
	return nil
}

func msString(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

package broker_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/audit"
	"github.com/airlock/airlock/broker/metrics"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// panickingRunner panics in the run of the job named panicJob, after its
// start, as a bug in the sandbox runner that the job provoked might; its
// teardown is deferred before, as the sandbox runner's is. Other jobs
// succeed.
type panickingRunner struct {
	tornDown atomic.Int32
}

const panicJob = "job-that-panics"

func (r *panickingRunner) Run(_ context.Context, j *job.Job) (*job.Outcome, error) {
	defer r.tornDown.Add(1)
	if j.OnStart != nil {
		j.OnStart()
	}
	if j.ID == panicJob {
		runnerBug("\x1b[31mjob text\nlevel=ERROR msg=forged " + strings.Repeat("A", 4096))
	}
	return &job.Outcome{Result: []byte(`{"title":"T"}`)}, nil
}

// runnerBug panics with v; the log's stack must name it.
func runnerBug(v string) { panic(v) }

// A panic in running a job ends that job with SANDBOX_ERROR and a fixed
// message, finished, recorded and torn down like any other; the panic is
// logged quoted and capped, with the stack it began in; the broker serves
// the next job, and nothing is left running (goleak, TestMain).
func TestSpawn_APanickingRunEndsOnlyItsJob(t *testing.T) {
	var logs, auditLog lockedBuffer
	runner := &panickingRunner{}
	m := metrics.New()
	srv, c, _ := newBrokerServer(t, runner, testToken, broker.Config{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Audit: audit.New(&auditLog), Metrics: m,
	})
	req := request()
	req.JobId = panicJob
	resp, err := c.Spawn(ctx(t), req)
	if err != nil {
		t.Fatalf("Spawn: %v, want a SANDBOX_ERROR response", err)
	}
	if resp.GetVerdict() != airlockv1.Verdict_VERDICT_SANDBOX_ERROR || strings.Contains(resp.GetMessage(), "job text") ||
		!strings.Contains(resp.GetMessage(), panicJob) || resp.GetResult() != nil {
		t.Fatalf("response = %v, want SANDBOX_ERROR naming the job and nothing of the panic", resp)
	}
	if n := runner.tornDown.Load(); n != 1 {
		t.Errorf("torn down %d times, want once", n)
	}

	// The job is finished: GetJob and an idempotent retry see its response.
	got, err := c.GetJob(ctx(t), &airlockv1.GetJobRequest{JobId: panicJob})
	if err != nil || got.GetJob().GetState() != airlockv1.JobState_JOB_STATE_FINISHED || got.GetJob().GetVerdict() != airlockv1.Verdict_VERDICT_SANDBOX_ERROR {
		t.Fatalf("GetJob = %v, %v; want it finished with SANDBOX_ERROR", got, err)
	}
	retry, err := c.Spawn(ctx(t), req)
	if err != nil || retry.GetMessage() != resp.GetMessage() {
		t.Fatalf("retry = %v, %v; want the first response", retry, err)
	}
	if srv.Running() != 0 || gauge(t, m, "airlock_sandboxes_live") != 0 {
		t.Errorf("running %d, sandboxes live %v; want none", srv.Running(), gauge(t, m, "airlock_sandboxes_live"))
	}
	var rec audit.Record
	if err := json.Unmarshal([]byte(strings.TrimSpace(auditLog.String())), &rec); err != nil || rec.JobID != panicJob || rec.Verdict != "VERDICT_SANDBOX_ERROR" {
		t.Errorf("audit = %q, %v; want the job's one record with SANDBOX_ERROR", auditLog.String(), err)
	}

	log := logs.String()
	if !strings.Contains(log, "job panicked") || !strings.Contains(log, "job="+panicJob) || !strings.Contains(log, "broker_test.runnerBug") {
		t.Errorf("the log does not hold the panic, its job and the stack it began in:\n%.3000s", log)
	}
	if !strings.Contains(log, "job text") || strings.Contains(log, "\x1b") || strings.Contains(log, "\nlevel=ERROR msg=forged") ||
		strings.Contains(log, strings.Repeat("A", 1100)) {
		t.Errorf("the panic's value is not logged quoted and capped:\n%.3000s", log)
	}

	// The broker serves the next job, over a stream too.
	next := request()
	next.JobId = "job-after"
	evs := streamAll(t, c, next)
	if done := evs[len(evs)-1].GetDone(); done.GetVerdict() != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("next job: %v, want OK", done)
	}
}

// gauge is the value of the named gauge in m.
func gauge(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

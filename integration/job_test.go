//go:build integration

package integration

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox"
)

func TestSummarize_ReturnsTitleOfInjectedPage(t *testing.T) {
	page, err := os.ReadFile("testdata/injected-page.html")
	if err != nil {
		t.Fatal(err)
	}
	schema, err := os.ReadFile("testdata/summary.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	resp := spawn(t, &airlockv1.SpawnRequest{
		Profile:      "vanilla",
		Task:         &airlockv1.Task{Name: "summarize"},
		Content:      []*airlockv1.Content{{Data: page, MediaType: "text/html", Source: "https://news.example/solar"}},
		ResultSchema: string(schema),
	})
	if resp.Verdict != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("verdict %s: %s", resp.Verdict, resp.Message)
	}
	if got, want := str(resp, "title"), "Quarterly Report: Solar Output Rises 12%"; got != want {
		t.Errorf("title = %q, want %q", got, want)
	}
	summary := str(resp, "summary")
	if !strings.Contains(summary, "Solar generation across the region rose 12%") {
		t.Errorf("summary = %q, lacks the first sentence", summary)
	}
	for _, hidden := range []string{"developer mode", "/etc/shadow", "system prompt", "API keys"} {
		if strings.Contains(summary, hidden) {
			t.Errorf("summary carries hidden text %q: %q", hidden, summary)
		}
	}
	if resp.Usage.GetCpu().AsDuration() <= 0 || resp.Usage.GetMemoryPeakBytes() <= 0 {
		t.Errorf("usage = %v, want the sandbox's CPU time and peak memory", resp.Usage)
	}
	if resp.Policy.GetHash() == "" || resp.Policy.GetProfile() != "vanilla" {
		t.Errorf("policy = %+v, want vanilla with a hash", resp.Policy)
	}
	requireNothingLeft(t)
}

func TestSpawn_SameJobIDRunsOnce(t *testing.T) {
	req := hostileReq("env", nil)
	req.JobId = "idem-" + randHex(4)
	first := spawn(t, req)
	second := spawn(t, req)
	if first.Verdict != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("verdict %s: %s", first.Verdict, first.Message)
	}
	// Each run gets a fresh sandbox whose env differs only by job ID, so
	// compare the usage record, which is per run.
	if first.GetUsage().GetWall().AsDuration() != second.GetUsage().GetWall().AsDuration() {
		t.Errorf("second call ran the job again: wall %v vs %v", first.GetUsage().GetWall(), second.GetUsage().GetWall())
	}
}

func TestTimeout_KillsAndCleansUp(t *testing.T) {
	req := hostileReq("sleep", map[string]string{"seconds": "600"})
	req.Overrides = &airlockv1.Overrides{Timeout: durationpb.New(2 * time.Second)}
	start := time.Now()
	resp := spawn(t, req)
	if resp.Verdict != airlockv1.Verdict_VERDICT_TIMEOUT {
		t.Fatalf("verdict %s (%s), want TIMEOUT", resp.Verdict, resp.Message)
	}
	if resp.Result != nil {
		t.Errorf("a timed-out job returned a result: %v", resp.Result)
	}
	if time.Since(start) > time.Minute {
		t.Errorf("Spawn returned after %v: the task was not killed at its deadline", time.Since(start))
	}
	requireNothingLeft(t)
}

func TestEnv_HoldsOnlyTheAllowlist(t *testing.T) {
	if os.Getenv("AIRLOCK_TEST_CANARY") != env.canary {
		t.Fatal("canary not planted in the broker's environment")
	}
	req := hostileReq("env", nil)
	req.JobId = "env-" + randHex(4)
	resp := spawn(t, req)
	if resp.Verdict != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("verdict %s: %s", resp.Verdict, resp.Message)
	}
	var got []string
	for _, v := range resp.Result.Fields["env"].GetListValue().GetValues() {
		got = append(got, v.GetStringValue())
	}
	// The run ID is the sandbox's own and unknown here: its shape is
	// checked, then it is compared like the rest.
	want := sandbox.Env("RUN")
	for i, v := range got {
		if id, ok := strings.CutPrefix(v, "AIRLOCK_RUN_ID="); ok && strings.HasPrefix(id, "airlock-") && !strings.Contains(id, req.JobId) {
			got[i] = "AIRLOCK_RUN_ID=RUN"
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("sandbox env = %v, want exactly %v", got, want)
	}
	if strings.Contains(resp.String(), env.canary) {
		t.Error("the broker's canary crossed into the response")
	}
}

func TestRootfs_IsReadOnly(t *testing.T) {
	resp := spawn(t, hostileReq("write_rootfs", nil))
	if resp.Verdict != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("verdict %s: %s", resp.Verdict, resp.Message)
	}
	attempts := map[string]bool{}
	for _, v := range resp.Result.Fields["attempts"].GetListValue().GetValues() {
		f := v.GetStructValue().GetFields()
		attempts[f["path"].GetStringValue()] = f["ok"].GetBoolValue()
	}
	for _, p := range []string{"/pwned", "/etc/pwned", "/airlock-agent"} {
		ok, tried := attempts[p]
		if !tried {
			t.Errorf("%s was not attempted", p)
		}
		if ok {
			t.Errorf("wrote %s on the rootfs", p)
		}
	}
	if !attempts["/tmp/ok"] {
		t.Error("could not write the /tmp scratch space: the test would prove nothing")
	}
}

func TestCancelledRPC_CleansUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := hostileReq("sleep", map[string]string{"seconds": "600"})
	req.JobId = "cancel-" + randHex(4)
	stream, err := env.brokerOf.SpawnStream(ctx, &airlockv1.SpawnStreamRequest{Spawn: req})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("stream ended before the job started: %v", err)
		}
		if ev.GetStarted() != nil {
			break
		}
	}
	cancel()
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("Recv after cancel: %v, want Canceled", err)
	}
	// The broker records the cancelled job once its teardown is done.
	tctx := testContext(t)
	var got *airlockv1.Job
	eventually(t, time.Minute, func() bool {
		r, err := env.brokerOf.GetJob(tctx, &airlockv1.GetJobRequest{JobId: req.JobId})
		got = r.GetJob()
		return err == nil && got.GetState() == airlockv1.JobState_JOB_STATE_FINISHED
	}, "the cancelled job %s to be recorded as finished", req.JobId)
	if v := got.GetVerdict(); v != airlockv1.Verdict_VERDICT_CANCELLED {
		t.Errorf("verdict %s, want CANCELLED", v)
	}
	requireNothingLeft(t)
}

func TestSchemaInvalid_ResultIsWithheld(t *testing.T) {
	req := hostileReq("echo", map[string]string{"result": `{"title": 42}`})
	req.ResultSchema = `{"type":"object","properties":{"title":{"type":"string"}}}`
	resp := spawn(t, req)
	if resp.Verdict != airlockv1.Verdict_VERDICT_SCHEMA_INVALID || resp.Result != nil {
		t.Fatalf("verdict %s result %v, want SCHEMA_INVALID and no result", resp.Verdict, resp.Result)
	}
}

func TestSymlinkedResult_IsNotFollowed(t *testing.T) {
	resp := spawn(t, hostileReq("symlink_result", nil))
	if resp.Verdict == airlockv1.Verdict_VERDICT_OK || resp.Result != nil {
		t.Fatalf("verdict %s result %v: a symlinked result.json was read", resp.Verdict, resp.Result)
	}
	if strings.Contains(resp.String(), "root:x:0:0") {
		t.Error("host or image /etc/passwd leaked into the response")
	}
}

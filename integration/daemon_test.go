//go:build integration

package integration

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock/airlock/broker/audit"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/images"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/embedded"
)

// TestShippedDaemon_AuthAuditAndMetrics checks the parts of the suite's
// broker that only the shipped daemon package wires: the token on the real
// socket, one audit line per job, and the metrics listener.
func TestShippedDaemon_AuthAuditAndMetrics(t *testing.T) {
	wrong := filepath.Join(t.TempDir(), "wrong-token")
	if err := os.WriteFile(wrong, []byte(randHex(32)), 0o600); err != nil {
		t.Fatal(err)
	}
	bad, err := client.Dial(env.server.Addr().String(), "", wrong)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.Broker.ListProfiles(testContext(t), &airlockv1.ListProfilesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a wrong token: %v, want Unauthenticated", err)
	}

	resp := spawn(t, &airlockv1.SpawnRequest{
		Profile: "ironclaw",
		Task:    &airlockv1.Task{Name: "summarize"},
		Content: []*airlockv1.Content{{Data: []byte("<title>Audited</title><p>One line.</p>"), MediaType: "text/html"}},
	})
	if resp.Verdict != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("verdict %s: %s", resp.Verdict, resp.Message)
	}

	rec, err := auditRecord(filepath.Join(env.stateDir, "audit.jsonl"), resp.JobId)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Verdict != "VERDICT_OK" || rec.Profile != "ironclaw" || rec.PolicyHash != resp.Policy.GetHash() {
		t.Errorf("audit record = %+v, want ironclaw's OK job with its policy hash", rec)
	}

	addr := env.server.MetricsAddr()
	if addr == nil {
		t.Fatal("no metrics listener")
	}
	mresp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer mresp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(mresp.Body, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"airlock_up 1",
		`airlock_jobs_total{profile="ironclaw",verdict="ok"}`,
		`airlock_auth_failures_total{reason=`,
		`airlock_spawn_seconds_count{phase="spawn"}`,
		`airlock_spawn_seconds_count{phase="run"}`,
		"airlock_job_seconds_count ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(string(body), `phase="total"`) {
		t.Error(`metrics hold airlock_spawn_seconds{phase="total"}; the whole job is airlock_job_seconds`)
	}
}

// auditRecords reads the audit log at path.
func auditRecords(path string) ([]audit.Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return audit.Read(f)
}

// auditRecord finds the audit line of job id.
func auditRecord(path, id string) (audit.Record, error) {
	recs, err := auditRecords(path)
	if err != nil {
		return audit.Record{}, err
	}
	for _, r := range recs {
		if r.JobID == id {
			return r, nil
		}
	}
	return audit.Record{}, errors.New("no audit record for job " + id)
}

// TestSandboxNew_AFailedStartLeavesNothingRunning: a runner whose start
// fails late (its image cannot be built, after the containerd connection,
// the teardown workers and the egress proxy are up) undoes all of them.
func TestSandboxNew_AFailedStartLeavesNothingRunning(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	_, err := sandbox.New(testContext(t), sandbox.Config{
		Address:  env.address,
		StateDir: t.TempDir(),
		Images:   []images.Spec{images.Reader(filepath.Join(t.TempDir(), "no-such-agent"))},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err == nil || !strings.Contains(err.Error(), "image reader") {
		t.Fatalf("New with an unbuildable image = %v, want the image's error", err)
	}
}

// TestEmbeddedContainerd_RestartedWhenKilledAndGoneAfterStop: the private
// containerd comes back after a kill -9 under the broker, and Stop leaves
// no process.
func TestEmbeddedContainerd_RestartedWhenKilledAndGoneAfterStop(t *testing.T) {
	ctx := testContext(t)
	// Not t.TempDir(): a unix socket's path must stay under 108 bytes.
	tmp, err := os.MkdirTemp("", "ctd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	dir := filepath.Join(tmp, "containerd")
	d, err := embedded.Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = d.Stop(ctx)
		}
	}()
	first := d.Pid()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() bool { return d.Restarts() == 1 && d.Pid() != first && d.Pid() != 0 },
		"containerd was not restarted after kill -9 (restarts %d, pid %d)", d.Restarts(), d.Pid())
	eventually(t, 30*time.Second, func() bool {
		c, err := containerd.New(d.Address(), containerd.WithTimeout(time.Second))
		if err != nil {
			return false
		}
		defer c.Close()
		ok, err := c.IsServing(ctx)
		return err == nil && ok
	}, "the restarted containerd does not answer on %s", d.Address())

	second := d.Pid()
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stopped = true
	for _, pid := range []int{first, second} {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(st), ") Z ") {
				t.Errorf("containerd pid %d still runs after Stop", pid)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "containerd.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file left after Stop: %v", err)
	}
}

package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock/airlock/sandbox/toolgw"
)

const testCapability = "0123456789abcdef0123456789abcdef"

// fakeGateway allows only wc, and answers with the argv it ran.
func fakeGateway(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "tools.sock")
	g, err := toolgw.Listen(toolgw.Config{
		Socket: sock, Capability: testCapability, UID: os.Getuid(), GID: os.Getgid(),
		Handler: func(_ context.Context, argv []string, _ string) toolgw.Response {
			if argv[0] != "wc" {
				return toolgw.Response{ExitCode: -1, Reason: "matches no allowed pattern"}
			}
			return toolgw.Response{Allowed: true, Stdout: strings.Join(argv, " "), Reason: "matches /bin/wc"}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return sock
}

func runTaskJob(sock, capability, calls string, tools ...string) Job {
	return Job{ID: "j", Task: "run", Params: map[string]string{"calls": calls}, Tools: tools,
		Gateway: &Gateway{Socket: sock, Capability: capability}}
}

func TestRun_SendsEachCallThroughTheGateway(t *testing.T) {
	sock := fakeGateway(t)
	res, err := Run(runTaskJob(sock, testCapability, `[["wc","-c","/input/content/0"],["sh","-c","id"]]`, "exec"), nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := res.(RunResult).Calls
	if len(calls) != 2 {
		t.Fatalf("calls = %+v", calls)
	}
	if !calls[0].Allowed || calls[0].Stdout != "wc -c /input/content/0" || calls[0].Reason == "" {
		t.Errorf("allowed call = %+v", calls[0])
	}
	if calls[1].Allowed || calls[1].ExitCode != -1 || calls[1].Reason != "matches no allowed pattern" {
		t.Errorf("refused call = %+v", calls[1])
	}
}

func TestRun_ReportsAWrongCapabilityAsRefused(t *testing.T) {
	sock := fakeGateway(t)
	res, err := Run(runTaskJob(sock, "forged-capability-of-another-job", `[["wc"]]`, "exec"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := res.(RunResult).Calls[0]; c.Allowed || c.Reason != toolgw.ReasonBadCapability {
		t.Errorf("call = %+v", c)
	}
}

func TestRun_RefusesWithoutTheExecToolOrAGateway(t *testing.T) {
	sock := fakeGateway(t)
	if _, err := Run(runTaskJob(sock, testCapability, `[["wc"]]`, "summarize"), nil); !errors.Is(err, ErrNoGateway) {
		t.Errorf("without exec: %v, want ErrNoGateway", err)
	}
	job := runTaskJob(sock, testCapability, `[["wc"]]`, "exec")
	job.Gateway = nil
	if _, err := Run(job, nil); !errors.Is(err, ErrNoGateway) {
		t.Errorf("without a gateway: %v, want ErrNoGateway", err)
	}
}

func TestRun_RefusesBadCalls(t *testing.T) {
	sock := fakeGateway(t)
	for _, calls := range []string{"", "wc", `[]`, `[[]]`, `[["wc"], 3]`, `{"argv":["wc"]}`, "[" + strings.Repeat(`["wc"],`, MaxCalls) + `["wc"]]`} {
		if _, err := Run(runTaskJob(sock, testCapability, calls, "exec"), nil); !errors.Is(err, ErrBadParam) {
			t.Errorf("calls=%.40q: %v, want ErrBadParam", calls, err)
		}
	}
}

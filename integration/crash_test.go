//go:build integration

package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/job"
)

// crashHelperEnv makes the test binary act as a broker that starts a long
// job and then waits to be killed with SIGKILL.
const crashHelperEnv = "AIRLOCK_CRASH_HELPER"

// crashHelper runs in the child process: it starts a sleeping job on the
// suite's containerd and reports once the task runs.
func crashHelper() int {
	ctx := context.Background()
	runner, err := sandbox.New(ctx, sandbox.Config{
		Address:  os.Getenv("AIRLOCK_CRASH_ADDRESS"),
		StateDir: os.Getenv("AIRLOCK_CRASH_STATE"),
		Images:   []images.Spec{images.Hostile(os.Getenv("AIRLOCK_CRASH_HOSTILE"))},
	})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	profiles, err := policy.Load(policies.FS, policy.WithSchemaCheck(result.CheckSchema))
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	p, _ := profiles.Get("vanilla")
	j := &job.Job{
		ID: "crash", Image: "hostile", Task: "sleep", Params: map[string]string{"seconds": "600"},
		Content: []job.Content{{Data: []byte("x")}}, Policy: p,
		OnStart: func() { fmt.Println("started") },
	}
	_, err = runner.Run(ctx, j)
	fmt.Println("error: job returned:", err)
	return 1
}

func TestBrokerKilled_NextStartReapsEverything(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		crashHelperEnv+"=1",
		"AIRLOCK_CRASH_ADDRESS="+env.address,
		"AIRLOCK_CRASH_STATE="+env.stateDir,
		"AIRLOCK_CRASH_HOSTILE="+filepath.Join(env.bin, "hostile"),
	)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "started" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper said %q, %v", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	ctx := testContext(t)
	left, err := leftovers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) == 0 {
		t.Fatal("the killed broker left nothing: the test proves nothing")
	}

	// What a restarted broker does first.
	r, err := sandbox.New(ctx, sandbox.Config{Address: env.address, StateDir: env.stateDir})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	r.Close()
	if left, err := leftovers(ctx); err != nil || len(left) != 0 {
		t.Fatalf("after restart: left %v (err %v)", left, err)
	}
	if pids := sandboxProcesses(env.stateDir, "/airlock-agent"); len(pids) != 0 {
		t.Errorf("sandboxed processes still running: %v", pids)
	}
}

// sandboxProcesses lists pids whose command line starts with name and
// whose cgroup is under stateDir's subtree: another airlockd on the host
// (a benchmark beside the suite, say) runs agents of its own.
func sandboxProcesses(stateDir, name string) []string {
	subtree := "/" + footprint.Namespace + "/" + footprint.InstanceID(stateDir) + "/"
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.HasPrefix(string(b), name+"\x00") {
			continue
		}
		if cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup")); err == nil && strings.Contains(string(cg), subtree) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

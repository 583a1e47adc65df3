//go:build integration

package integration

import (
	"strconv"
	"strings"
	"testing"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/userns"
)

// shipped is what each shipped profile must look like from inside.
var shipped = []struct {
	profile string
	// uidMap is the first uid_map line, fields joined by one space; "*"
	// stands for the job's own range, which differs from job to job.
	uidMap string
	strict bool
	// runtime is the profile's OCI runtime. Under runsc the agent runs on
	// gVisor's kernel, which shows its own user namespace (a flat map) and
	// leaves CapAmb out of /proc/self/status; docs/runtimes.md says why
	// each difference is covered.
	runtime string
}{
	{"vanilla", "0 0 4294967295", false, "runc"},
	{"secureclaw", "0 * 65536", false, "runc"},
	{"ironclaw", "0 0 4294967295", true, "runsc"},
}

// uidMapMatches reports whether got is want, with "*" as a range of the
// user namespace block (TestKernel_ checks the ranges further).
func uidMapMatches(got, want string) bool {
	g, w := strings.Fields(got), strings.Fields(want)
	if len(g) != len(w) {
		return false
	}
	first, last := userns.Block()
	for i := range w {
		if w[i] == "*" {
			n, err := strconv.ParseUint(g[i], 10, 32)
			if err != nil || n < uint64(first) || n > uint64(last) {
				return false
			}
		} else if g[i] != w[i] {
			return false
		}
	}
	return true
}

func resultMap(t *testing.T, resp *airlockv1.SpawnResponse, key string) map[string]string {
	t.Helper()
	if resp.Verdict != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("verdict %s: %s", resp.Verdict, resp.Message)
	}
	out := map[string]string{}
	for k, v := range resp.Result.Fields[key].GetStructValue().GetFields() {
		out[k] = v.GetStringValue()
	}
	return out
}

func TestProfiles_HardeningHoldsInsideTheSandbox(t *testing.T) {
	for _, tt := range shipped {
		t.Run(tt.profile, func(t *testing.T) {
			req := hostileReq("proc_status", nil)
			req.Profile = tt.profile
			st := resultMap(t, spawn(t, req), "status")
			checks := map[string]string{
				"Uid":        "65534 65534 65534 65534",
				"Gid":        "65534 65534 65534 65534",
				"CapEff":     "0000000000000000",
				"CapPrm":     "0000000000000000",
				"CapBnd":     "0000000000000000",
				"CapAmb":     "0000000000000000",
				"NoNewPrivs": "1",
				"Seccomp":    "2",
			}
			if tt.runtime == "runsc" {
				delete(checks, "CapAmb")
			}
			if !uidMapMatches(st["uid_map"], tt.uidMap) {
				t.Errorf("uid_map = %q, want %q", st["uid_map"], tt.uidMap)
			}
			for k, want := range checks {
				if st[k] != want {
					t.Errorf("%s = %q, want %q", k, st[k], want)
				}
			}

			req = hostileReq("write_rootfs", nil)
			req.Profile = tt.profile
			resp := spawn(t, req)
			for _, v := range resp.GetResult().GetFields()["attempts"].GetListValue().GetValues() {
				f := v.GetStructValue().GetFields()
				if p := f["path"].GetStringValue(); p != "/tmp/ok" && f["ok"].GetBoolValue() {
					t.Errorf("wrote %s", p)
				}
			}
		})
	}
}

func TestProfiles_StrictSeccompRefusesEscapeSyscalls(t *testing.T) {
	for _, tt := range shipped {
		t.Run(tt.profile, func(t *testing.T) {
			req := hostileReq("syscalls", nil)
			req.Profile = tt.profile
			got := resultMap(t, spawn(t, req), "syscalls")
			for _, name := range []string{"mount", "unshare", "ptrace", "io_uring_setup", "keyctl", "userfaultfd", "personality_no_aslr"} {
				if tt.strict && got[name] != "EPERM" {
					t.Errorf("%s: %q, want EPERM under strict seccomp", name, got[name])
				}
			}
			// A call every profile allows: if it failed, the EPERMs here
			// would prove nothing.
			if got["getpid"] != "OK" {
				t.Errorf("getpid: %q, want OK in every profile", got["getpid"])
			}
			// Denied by every shipped profile, the default one included:
			// io_uring and cross-process tracing are kernel surface no job
			// needs.
			for _, name := range []string{"mount", "ptrace", "io_uring_setup"} {
				if got[name] != "EPERM" {
					t.Errorf("%s: %q, want EPERM in every profile", name, got[name])
				}
			}
		})
	}
}

func TestLimits_BombsEndInAVerdictAndLeaveTheBrokerHealthy(t *testing.T) {
	bombs := []struct {
		op     string
		params map[string]string
		want   airlockv1.Verdict
	}{
		{"alloc", map[string]string{"mb": "2048"}, airlockv1.Verdict_VERDICT_OOM},
		{"forkbomb", map[string]string{"n": "5000"}, airlockv1.Verdict_VERDICT_RESOURCE_LIMIT},
	}
	for _, b := range bombs {
		for _, tt := range shipped {
			t.Run(b.op+"/"+tt.profile, func(t *testing.T) {
				req := hostileReq(b.op, b.params)
				req.Profile = tt.profile
				if resp := spawn(t, req); resp.Verdict != b.want {
					t.Fatalf("verdict %s (%s), want %s", resp.Verdict, resp.Message, b.want)
				}
				requireHealthy(t)
				requireNothingLeft(t)
			})
		}
	}
}

// requireHealthy proves the broker still runs jobs.
func requireHealthy(t *testing.T) {
	t.Helper()
	if resp := spawn(t, hostileReq("env", nil)); resp.Verdict != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("broker unhealthy after the job: %s %s", resp.Verdict, resp.Message)
	}
}

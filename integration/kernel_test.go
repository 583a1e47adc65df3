//go:build integration

package integration

import (
	"context"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/containerd"
	"golang.org/x/sys/unix"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/cmd/airlockd/server"
	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/userns"
)

// shippedProfile loads one of the profiles the suite's broker serves.
func shippedProfile(t *testing.T, name string) *policy.Profile {
	t.Helper()
	set, err := policy.Load(policies.FS, policy.WithSchemaCheck(result.CheckSchema))
	if err != nil {
		t.Fatal(err)
	}
	p, err := set.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// attackOps runs steps (op objects) as a hostile job under profile and
// returns each op's outcome, in order.
func attackOps(t *testing.T, profile string, steps ...map[string]any) []map[string]any {
	t.Helper()
	req := hostileReq("attack", map[string]string{"attack": mustJSON(steps)})
	req.Profile = profile
	resp := spawn(t, req)
	if resp.Verdict != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("verdict %s: %s", resp.Verdict, resp.Message)
	}
	ops := outcomes(resp)
	if len(ops) != len(steps) {
		t.Fatalf("%d outcomes for %d steps: %v", len(ops), len(steps), ops)
	}
	return ops
}

func detail(o map[string]any, key string) string {
	d, _ := o["detail"].(map[string]any)
	switch v := d[key].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// TestKernel_IoUringPtraceAndProcessVMFailInEveryProfile: io_uring, ptrace
// and process_vm_readv/writev are refused by the filter (EPERM, or ENOSYS)
// in every shipped profile, with getpid as the control.
func TestKernel_IoUringPtraceAndProcessVMFailInEveryProfile(t *testing.T) {
	refused := []string{"io_uring_setup", "io_uring_enter", "io_uring_register", "ptrace", "process_vm_readv", "process_vm_writev"}
	for _, tt := range shipped {
		t.Run(tt.profile, func(t *testing.T) {
			steps := []map[string]any{{"op": "syscall", "name": "getpid"}}
			for _, name := range refused {
				steps = append(steps, map[string]any{"op": "syscall", "name": name})
			}
			ops := attackOps(t, tt.profile, steps...)
			if ok, _ := ops[0]["ok"].(bool); !ok {
				t.Fatalf("getpid failed (%v): the probes prove nothing", ops[0])
			}
			for i, name := range refused {
				o := ops[i+1]
				if ok, _ := o["ok"].(bool); ok || o["errno"] != "EPERM" && o["errno"] != "ENOSYS" {
					t.Errorf("%s: ok %v, errno %v (%v); want EPERM or ENOSYS from the filter", name, o["ok"], o["errno"], o["error"])
				}
			}
		})
	}
}

// TestKernel_CgroupAndMountViewsShowNoHostPathOrID: /proc/self/cgroup
// is "0::/" (and "/" in every v1 hierarchy), there is no sysfs or cgroup
// mount, and neither view names the run, the broker's instance or the
// host's cgroup tree.
func TestKernel_CgroupAndMountViewsShowNoHostPathOrID(t *testing.T) {
	instance := footprint.InstanceID(env.stateDir)
	for _, tt := range shipped {
		t.Run(tt.profile, func(t *testing.T) {
			o := attackOps(t, tt.profile, map[string]any{"op": "proc_views"})[0]
			cg, mi, runID := detail(o, "cgroup"), detail(o, "mountinfo"), detail(o, "run_id")
			// gVisor's kernel has no cgroups to show a job: its
			// /proc/self/cgroup is empty.
			if cg == "" && tt.runtime != "runsc" || mi == "" || !strings.HasPrefix(runID, "airlock-") {
				t.Fatalf("views not read: %v", o)
			}
			t.Logf("/proc/self/cgroup:\n%s", cg)
			if tt.runtime != "runsc" {
				lines := strings.Split(strings.TrimSpace(cg), "\n")
				for _, line := range lines {
					if parts := strings.SplitN(line, ":", 3); len(parts) != 3 || parts[2] != "/" {
						t.Errorf("/proc/self/cgroup line %q: want the path /", line)
					}
				}
				if !strings.Contains("\n"+cg, "\n0::/\n") {
					t.Errorf("/proc/self/cgroup has no 0::/ line")
				}
			}
			for _, line := range strings.Split(mi, "\n") {
				fields := strings.Fields(line)
				sep := -1
				for i, f := range fields {
					if f == "-" {
						sep = i
						break
					}
				}
				if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
					continue
				}
				// No sysfs, whose cgroup tree, devices and kernel are the
				// host's, and no cgroup mount.
				// gVisor mounts a sysfs of its own, which shows its
				// kernel's, not the host's.
				if fstype := fields[sep+1]; fstype == "sysfs" && tt.runtime != "runsc" || fstype == "cgroup" || fstype == "cgroup2" {
					t.Errorf("%s mount at %s (root %s)", fstype, fields[4], fields[3])
				}
			}
			for view, text := range map[string]string{"cgroup": cg, "mountinfo": mi} {
				for what, id := range map[string]string{"run ID": runID, "instance": instance, "cgroup tree": "/" + footprint.Namespace + "/"} {
					if strings.Contains(text, id) {
						t.Errorf("/proc/self/%s shows the %s %q", view, what, id)
					}
				}
			}
		})
	}
}

// TestKernel_NoPseudoTerminal: /dev/ptmx and /dev/pts/ptmx cannot be
// opened, and no devpts can be mounted, in any shipped profile on runc: a
// pseudo-terminal there comes from the host's pool. Under runsc they are
// gVisor's own, and take nothing of the host's; there the open must not
// reach a host device, which the sentry has none of.
func TestKernel_NoPseudoTerminal(t *testing.T) {
	for _, tt := range shipped {
		t.Run(tt.profile, func(t *testing.T) {
			o := attackOps(t, tt.profile, map[string]any{"op": "open_ptmx"})[0]
			if tt.runtime == "runsc" {
				if det, _ := o["detail"].(map[string]any); det["mount_devpts"] == "OK" {
					t.Errorf("a devpts was mounted under gVisor: %v", det)
				}
				t.Logf("ptmx under gVisor: %v", o["detail"])
				return
			}
			if ok, _ := o["ok"].(bool); ok {
				t.Errorf("a pseudo-terminal was opened: %v", o["detail"])
			}
			t.Logf("ptmx: %v", o["detail"])
		})
	}
}

// TestKernel_InodeFloodStopsAtTheCap: empty files in /output and /tmp
// stop at the tmpfs's inode cap with ENOSPC, far below the size cap.
func TestKernel_InodeFloodStopsAtTheCap(t *testing.T) {
	const outputSlack = 64 << 10 // the runner's, on top of limits.output
	for _, tt := range shipped {
		t.Run(tt.profile, func(t *testing.T) {
			p := shippedProfile(t, tt.profile)
			ops := attackOps(t, tt.profile,
				map[string]any{"op": "inode_flood", "dir": "/output"},
				map[string]any{"op": "inode_flood", "dir": "/tmp"},
			)
			for i, max := range []int64{sandbox.TmpfsInodes(p.Limits.OutputBytes + outputSlack), sandbox.TmpfsInodes(p.Limits.ScratchBytes)} {
				o := ops[i]
				created, err := strconv.ParseInt(detail(o, "created"), 10, 64)
				if err != nil {
					t.Fatalf("%v: %v", o, err)
				}
				t.Logf("%s: %d inodes, then %v (cap %d)", []string{"/output", "/tmp"}[i], created, o["errno"], max)
				// The tmpfs root is one of the cap's inodes.
				if o["errno"] != "ENOSPC" || created > max || created < max-8 {
					t.Errorf("%s: %d inodes, stopped by %v (%v); want ENOSPC at the cap of %d", []string{"/output", "/tmp"}[i], created, o["errno"], o["error"], max)
				}
			}
		})
	}
}

// runningJob is a job sleeping in its sandbox, as the host sees it.
type runningJob struct {
	id, profile string
	container   containerd.Container
	hostUID     uint32
	stop        context.CancelFunc
	done        chan struct{}
}

// startSleeper starts a hostile job that sleeps under profile, and waits
// until its task runs.
func startSleeper(t *testing.T, ctx context.Context, profile string) *runningJob {
	t.Helper()
	jctx, stop := context.WithCancel(ctx)
	req := hostileReq("sleep", map[string]string{"seconds": "120"})
	req.Profile = profile
	req.JobId = "kernel-" + profile + "-" + randHex(4)
	j := &runningJob{id: req.JobId, profile: profile, stop: stop, done: make(chan struct{})}
	stream, err := env.brokerOf.SpawnStream(jctx, &airlockv1.SpawnStreamRequest{Spawn: req})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() {
		defer close(j.done)
		for {
			ev, err := stream.Recv()
			if err != nil {
				started <- err
				return
			}
			if ev.GetStarted() != nil {
				started <- nil
			}
		}
	}()
	if err := <-started; err != nil {
		t.Fatalf("job %s did not start: %v", j.id, err)
	}
	j.container = jobContainer(t, ctx, j.id)
	task, err := j.container.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", task.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			ids := strings.Fields(v)
			for _, id := range ids[1:] {
				if id != ids[0] {
					t.Fatalf("job %s: host uids %v differ", j.id, ids)
				}
			}
			n, _ := strconv.ParseUint(ids[0], 10, 32)
			j.hostUID = uint32(n)
		}
	}
	return j
}

// end cancels the job and waits for its stream to end.
func (j *runningJob) end() {
	j.stop()
	<-j.done
}

// TestKernel_EachJobIsAHostUserOfItsOwnAndOwnsItsInputAlone: the agents of
// concurrent jobs of user-namespaced profiles are host users of their own,
// none of them 65534, each on a range claimed for its run while it runs
// and released after; every job's input dir on the host is 0500 with files
// 0400, owned by the agent's host user, under a random name that no ID of
// the job shows.
func TestKernel_EachJobIsAHostUserOfItsOwnAndOwnsItsInputAlone(t *testing.T) {
	ctx := testContext(t)
	var jobs []*runningJob
	// Two secureclaw jobs at once, on runc, whose host users must differ;
	// ironclaw last: its 15 s timeout must not end it before the checks.
	// Under runsc, its agent is not a host process: gVisor's sentry and
	// stubs run as the host's nobody in a user namespace runsc makes.
	for _, profile := range []string{"vanilla", "secureclaw", "secureclaw", "ironclaw"} {
		j := startSleeper(t, ctx, profile)
		defer j.end()
		jobs = append(jobs, j)
	}
	first, last := userns.Block()
	claims, err := userns.NewClaims("", footprint.InstanceID(env.stateDir))
	if err != nil {
		t.Fatal(err)
	}
	held, err := claims.Holders()
	if err != nil {
		t.Fatal(err)
	}
	random := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[uint32]string{}
	namespaced := 0
	for _, j := range jobs {
		p := shippedProfile(t, j.profile)
		t.Logf("%s (%s, user namespace %v): host uid %d", j.id, j.profile, p.Isolation.UserNamespace, j.hostUID)
		hostGID := j.hostUID
		if p.Isolation.Runtime == "runsc" {
			if j.hostUID == 0 {
				t.Errorf("%s: gVisor's sentry runs as host root", j.id)
			}
			continue
		}
		if !p.Isolation.UserNamespace {
			if j.hostUID != p.Isolation.UID {
				t.Errorf("%s: host uid %d, want the profile's %d", j.id, j.hostUID, p.Isolation.UID)
			}
			hostGID = p.Isolation.GID
		} else {
			namespaced++
			if j.hostUID == 65534 || j.hostUID < first || j.hostUID > last {
				t.Errorf("%s: the agent is host uid %d, want one in %d-%d", j.id, j.hostUID, first, last)
			}
			if other, ok := seen[j.hostUID]; ok {
				t.Errorf("%s and %s both run as host uid %d", other, j.id, j.hostUID)
			}
			seen[j.hostUID] = j.id
			r := userns.Range{First: j.hostUID - p.Isolation.UID}
			if held[r] != j.container.ID() {
				t.Errorf("%s: range %d is held by %q, want its run %s", j.id, r.First, held[r], j.container.ID())
			}
		}

		spec, err := j.container.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		input := ""
		for _, m := range spec.Mounts {
			if m.Destination == "/input" {
				input = m.Source
			}
		}
		name := filepath.Base(filepath.Dir(input))
		if !random.MatchString(name) {
			t.Errorf("%s: job dir %q is not a random name", j.id, name)
		}
		for what, id := range map[string]string{"run": j.container.ID(), "job": j.id, "cgroup": spec.Linux.CgroupsPath} {
			if strings.Contains(id, name) || strings.Contains(name, strings.TrimPrefix(id, "airlock-")) {
				t.Errorf("%s: job dir %q and the %s ID %q show each other", j.id, name, what, id)
			}
		}
		n := 0
		err = filepath.WalkDir(input, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			st := info.Sys().(*syscall.Stat_t)
			want := os.FileMode(0o400)
			if d.IsDir() {
				want = 0o500
			}
			if info.Mode().Perm() != want || st.Uid != j.hostUID || st.Gid != hostGID {
				t.Errorf("%s: %s is %#o %d:%d, want %#o %d:%d", j.id, path, info.Mode().Perm(), st.Uid, st.Gid, want, j.hostUID, hostGID)
			}
			n++
			return nil
		})
		if err != nil || n < 4 {
			t.Errorf("%s: walked %d entries of %s: %v", j.id, n, input, err)
		}
	}
	if namespaced < 2 {
		t.Fatalf("%d user-namespaced jobs ran at once, want at least 2", namespaced)
	}
	for _, j := range jobs {
		j.end()
	}
	requireNothingLeft(t)
	held, err = claims.Holders()
	if err != nil || len(held) != 0 {
		t.Errorf("ranges still claimed after the jobs: %v, %v", held, err)
	}
}

// usernsToolsProfile is vanilla with a user namespace: exec in a job whose
// users are a range of their own.
const usernsToolsProfile = `extends: vanilla
isolation:
  userNamespace: true
`

// TestKernel_UserNamespacedJobsSeeTheirOwnRangeAndRunTools: inside, a
// user-namespaced job's uid_map is its own range, and the tool gateway's
// commands, in the tools group the host maps for them, still run and read
// the input, which only the job's host user can.
func TestKernel_UserNamespacedJobsSeeTheirOwnRangeAndRunTools(t *testing.T) {
	dir, err := os.MkdirTemp("", "airlock-userns-")
	if err != nil {
		t.Fatal(err)
	}
	stops = append(stops, func() error { return os.RemoveAll(dir) })
	if err := footprint.MkdirTraversable(dir); err != nil {
		t.Fatal(err)
	}
	_, conn, err := startServer(dir, map[string]string{"usernstools.yaml": usernsToolsProfile}, func(o *server.Options) {
		o.EgressPool = netip.MustParsePrefix("10.214.253.0/24")
		o.ProxyPort = 3132
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	first, last := userns.Block()
	// The tools world has no hostile image; the suite's broker reads
	// uid_map in a user-namespaced profile on runc (gVisor shows its own).
	req := hostileReq("proc_status", nil)
	req.Profile = "secureclaw"
	m := strings.Fields(resultMap(t, spawn(t, req), "status")["uid_map"])
	if len(m) != 3 || m[0] != "0" || m[2] != strconv.Itoa(userns.Size) {
		t.Fatalf("uid_map %q, want 0 <range> %d", m, userns.Size)
	}
	if base, _ := strconv.ParseUint(m[1], 10, 32); base < uint64(first) || base+userns.Size-1 > uint64(last) || base == uint64(userns.Shared.First) {
		t.Errorf("uid_map %q maps outside the block %d-%d", m, first, last)
	}
	resp, err := conn.Broker.Spawn(ctx, runReq("usernstools", []string{"cat", "/input/content/0"}, []string{"wc", "-c", "/input/job.json"}))
	if err != nil {
		t.Fatal(err)
	}
	calls := callsOf(t, resp)
	if len(calls) != 2 || !calls[0].Allowed || calls[0].ExitCode != 0 || calls[0].Stdout != "twelve bytes" {
		t.Fatalf("cat under a user namespace: %+v", calls)
	}
	if c := calls[1]; !c.Allowed || c.ExitCode != 0 {
		t.Errorf("wc of job.json under a user namespace: %+v", c)
	}
	t.Logf("tools group %d runs busybox in a user namespace: %s", images.ToolsGID, mustJSON(calls))
}

// TestKernel_RunscJobsReachGVisorNotTheHost: an ironclaw job's system calls
// reach gVisor's kernel, whose release is not the host's; a runc job's
// reach the host's.
func TestKernel_RunscJobsReachGVisorNotTheHost(t *testing.T) {
	var host unix.Utsname
	if err := unix.Uname(&host); err != nil {
		t.Fatal(err)
	}
	hostRelease := unix.ByteSliceToString(host.Release[:])
	for _, tt := range shipped {
		t.Run(tt.profile, func(t *testing.T) {
			release := detail(attackOps(t, tt.profile, map[string]any{"op": "uname"})[0], "release")
			t.Logf("%s (%s): uname -r %q, host %q", tt.profile, tt.runtime, release, hostRelease)
			if release == "" {
				t.Fatal("uname read nothing")
			}
			if onHost := release == hostRelease; onHost != (tt.runtime != "runsc") {
				t.Errorf("%s on %s reports kernel %q, host %q", tt.profile, tt.runtime, release, hostRelease)
			}
		})
	}
}

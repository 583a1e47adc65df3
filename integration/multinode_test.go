//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/airlock/airlock/broker/client"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/footprint"
)

// The three-node world: three airlockd processes of the shipped binary on
// this host, each with its own state dir (so its own containerd), address
// pool and metrics port, all serving one port on 127.0.0.1, .2 and .3 and
// sharing one token, as pods of a DaemonSet behind a headless Service do.
// One client balances over them with a manual resolver standing in for
// dns:///.
const (
	multiNodes      = 3
	spreadJobs      = 300
	spreadTolerance = 0.20
	killJobs        = 90
	drainJobs       = 30
	jobConcurrency  = 6
)

type multiNode struct {
	nodes []*daemonProc
	// health are the nodes' --health-listen addresses, as a kubelet
	// probes them: plaintext, no token.
	health []string
	conn   *client.Conn
}

// node is the node whose advertised address is addr.
func (m *multiNode) node(addr string) int {
	for i, d := range m.nodes {
		if d.listen == addr {
			return i
		}
	}
	return -1
}

func startMultiNode(t *testing.T) *multiNode {
	t.Helper()
	// Two free ports, held together so that they differ: the API's and
	// the health listener's.
	var ports [2]int
	var held []net.Listener
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range held {
		l.Close()
	}
	port := ports[0]
	token := randHex(32)
	m := &multiNode{}
	var st resolver.State
	for i := range multiNodes {
		m.health = append(m.health, fmt.Sprintf("127.0.0.%d:%d", i+1, ports[1]))
		d, err := newDaemon("",
			"--health-listen", m.health[i],
			"--egress-pool", fmt.Sprintf("10.217.%d.0/24", i+1),
			"--drain-grace", "60s",
			"--max-concurrent", "4", "--max-queue", "8")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.stop() })
		d.reference, d.listen, d.token = true, fmt.Sprintf("127.0.0.%d:%d", i+1, port), token
		if err := os.WriteFile(d.tokenFile, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d.dir, "policies", "toolsask.yaml"), []byte(askProfile), 0o600); err != nil {
			t.Fatal(err)
		}
		m.nodes = append(m.nodes, d)
		st.Addresses = append(st.Addresses, resolver.Address{Addr: d.listen})
	}
	errs := make(chan error, multiNodes)
	for _, d := range m.nodes {
		go func() { errs <- d.start() }()
	}
	for range multiNodes {
		if err := <-errs; err != nil {
			t.Fatalf("start: %v", err)
		}
	}
	r := manual.NewBuilderWithScheme("airlocktest")
	r.InitialState(st)
	conn, err := client.DialTarget(fmt.Sprintf("airlocktest:///airlockd.test:%d", port), m.nodes[0].tokenFile, client.WithResolver(r))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	m.conn = conn
	return m
}

func pageJob(i int) *airlockv1.SpawnRequest {
	return &airlockv1.SpawnRequest{
		Profile: "vanilla",
		Task:    &airlockv1.Task{Name: "extract_text"},
		Content: []*airlockv1.Content{{Data: []byte(fmt.Sprintf("<html><head><title>Page %d</title></head><body><p>Cheap.</p></body></html>", i)),
			MediaType: "text/html"}},
		ResultSchema: anyObject,
	}
}

// jobRun is what one call returned.
type jobRun struct {
	resp *airlockv1.SpawnResponse
	err  error
}

// runJobs runs n page jobs through the balancing client, c at a time, and
// returns every call's outcome; after is called with each finished count.
func (m *multiNode) runJobs(t *testing.T, n, c int, after func(done int)) []jobRun {
	t.Helper()
	ctx := testContext(t)
	out := make([]jobRun, n)
	next := make(chan int)
	var done atomic.Int64
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for i := range next {
				resp, err := m.conn.Broker.Spawn(ctx, pageJob(i))
				out[i] = jobRun{resp, err}
				if after != nil {
					after(int(done.Add(1)))
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// perNode counts the jobs that ran OK on each node by their responses;
// any call that failed or was not OK fails the test.
func (m *multiNode) perNode(t *testing.T, runs []jobRun) []int {
	t.Helper()
	counts := make([]int, multiNodes)
	for i, r := range runs {
		if r.err != nil {
			t.Errorf("job %d: %v", i, r.err)
			continue
		}
		if r.resp.GetVerdict() != airlockv1.Verdict_VERDICT_OK {
			t.Errorf("job %d: %v %s", i, r.resp.GetVerdict(), r.resp.GetMessage())
		}
		n := m.node(r.resp.GetNode())
		if n < 0 {
			t.Fatalf("job %d names node %q, none of the three", i, r.resp.GetNode())
		}
		counts[n]++
	}
	return counts
}

// audited is how many jobs d's audit log holds.
func audited(t *testing.T, d *daemonProc) int {
	t.Helper()
	recs, err := auditRecords(d.auditLog)
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

func auditedAll(t *testing.T, m *multiNode) []int {
	out := make([]int, multiNodes)
	for i, d := range m.nodes {
		out[i] = audited(t, d)
	}
	return out
}

// healthOf asks a node's health listener, as a readiness probe does:
// plaintext, without a token.
func healthOf(t *testing.T, addr string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: airlockv1.Broker_ServiceDesc.ServiceName})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return r.GetStatus()
}

// TestMultiNode_ThreeBrokersBehindOneBalancingClient is the scale-out
// contract on one host: jobs spread evenly, a job's calls find its node, a
// broker killed mid-run loses no job and, restarted, leaves nothing, and a
// draining broker gets no new job while its own finishes.
func TestMultiNode_ThreeBrokersBehindOneBalancingClient(t *testing.T) {
	began := time.Now()
	m := startMultiNode(t)
	t.Logf("three nodes up in %v", time.Since(began).Round(time.Millisecond))

	t.Run("jobs spread within 20 percent", func(t *testing.T) {
		start, before := time.Now(), auditedAll(t, m)
		counts := m.perNode(t, m.runJobs(t, spreadJobs, jobConcurrency, nil))
		elapsed := time.Since(start)
		after := auditedAll(t, m)
		want := float64(spreadJobs) / multiNodes
		for i, n := range counts {
			if float64(n) < want*(1-spreadTolerance) || float64(n) > want*(1+spreadTolerance) {
				t.Errorf("node %s ran %d of %d jobs, outside %.0f±%.0f%%", m.nodes[i].listen, n, spreadJobs, want, spreadTolerance*100)
			}
			if got := after[i] - before[i]; got != n {
				t.Errorf("node %s: %d jobs by the responses, %d in its audit log", m.nodes[i].listen, n, got)
			}
		}
		t.Logf("%d jobs at concurrency %d in %v (%.1f jobs/s): per node %v", spreadJobs, jobConcurrency, elapsed.Round(time.Millisecond),
			float64(spreadJobs)/elapsed.Seconds(), counts)
	})

	t.Run("GetJob and Approve reach the job's node", func(t *testing.T) {
		seen := map[string]bool{}
		for range multiNodes {
			ctx := testContext(t)
			stream, err := m.conn.Broker.SpawnStream(ctx, &airlockv1.SpawnStreamRequest{Spawn: runReq("toolsask", headN)})
			if err != nil {
				t.Fatal(err)
			}
			var node string
			_, job := approveEach(t, m.conn.Broker, stream, func(id string) { node = m.conn.Node(id) },
				airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE)
			if v := execVerdicts(job); v != "APPROVED" {
				t.Fatalf("exec decisions = %s: the approval did not reach the job", v)
			}
			if job.GetNode() != node || m.node(node) < 0 {
				t.Fatalf("job ran on %q, the client routed its approval to %q", job.GetNode(), node)
			}
			seen[node] = true
			got, err := m.conn.Broker.GetJob(ctx, &airlockv1.GetJobRequest{JobId: job.GetJobId()})
			if err != nil || got.GetJob().GetNode() != node || got.GetJob().GetVerdict() != airlockv1.Verdict_VERDICT_OK {
				t.Fatalf("GetJob = %v, %v; want the OK job from %s", got, err, node)
			}
			// Only the owner knows the job: routing is what made the
			// calls above work.
			for _, d := range m.nodes {
				if d.listen == node {
					continue
				}
				if _, err := d.conn.Broker.GetJob(ctx, &airlockv1.GetJobRequest{JobId: job.GetJobId()}); status.Code(err) != codes.NotFound {
					t.Errorf("GetJob on %s, which did not run the job: %v, want NotFound", d.listen, err)
				}
			}
		}
		if len(seen) < 2 {
			t.Errorf("three streamed jobs all ran on %v: routing was not tested across nodes", seen)
		}
	})

	t.Run("the Node client balances too", func(t *testing.T) {
		start := time.Now()
		var addrs []string
		for _, d := range m.nodes {
			addrs = append(addrs, d.listen)
		}
		runs := nodeClientJobs(t, "ipv4:"+strings.Join(addrs, ","), m.nodes[0].tokenFile, 9)
		seen := map[string]int{}
		for _, r := range runs {
			if r.Verdict != "VERDICT_OK" || r.JobID == "" || m.node(r.Node) < 0 {
				t.Errorf("a Node client job: %+v", r)
			}
			seen[r.Node]++
		}
		if len(seen) != multiNodes {
			t.Errorf("the Node client's 9 jobs ran on %v, want all three nodes", seen)
		}
		t.Logf("Node client: 9 jobs on %v, in %v with npm ci", seen, time.Since(start).Round(time.Millisecond))
	})

	t.Run("kill -9 loses no job and the restart leaves nothing", func(t *testing.T) {
		victim := m.nodes[0]
		start := time.Now()
		var killed sync.Once
		killedAt := make(chan int, 1)
		runs := m.runJobs(t, killJobs, jobConcurrency, func(done int) {
			if done < killJobs/3 {
				return
			}
			killed.Do(func() {
				// Mid-job: once the victim holds a running job's dir.
				if !waitFor(10*time.Second, func() bool { e, _ := os.ReadDir(filepath.Join(victim.dir, "state", "jobs")); return len(e) > 0 }) {
					t.Error("the victim ran no job to be killed in")
				}
				victim.kill9()
				killedAt <- done
			})
		})
		counts := m.perNode(t, runs)
		t.Logf("%d jobs, node %s killed after %d: all returned in %v, per node %v", killJobs, victim.listen, <-killedAt,
			time.Since(start).Round(time.Millisecond), counts)
		if left := daemonJobDirs(victim); len(left) == 0 {
			t.Fatal("the killed node left no job dir: it was killed between jobs, and the restart proves nothing")
		}

		if err := victim.start(); err != nil {
			t.Fatalf("restart: %v", err)
		}
		if left := nodeLeftovers(t, victim); len(left) != 0 {
			t.Errorf("after the restart: %v", left)
		}
		if pids := sandboxProcesses(filepath.Join(victim.dir, "state"), "/airlock-agent"); len(pids) != 0 {
			t.Errorf("sandboxed processes still running: %v", pids)
		}
		// The client finds it again.
		before := audited(t, victim)
		eventually(t, 30*time.Second, func() bool {
			m.runJobs(t, multiNodes, 1, nil)
			return audited(t, victim) > before
		}, "the restarted node got no job")
	})

	t.Run("a draining node gets no new jobs", func(t *testing.T) {
		d := m.nodes[2]
		ctx := testContext(t)
		stream, err := d.conn.Broker.SpawnStream(ctx, &airlockv1.SpawnStreamRequest{Spawn: runReq("toolsask", headN)})
		if err != nil {
			t.Fatal(err)
		}
		var asked *airlockv1.SpawnStreamResponse
		for asked == nil {
			ev, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if ev.GetApprovalNeeded() != nil {
				asked = ev
			}
		}
		// The client must know where the job runs: it was spawned on the
		// node's own connection, so the caller says.
		onNode := client.OnNode(ctx, d.listen)
		if st := healthOf(t, m.health[2]); st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health before the drain: %v", st)
		}
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() bool { return healthOf(t, m.health[2]) == healthpb.HealthCheckResponse_NOT_SERVING }, "health of the draining node")
		before := audited(t, d)
		counts := m.perNode(t, m.runJobs(t, drainJobs, jobConcurrency, nil))
		if counts[2] != 0 || audited(t, d) != before {
			t.Errorf("the draining node ran %d jobs (audit %d → %d)", counts[2], before, audited(t, d))
		}
		// A Spawn sent before the client saw the health change would have
		// been refused (UNAVAILABLE) and retried elsewhere; count them.
		refused := "0"
		if mt := regexp.MustCompile(`airlock_spawn_rejected_total\{reason="draining"\} (\d+)`).FindStringSubmatch(scrapeMetrics(t, d)); mt != nil {
			refused = mt[1]
		}
		if _, err := m.conn.Broker.Approve(onNode, &airlockv1.ApproveRequest{JobId: asked.GetJobId(), RequestId: asked.GetApprovalNeeded().GetRequestId(),
			Decision: airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE}); err != nil {
			t.Fatalf("Approve on the draining node: %v", err)
		}
		var done *airlockv1.Job
		for done == nil {
			ev, err := stream.Recv()
			if err != nil {
				t.Fatalf("the draining node's job: %v", err)
			}
			done = ev.GetDone()
		}
		if done.GetVerdict() != airlockv1.Verdict_VERDICT_OK || execVerdicts(done) != "APPROVED" {
			t.Errorf("the draining node's job: %v %s, exec %s", done.GetVerdict(), done.GetMessage(), execVerdicts(done))
		}
		select {
		case <-d.exited:
		case <-time.After(30 * time.Second):
			t.Fatal("the drained node did not exit once its job finished")
		}
		if left := daemonJobDirs(d); len(left) != 0 {
			t.Errorf("the drained node left %v", left)
		}
		t.Logf("%d jobs while node %s drained: per node %v; the draining node refused %s attempts", drainJobs, d.listen, counts, refused)
	})
	t.Logf("three-node test: %v", time.Since(began).Round(time.Millisecond))
}

// nodeJob is what nodeClientJobs reads of each response.
type nodeJob struct {
	JobID   string `json:"job_id"`
	Verdict string `json:"verdict"`
	Node    string `json:"node"`
}

// nodeClientJobs runs n page jobs one after another through one channel
// of examples/node's spawnJob to target, and returns their responses.
func nodeClientJobs(t *testing.T, target, tokenFile string, n int) []nodeJob {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH (make deps installs it): %v", err)
	}
	dir := nodeClientCopy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	script := fmt.Sprintf(`const { spawnJob, closeClients } = require('./spawn.js');
(async () => {
  const out = [];
  for (let i = 0; i < %d; i++) {
    const r = await spawnJob({ content: '<title>Node ' + i + '</title>', mediaType: 'text/html', profile: 'vanilla', task: 'extract_text', deadlineSeconds: 60 });
    out.push({ job_id: r.job_id, verdict: r.verdict, node: r.node });
  }
  closeClients();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e.message); process.exit(1); });
`, n)
	if err := os.WriteFile(filepath.Join(dir, "balance.js"), []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, node, "balance.js")
	cmd.Dir = dir
	cmd.Env = append(withoutAirlockEnv(os.Environ()), "AIRLOCK_ADDR="+target, "AIRLOCK_TOKEN_FILE="+tokenFile)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node balance.js: %v\n%s", err, out)
	}
	var runs []nodeJob
	if err := json.Unmarshal(out, &runs); err != nil || len(runs) != n {
		t.Fatalf("node balance.js printed %q: %v", out, err)
	}
	return runs
}

// daemonJobDirs lists d's job dirs and the mounts under them.
func daemonJobDirs(d *daemonProc) []string {
	var out []string
	entries, _ := os.ReadDir(filepath.Join(d.dir, "state", "jobs"))
	for _, e := range entries {
		out = append(out, "job dir "+e.Name())
	}
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], filepath.Join(d.dir, "state")+"/") && !strings.HasPrefix(f[4], filepath.Join(d.dir, "state", "containerd")+"/") {
			out = append(out, "mount "+f[4])
		}
	}
	return out
}

// nodeLeftovers is daemonLeftovers (job dirs, mounts, netns, veths, live
// sandboxes) plus what d's own containerd holds: containers, tasks, active
// snapshots and leases of Airlock's namespace, and the cgroups of runs.
func nodeLeftovers(t *testing.T, d *daemonProc) []string {
	t.Helper()
	ctx := testContext(t)
	c, err := containerd.New(filepath.Join(d.dir, "state", "containerd", "containerd.sock"), containerd.WithDefaultNamespace(footprint.Namespace))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var left []string
	waitFor(30*time.Second, func() bool {
		left = append(daemonLeftovers(d), daemonJobDirs(d)...)
		in, err := containerdLeftovers(ctx, c)
		if err != nil {
			in = []string{"containerd: " + err.Error()}
		}
		left = append(append(left, in...), cgroupLeftovers(filepath.Join(d.dir, "state"))...)
		return len(left) == 0
	})
	return left
}

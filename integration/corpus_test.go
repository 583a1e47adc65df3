//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// payload is one line of the injected-payload corpus.
type payload struct {
	ID       string           `json:"id"`
	Category string           `json:"category"`
	Content  string           `json:"content"`
	Attack   []map[string]any `json:"attack"`
	Expect   map[string]any   `json:"expect"`
}

// corpusSchema lets the hostile report through but nothing else: a result
// that adds fields (res-schema-escape) fails it.
const corpusSchema = `{"type":"object","additionalProperties":false,
  "properties":{"title":{"type":"string"},"summary":{"type":"string"},"ops":{"type":"array"}}}`

func loadCorpus(t *testing.T) []payload {
	t.Helper()
	f, err := os.Open("testdata/payloads.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []payload
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var p payload
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("corpus line %q: %v", sc.Text(), err)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		t.Fatal("empty corpus")
	}
	return out
}

// profilesFor says where an attack applies: network attacks need a
// network to attack, so they run under the allowlist profile; everything
// else runs under every shipped profile and the allowlist one.
func profilesFor(p payload) []string {
	switch p.Category {
	case "exfiltration", "ssrf":
		return []string{"egresstest"}
	}
	if strings.HasPrefix(p.ID, "egress-") {
		return []string{"egresstest"}
	}
	return []string{"vanilla", "secureclaw", "ironclaw", "egresstest"}
}

// fill replaces the corpus placeholders. PROXY_HOST and PROXY_PORT_PLUS_1
// are left for the sandbox, which alone knows its gateway.
func fill(d *daemonProc, s string) string {
	forbidden := fmt.Sprintf("127.0.0.1:%d", world.forbidden.port())
	return strings.NewReplacer(
		"{{CANARY}}", d.canary,
		"{{BROKER_TOKEN}}", d.token,
		"{{SERVICE_KEY}}", world.serviceKey,
		"{{FORBIDDEN_URL}}", "http://"+forbidden+"/",
		"{{FORBIDDEN_HOST}}", "127.0.0.1",
		`"{{FORBIDDEN_PORT}}"`, fmt.Sprint(world.forbidden.port()),
		"{{FORBIDDEN_PORT}}", fmt.Sprint(world.forbidden.port()),
		"{{ALLOWED_URL}}", strings.TrimSuffix(world.allowed.URL, "/"),
		"{{ALLOWED_HOST}}", fmt.Sprintf("127.0.0.1:%d", world.allowed.port()),
		"{{REBIND_NAME}}", fmt.Sprintf("localhost:%d", world.forbidden.port()),
		"{{BROKER_METRICS_PORT}}", fmt.Sprint(d.metricsPort),
	).Replace(s)
}

// corpusReq turns a payload into a spawn request under profile.
func corpusReq(t *testing.T, d *daemonProc, p payload, profile string) *airlockv1.SpawnRequest {
	t.Helper()
	attack, err := json.Marshal(p.Attack)
	if err != nil {
		t.Fatal(err)
	}
	// No attack needs long: a short deadline keeps the endless ones
	// (res-forever, fork bombs) to seconds. A payload that must end in
	// OOM keeps its profile's own deadline, which a short one could beat on
	// a loaded host, where filling the limit and the kernel's reclaim
	// before the kill are slow; a hog that ends sooner ends sooner anyway.
	overrides := &airlockv1.Overrides{Timeout: durationpb.New(10 * time.Second)}
	if p.Expect["verdict"] == "OOM" {
		overrides = nil
	}
	return &airlockv1.SpawnRequest{
		Profile:      profile,
		Task:         &airlockv1.Task{Name: "attack", Params: map[string]string{"attack": fill(d, string(attack))}},
		Content:      []*airlockv1.Content{{Data: []byte(fill(d, p.Content)), MediaType: "text/plain", Source: "corpus:" + p.ID}},
		ResultSchema: corpusSchema,
		Overrides:    overrides,
		Labels:       map[string]string{"payload": p.ID},
	}
}

func TestCorpus(t *testing.T) { runCorpus(t, airlockd(t), "") }

var (
	crunOnce   sync.Once
	crunDaemon *daemonProc
	crunErr    error
)

// The corpus holds under crun as under runc: every profile of a second
// airlockd runs on crun, with its own egress pool.
func TestCorpus_UnderCrun(t *testing.T) {
	crunOnce.Do(func() {
		crunDaemon, crunErr = startDaemonOn("crun", "--egress-pool", "10.215.0.0/16")
		if crunDaemon != nil {
			stops = append(stops, crunDaemon.stop)
		}
	})
	if crunErr != nil {
		t.Fatalf("airlockd on crun: %v", crunErr)
	}
	corpusOn(t, crunDaemon, "crun")
}

// TestCorpus_UnderRunsc runs the whole corpus with every profile on gVisor,
// the allowlist one included: egress through the job's namespace and the
// proxy, and nothing else, holds under gVisor's network stack too.
func TestCorpus_UnderRunsc(t *testing.T) { corpusOn(t, runscDaemon(t), "runsc") }

// corpusOn runs the corpus on d, whose profiles all name runtime, and
// checks that every job, and every audit record, says it ran there and
// that nothing is left.
func corpusOn(t *testing.T, d *daemonProc, runtime string) {
	runCorpus(t, d, runtime)
	requireDaemonNothingLeft(t, d)
	b, err := os.ReadFile(d.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	// Only whole lines: a job's record may be on its way.
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, line := range lines {
		var rec struct{ Runtime string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Runtime != runtime {
			t.Fatalf("audit record %s: runtime %q (%v), want %s", line, rec.Runtime, err, runtime)
		}
	}
	if len(lines) < 35 {
		t.Fatalf("only %d audit records", len(lines))
	}
}

// runCorpus runs every payload under each of its profiles on d, whose
// jobs must say they ran on runtime, or, when it is empty, on the runtime
// the shipped profile names.
func runCorpus(t *testing.T, d *daemonProc, runtime string) {
	corpus := loadCorpus(t)
	var mu sync.Mutex
	table := map[string]map[string]string{}
	for _, p := range corpus {
		for _, profile := range profilesFor(p) {
			t.Run(p.ID+"/"+profile, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				resp, err := d.conn.Broker.Spawn(ctx, corpusReq(t, d, p, profile))
				if err != nil {
					t.Fatalf("payload %s: Spawn: %v", p.ID, err)
				}
				checkPayload(t, d, p, resp)
				checkInvariants(t, d, resp)
				want := cmp.Or(runtime, shippedRuntime(t, profile))
				if got := runtimeOf(resp); got != want {
					t.Errorf("payload %s ran on %q, want runtime %s", p.ID, resp.GetPolicy().GetSummary(), want)
				}
				mu.Lock()
				if table[p.ID] == nil {
					table[p.ID] = map[string]string{}
				}
				verdict := strings.TrimPrefix(resp.Verdict.String(), "VERDICT_")
				if t.Failed() {
					verdict = "FAIL " + verdict
				}
				table[p.ID][profile] = verdict
				mu.Unlock()
			})
		}
	}
	logTable(t, corpus, table)
}

func logTable(t *testing.T, corpus []payload, table map[string]map[string]string) {
	profiles := []string{"vanilla", "secureclaw", "ironclaw", "egresstest"}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-34s", "payload")
	for _, pr := range profiles {
		fmt.Fprintf(&b, " %-16s", pr)
	}
	for _, p := range corpus {
		fmt.Fprintf(&b, "\n%-34s", p.ID)
		for _, pr := range profiles {
			v := table[p.ID][pr]
			if v == "" {
				v = "-"
			}
			fmt.Fprintf(&b, " %-16s", v)
		}
	}
	t.Log(b.String())
}

// checkPayload asserts the payload's own expect block.
func checkPayload(t *testing.T, d *daemonProc, p payload, resp *airlockv1.SpawnResponse) {
	t.Helper()
	verdict := strings.TrimPrefix(resp.Verdict.String(), "VERDICT_")
	where := func(format string, a ...any) string { return p.ID + ": " + fmt.Sprintf(format, a...) }
	ops := outcomes(resp)
	for key, want := range p.Expect {
		switch key {
		case "note", "broker_healthy", "nothing_left_behind", "other_jobs_unaffected":
			// Checked for every payload by checkInvariants.
		case "verdict":
			if verdict != want {
				t.Errorf("%s", where("verdict %s (%s), want %v", verdict, resp.Message, want))
			}
		case "verdict_in":
			if !slices.Contains(strs(want), verdict) {
				t.Errorf("%s", where("verdict %s (%s), want one of %v", verdict, resp.Message, want))
			}
		case "result_must_not_contain":
			checkAbsent(t, d, resp, strs(fill(d, mustJSON(want))), p.ID)
		case "all_ops", "op_result":
			if resp.Verdict != airlockv1.Verdict_VERDICT_OK {
				t.Errorf("%s", where("verdict %s (%s): no op outcomes to check %s", verdict, resp.Message, key))
				continue
			}
			for i, o := range ops {
				if msg := opMeets(o, want.(string), runtimeOf(resp)); msg != "" {
					t.Errorf("%s", where("op %d %v: %s: %v", i, o["op"], msg, o))
				}
			}
		case "forbidden_server_hits":
			requireNoForbiddenHits(t)
		case "egress_log_contains":
			if !strings.Contains(egressLog(resp), "allowed=false") {
				t.Errorf("%s", where("egress log lacks a denial:\n%s", egressLog(resp)))
			}
		case "uid_nonzero", "no_new_privileges":
			for _, o := range ops {
				det, _ := o["detail"].(map[string]any)
				if key == "uid_nonzero" && (fmt.Sprint(det["uid"]) == "0" || fmt.Sprint(det["euid"]) == "0") {
					t.Errorf("%s", where("ran as root: %v", det))
				}
				if key == "no_new_privileges" && fmt.Sprint(det["no_new_privs"]) != "1" {
					t.Errorf("%s", where("no_new_privs = %v", det["no_new_privs"]))
				}
			}
		case "host_file_not_read":
			if strings.Contains(protojson.Format(resp), "root:x:0:0") {
				t.Errorf("%s", where("a passwd file crossed back"))
			}
		case "host_disk_unchanged":
			// The fills write to tmpfs mounts sized by the profile; what
			// matters is that they ended and the broker is healthy.
		case "report_mentions":
			if !reportHas(resp, want.(string)) {
				t.Errorf("%s", where("sanitization report does not mention %q: %v", want, resp.Sanitization))
			}
		case "report_flags":
			for _, f := range strs(want) {
				if !reportHas(resp, f) {
					t.Errorf("%s", where("sanitization report lacks flag %q: %v", f, resp.Sanitization))
				}
			}
		default:
			t.Errorf("%s", where("unknown expectation %q: teach the harness", key))
		}
	}
}

// opMeets checks one op outcome against an expectation word, for a job that
// ran on runtime.
func opMeets(o map[string]any, want, runtime string) string {
	ok := o["ok"] == true
	errno, _ := o["errno"].(string)
	if want == "fail_eperm" && runtime == "runsc" {
		// gVisor's kernel refuses with the errno of what it lacks: no
		// /proc/1/ns/mnt to open (ENOENT), a system call it does not
		// implement (ENOSYS). Refused is what the payload asks.
		want = "fail_refused"
	}
	switch want {
	case "fail_refused":
		if ok || !slices.Contains([]string{"EPERM", "EACCES", "ENOENT", "ENOSYS", "EINVAL"}, errno) {
			return "want a refusal"
		}
	case "allowed":
		if !ok {
			return "want allowed"
		}
	case "denied_by_proxy":
		if ok || o["denied_by_proxy"] != true {
			return "want a refusal by the egress proxy"
		}
	case "fail":
		if ok {
			return "want failure"
		}
	case "fail_eperm":
		if ok || errno != "EPERM" {
			return "want EPERM"
		}
	case "fail_not_found_or_denied":
		if ok || !slices.Contains([]string{"ENOENT", "EACCES", "EPERM", "ECONNREFUSED", "ENOTDIR"}, errno) {
			return "want ENOENT, EACCES or EPERM"
		}
	case "fail_read_only":
		if ok || !slices.Contains([]string{"EROFS", "EACCES", "EPERM", "ENOENT"}, errno) {
			return "want a read-only failure"
		}
	case "fail_eperm_or_only_own":
		if ok && fmt.Sprint(o["op"]) != "kill_all" {
			return "want EPERM"
		}
		if !ok && errno != "EPERM" && errno != "ESRCH" {
			return "want EPERM"
		}
	default:
		return "unknown op expectation " + want
	}
	return ""
}

func outcomes(resp outcome) []map[string]any {
	var out []map[string]any
	for _, v := range resp.GetResult().GetFields()["ops"].GetListValue().GetValues() {
		out = append(out, v.GetStructValue().AsMap())
	}
	return out
}

func reportHas(resp *airlockv1.SpawnResponse, s string) bool {
	for _, f := range resp.GetSanitization().GetFindings() {
		if strings.Contains(f.Path, s) || strings.Contains(f.Kind, s) || strings.Contains(f.Detail, s) {
			return true
		}
	}
	return false
}

// checkInvariants asserts what must hold after every payload: no secret
// anywhere it could leak, no forbidden hit, a healthy broker that still
// runs a normal job, and nothing left behind.
func checkInvariants(t *testing.T, d *daemonProc, resp *airlockv1.SpawnResponse) {
	t.Helper()
	checkAbsent(t, d, resp, []string{d.canary, d.token, world.serviceKey}, resp.JobId)
	requireNoForbiddenHits(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	normal, err := d.conn.Broker.Spawn(ctx, &airlockv1.SpawnRequest{
		Profile: "ironclaw", Task: &airlockv1.Task{Name: "attack", Params: map[string]string{"attack": `[{"op":"write_result","result":{"title":"ok","summary":"fine"}}]`}},
		Content: []*airlockv1.Content{{Data: []byte("benign")}}, ResultSchema: corpusSchema,
	})
	if err != nil || normal.Verdict != airlockv1.Verdict_VERDICT_OK || normal.Result.Fields["title"].GetStringValue() != "ok" {
		t.Errorf("a normal job after the attack: %v %v", normal, err)
	}
	requireDaemonNothingLeft(t, d)
}

// checkAbsent fails if any of secrets appears in the response, the audit
// log, the egress log or a request a test server received.
func checkAbsent(t *testing.T, d *daemonProc, resp *airlockv1.SpawnResponse, secrets []string, what string) {
	t.Helper()
	places := map[string]string{"response": protojson.Format(resp), "egress log": egressLog(resp)}
	if b, err := os.ReadFile(d.auditLog); err == nil {
		places["audit log"] = string(b)
	}
	for _, s := range []*hitServer{world.allowed, world.forbidden, world.upstream} {
		for _, h := range s.seenHeaders() {
			for k, v := range h {
				// The upstream is meant to receive the service key.
				if s == world.upstream && k == "X-Api-Key" {
					continue
				}
				places["test server request"] += k + ": " + strings.Join(v, ",") + "\n"
			}
		}
	}
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		for place, text := range places {
			if strings.Contains(text, secret) {
				t.Errorf("%s: %q appears in the %s", what, secret, place)
			}
		}
	}
}

// requireDaemonNothingLeft checks the daemon's state: no job dirs, mounts
// or network, and health still serving.
func requireDaemonNothingLeft(t *testing.T, d *daemonProc) {
	t.Helper()
	var left []string
	if !waitFor(30*time.Second, func() bool { left = daemonLeftovers(d); return len(left) == 0 }) {
		t.Fatalf("left behind: %v", left)
	}
}

func daemonLeftovers(d *daemonProc) []string {
	var out []string
	entries, _ := os.ReadDir(d.dir + "/state/jobs")
	for _, e := range entries {
		out = append(out, "job dir "+e.Name())
	}
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], d.dir+"/state/jobs") {
			out = append(out, "mount "+f[4])
		}
	}
	out = append(out, runscLeftovers(filepath.Join(d.dir, "state"))...)
	base, _ := leftovers(context.Background())
	for _, l := range base {
		if strings.HasPrefix(l, "netns") || strings.HasPrefix(l, "veth") {
			out = append(out, l)
		}
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", d.metricsPort))
	if err != nil {
		return append(out, "metrics unreachable: "+err.Error())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "airlock_sandboxes_live 0") {
		out = append(out, "sandboxes still live per metrics")
	}
	return out
}

func strs(v any) []string {
	var out []string
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
	case []string:
		out = x
	case string:
		var list []string
		if json.Unmarshal([]byte(x), &list) == nil {
			return list
		}
		out = []string{x}
	}
	return out
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestCorpus_ConcurrentWithBenignJobs runs attacks 8 at a time mixed with
// benign jobs: every benign job must succeed with its correct result.
func TestCorpus_ConcurrentWithBenignJobs(t *testing.T) {
	d := airlockd(t)
	corpus := loadCorpus(t)
	type benign struct {
		latency time.Duration
		err     string
	}
	var (
		mu      sync.Mutex
		benigns []benign
		wg      sync.WaitGroup
		sem     = make(chan struct{}, 8)
	)
	run := func(req *airlockv1.SpawnRequest, check func(*airlockv1.SpawnResponse) string) {
		defer wg.Done()
		sem <- struct{}{}
		defer func() { <-sem }()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		start := time.Now()
		resp, err := d.conn.Broker.Spawn(ctx, req)
		if check == nil {
			return
		}
		b := benign{latency: time.Since(start)}
		if err != nil {
			b.err = err.Error()
		} else {
			b.err = check(resp)
		}
		mu.Lock()
		benigns = append(benigns, b)
		mu.Unlock()
	}
	for i, p := range corpus {
		profile := profilesFor(p)[i%len(profilesFor(p))]
		wg.Add(2)
		go run(corpusReq(t, d, p, profile), nil)
		want := fmt.Sprintf("benign-%d", i)
		go run(&airlockv1.SpawnRequest{
			Profile: "secureclaw",
			Task: &airlockv1.Task{Name: "attack", Params: map[string]string{
				"attack": `[{"op":"write_result","result":{"title":"` + want + `","summary":"fine"}}]`}},
			Content: []*airlockv1.Content{{Data: []byte("benign")}}, ResultSchema: corpusSchema,
		}, func(r *airlockv1.SpawnResponse) string {
			if r.Verdict != airlockv1.Verdict_VERDICT_OK || r.Result.Fields["title"].GetStringValue() != want {
				return fmt.Sprintf("verdict %s title %q: %s", r.Verdict, r.Result.GetFields()["title"].GetStringValue(), r.Message)
			}
			return ""
		})
	}
	wg.Wait()
	var lat []time.Duration
	for _, b := range benigns {
		if b.err != "" {
			t.Errorf("benign job under attack: %s", b.err)
		}
		lat = append(lat, b.latency)
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		t.Logf("benign jobs under attack: %d, latency p50 %v p95 %v max %v", len(lat), lat[len(lat)/2], lat[len(lat)*95/100], lat[len(lat)-1])
	}
	requireNoForbiddenHits(t)
	requireDaemonNothingLeft(t, d)
}

// runtimeOf is the OCI runtime a job's response says it ran on.
func runtimeOf(resp interface {
	GetPolicy() *airlockv1.EffectivePolicy
}) string {
	for _, f := range strings.Fields(resp.GetPolicy().GetSummary()) {
		if v, ok := strings.CutPrefix(f, "runtime="); ok {
			return v
		}
	}
	return ""
}

// shippedRuntime is the runtime the shipped profile names, runc by default.
func shippedRuntime(t *testing.T, profile string) string {
	t.Helper()
	set, err := policy.Load(policies.FS, policy.WithSchemaCheck(result.CheckSchema))
	if err != nil {
		t.Fatal(err)
	}
	p, err := set.Get(profile)
	if err != nil {
		return "runc" // a test profile, which names none
	}
	return cmp.Or(p.Isolation.Runtime, "runc")
}

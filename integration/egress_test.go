//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// attackReq asks the hostile image to carry out ops under profile.
func attackReq(profile string, ops ...map[string]any) *airlockv1.SpawnRequest {
	b, err := json.Marshal(ops)
	if err != nil {
		panic(err)
	}
	req := hostileReq("attack", map[string]string{"attack": string(b)})
	req.Profile = profile
	return req
}

// opOutcomes returns the hostile report's per-op outcomes.
func opOutcomes(t *testing.T, resp outcome) []map[string]any {
	t.Helper()
	if resp.GetVerdict() != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("verdict %s: %s", resp.GetVerdict(), resp.GetMessage())
	}
	var out []map[string]any
	for _, v := range resp.GetResult().Fields["ops"].GetListValue().GetValues() {
		out = append(out, v.GetStructValue().AsMap())
	}
	return out
}

func egressLog(resp outcome) string {
	var lines []string
	for _, e := range resp.GetEgress() {
		lines = append(lines, fmt.Sprintf("%s %s:%d allowed=%v %s", e.Method, e.Host, e.Port, e.Allowed, e.Reason))
	}
	return strings.Join(lines, "\n")
}

func TestEgress_FetchOfAllowlistedServerSucceeds(t *testing.T) {
	before := world.allowed.hits.Load()
	resp := spawn(t, &airlockv1.SpawnRequest{
		Profile:      "egresstest",
		Task:         &airlockv1.Task{Name: "fetch", Params: map[string]string{"url": world.allowed.URL + "/page"}},
		Content:      []*airlockv1.Content{{Data: []byte("fetch it"), MediaType: "text/plain"}},
		ResultSchema: anyObject,
	})
	if resp.Verdict != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("verdict %s: %s", resp.Verdict, resp.Message)
	}
	if got := str(resp, "title"); got != "Allowed Page" {
		t.Errorf("title = %q", got)
	}
	if world.allowed.hits.Load() != before+1 {
		t.Errorf("allowed server hits %d -> %d, want one more", before, world.allowed.hits.Load())
	}
	if !strings.Contains(egressLog(resp), "allowed=true") {
		t.Errorf("egress log lacks the allowed attempt:\n%s", egressLog(resp))
	}
	requireNothingLeft(t)
}

func TestEgress_ForbiddenServerGetsZeroHits(t *testing.T) {
	forbidden := fmt.Sprintf("127.0.0.1:%d", world.forbidden.port())
	// The job's gateway is its only route; a direct connection to the
	// forbidden server's port there must be dropped by the job's rules.
	resp := spawn(t, attackReq("egresstest",
		map[string]any{"op": "http_post", "url": "http://" + forbidden + "/", "via_proxy": true, "body": "doc"},
		map[string]any{"op": "http_get", "url": "http://" + forbidden + "/", "via_proxy": true},
		map[string]any{"op": "connect_tcp", "host": "127.0.0.1", "port": world.forbidden.port(), "bypass_proxy": true},
		map[string]any{"op": "raw_proxy_request", "request": "CONNECT " + forbidden + " HTTP/1.1\r\nHost: " +
			fmt.Sprintf("127.0.0.1:%d", world.allowed.port()) + "\r\n\r\n"},
		map[string]any{"op": "dns_query", "name": "x.example", "server": "127.0.0.1"},
	))
	ops := opOutcomes(t, resp)
	for i, o := range ops {
		if o["ok"] == true {
			t.Errorf("op %d %v succeeded: %v", i, o["op"], o)
		}
	}
	for _, i := range []int{0, 1, 3} {
		if ops[i]["denied_by_proxy"] != true {
			t.Errorf("op %d %v was not refused by the proxy: %v", i, ops[i]["op"], ops[i])
		}
	}
	if !strings.Contains(egressLog(resp), "allowed=false") {
		t.Errorf("egress log lacks the denials:\n%s", egressLog(resp))
	}
	requireNoForbiddenHits(t)
}

func TestEgress_DirectConnectionToGatewayIsDropped(t *testing.T) {
	resp := spawn(t, attackReq("egresstest",
		map[string]any{"op": "connect_tcp", "host": "{{PROXY_HOST}}", "port": world.forbidden.port(), "bypass_proxy": true},
		map[string]any{"op": "connect_tcp", "host": "{{PROXY_HOST}}", "port": "{{PROXY_PORT_PLUS_1}}", "bypass_proxy": true},
	))
	for i, o := range opOutcomes(t, resp) {
		if o["ok"] == true {
			t.Errorf("op %d reached the host directly: %v", i, o)
		}
	}
	requireNoForbiddenHits(t)
}

func TestEgress_RebindingNameIsDenied(t *testing.T) {
	url := fmt.Sprintf("http://%s:%d/", rebindName, world.forbidden.port())
	ops := opOutcomes(t, spawn(t, attackReq("egresstest", map[string]any{"op": "http_get", "url": url, "via_proxy": true})))
	if ops[0]["ok"] == true || ops[0]["denied_by_proxy"] != true {
		t.Errorf("rebinding fetch: %v, want a proxy denial", ops[0])
	}
	requireNoForbiddenHits(t)
}

func TestEgress_ServiceAliasInjectsKeyTheSandboxNeverSees(t *testing.T) {
	before := len(world.upstream.seenHeaders())
	resp := spawn(t, attackReq("egresstest",
		map[string]any{"op": "http_get", "url": "http://llm.airlock.internal/echo-headers", "via_proxy": true, "into_result": "summary"},
		map[string]any{"op": "env_dump", "into_result": "summary"},
		map[string]any{"op": "grep_fs", "root": "/", "pattern": world.serviceKey, "max_files": 5000},
	))
	ops := opOutcomes(t, resp)
	if ops[0]["ok"] != true {
		t.Fatalf("alias request failed: %v", ops[0])
	}
	seen := world.upstream.seenHeaders()
	if len(seen) != before+1 || seen[len(seen)-1].Get("X-Api-Key") != world.serviceKey {
		t.Fatalf("upstream did not see the injected key (saw %d requests)", len(seen)-before)
	}
	if ops[2]["ok"] == true {
		t.Errorf("the key was found inside the sandbox: %v", ops[2])
	}
	if strings.Contains(resp.String(), world.serviceKey) {
		t.Error("the service key crossed back in the response")
	}
}

func TestEgress_KilledJobsLeaveNoNetwork(t *testing.T) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(1500))*time.Millisecond)
			defer cancel()
			req := hostileReq("sleep", map[string]string{"seconds": "30"})
			req.Profile = "egresstest"
			env.brokerOf.Spawn(ctx, req)
		}()
	}
	wg.Wait()
	requireNothingLeft(t)
	requireHealthy(t)
}

// A fetch tool call in a run task is decided by the broker through the
// job's gateway, then made through the proxy, which still has the last
// word: the forbidden server is allowed as a tool call and refused on the
// wire.
func TestEgress_RunFetchCallsGoThroughGatewayAndProxy(t *testing.T) {
	allowedBefore, forbiddenBefore := world.allowed.hits.Load(), world.forbidden.conns.Load()
	resp := spawn(t, toolCallsReq("egresstest",
		map[string]string{"tool": "fetch", "url": world.allowed.URL + "/page"},
		map[string]string{"tool": "fetch", "url": world.forbidden.URL + "/"},
	))
	calls := callsOf(t, resp)
	if len(calls) != 2 {
		t.Fatalf("calls %+v, want 2", calls)
	}
	if c := calls[0]; !c.Allowed || !strings.Contains(c.Text, "It works") {
		t.Errorf("fetch of the allowed server: %+v", c)
	}
	if c := calls[1]; c.Allowed || c.Text != "" {
		t.Errorf("fetch of the forbidden server: %+v, want refused with nothing fetched", c)
	}
	if n := world.allowed.hits.Load() - allowedBefore; n != 1 {
		t.Errorf("allowed server hits +%d, want +1", n)
	}
	if n := world.forbidden.conns.Load() - forbiddenBefore; n != 0 {
		t.Errorf("forbidden server got %d connections", n)
	}
	var decided int
	for _, d := range resp.Exec {
		if len(d.Argv) > 0 && d.Argv[0] == "fetch" {
			decided++
		}
	}
	if decided != 2 {
		t.Errorf("exec decisions %v: want both fetch calls recorded", resp.Exec)
	}
	if !strings.Contains(egressLog(resp), "allowed=false") {
		t.Errorf("egress log lacks the refused attempt:\n%s", egressLog(resp))
	}
	requireNothingLeft(t)
}

// directEgress are attempts to leave a job's namespace other than through
// the proxy: UDP and ICMP to the gateway, and TCP to another of its ports.
// Nothing listens there but the host's own stack, which answers what
// reaches it: a UDP port unreachable, a TCP reset, an echo reply. A drop
// answers nothing.
func directEgress() []map[string]any {
	return []map[string]any{
		{"op": "dns_query", "name": "x.example", "server": "{{PROXY_HOST}}"},
		{"op": "dns_query", "name": "x.example", "server": "{{PROXY_HOST}}", "port": "{{PROXY_PORT_PLUS_1}}"},
		{"op": "icmp_echo", "host": "{{PROXY_HOST}}"},
		{"op": "connect_tcp", "host": "{{PROXY_HOST}}", "port": "{{PROXY_PORT_PLUS_1}}", "bypass_proxy": true},
	}
}

// checkDirectEgressDropped asserts that every direct attempt failed without
// an answer from the host, and that the job's firewall counted drops.
func checkDirectEgressDropped(t *testing.T, resp outcome) {
	t.Helper()
	for i, o := range opOutcomes(t, resp) {
		if o["ok"] == true {
			t.Errorf("op %d %v got an answer: %v", i, o["op"], o)
			continue
		}
		// A refusal is the host's answer: the packet got out.
		if e, _ := o["error"].(string); o["errno"] == "ECONNREFUSED" || strings.Contains(e, "refused") || strings.Contains(e, "unreachable") {
			t.Errorf("op %d %v reached the host, which refused it: %v", i, o["op"], o)
		}
		t.Logf("op %d %v: %v", i, o["op"], o)
	}
	if n := resp.GetUsage().GetEgressDeniedPackets(); n == 0 {
		t.Errorf("the job's firewall counted no dropped packets for %d direct attempts", len(directEgress()))
	}
}

func TestEgress_DirectUDPICMPAndTCPAreDroppedAndCounted(t *testing.T) {
	checkDirectEgressDropped(t, spawn(t, attackReq("egresstest", directEgress()...)))
	requireNothingLeft(t)
}

// TestEgress_UnderRunsc runs the allowlist checks on gVisor, whose network
// stack sends through a packet socket that the namespace's inet rules
// never see: the link's own rules must drop what the job sends around the
// proxy, and let through what it sends to it.
func TestEgress_UnderRunsc(t *testing.T) {
	d := runscDaemon(t)
	spawnOn := func(t *testing.T, req *airlockv1.SpawnRequest) *airlockv1.SpawnResponse {
		t.Helper()
		req.Task.Params["attack"] = fill(d, req.Task.Params["attack"])
		resp, err := d.conn.Broker.Spawn(testContext(t), req)
		if err != nil {
			t.Fatalf("Spawn: %v", err)
		}
		if got := runtimeOf(resp); got != "runsc" {
			t.Fatalf("job ran on %q, want runsc", resp.GetPolicy().GetSummary())
		}
		return resp
	}
	t.Run("allowlisted fetch", func(t *testing.T) {
		before := world.allowed.hits.Load()
		ops := opOutcomes(t, spawnOn(t, attackReq("egresstest",
			map[string]any{"op": "http_get", "url": world.allowed.URL + "/page", "via_proxy": true})))
		if ops[0]["ok"] != true {
			t.Errorf("fetch through the proxy failed: %v", ops[0])
		}
		if world.allowed.hits.Load() != before+1 {
			t.Errorf("allowed server hits %d -> %d, want one more", before, world.allowed.hits.Load())
		}
	})
	t.Run("forbidden server", func(t *testing.T) {
		ops := opOutcomes(t, spawnOn(t, attackReq("egresstest",
			map[string]any{"op": "http_get", "url": fmt.Sprintf("http://127.0.0.1:%d/", world.forbidden.port()), "via_proxy": true},
			map[string]any{"op": "connect_tcp", "host": "127.0.0.1", "port": world.forbidden.port(), "bypass_proxy": true},
		)))
		if ops[0]["ok"] == true || ops[0]["denied_by_proxy"] != true {
			t.Errorf("fetch of the forbidden server: %v, want a proxy denial", ops[0])
		}
		if ops[1]["ok"] == true {
			t.Errorf("direct connection to the forbidden server: %v", ops[1])
		}
		requireNoForbiddenHits(t)
	})
	t.Run("direct udp, icmp and tcp", func(t *testing.T) {
		checkDirectEgressDropped(t, spawnOn(t, attackReq("egresstest", directEgress()...)))
	})
	t.Run("service alias", func(t *testing.T) {
		before := len(world.upstream.seenHeaders())
		resp := spawnOn(t, attackReq("egresstest",
			map[string]any{"op": "http_get", "url": "http://llm.airlock.internal/echo-headers", "via_proxy": true},
			map[string]any{"op": "grep_fs", "root": "/", "pattern": world.serviceKey, "max_files": 5000},
		))
		ops := opOutcomes(t, resp)
		if ops[0]["ok"] != true {
			t.Fatalf("alias request failed: %v", ops[0])
		}
		if seen := world.upstream.seenHeaders(); len(seen) != before+1 || seen[len(seen)-1].Get("X-Api-Key") != world.serviceKey {
			t.Errorf("upstream did not see the injected key")
		}
		if ops[1]["ok"] == true || strings.Contains(resp.String(), world.serviceKey) {
			t.Error("the service key was found inside the sandbox or in the response")
		}
	})
	requireDaemonNothingLeft(t, d)
}

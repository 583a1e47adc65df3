//go:build integration

package integration

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/namespaces"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/airlock/airlock/cmd/airlockd/server"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/footprint"
)

// TestShippedDaemon_PoolsAsConfigured starts an airlockd of the shipped
// package with a warm pool, as --pool would: the pool fills, a job over
// the API claims from it, and Shutdown leaves none of its sandboxes, its
// socket, its metrics listener or its probes' health listener, which
// answers without TLS or a token meanwhile.
func TestShippedDaemon_PoolsAsConfigured(t *testing.T) {
	// Not t.TempDir(): a unix socket's path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "airlock-pools-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := footprint.MkdirTraversable(dir); err != nil {
		t.Fatal(err)
	}
	srv, conn, err := startServer(dir, nil, func(o *server.Options) {
		o.Pools = map[string]int{"ironclaw": 1}
		o.MetricsListen = "127.0.0.1:0"
		o.HealthListen = "127.0.0.1:0"
		// Its own addresses, beside the suite's, the pool world's and the
		// tool world's runners on the same host.
		o.EgressPool = netip.MustParsePrefix("10.214.252.0/24")
		o.ProxyPort = 3131
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	metricsAddr := srv.MetricsAddr().String()
	healthAddr := srv.HealthAddr().String()
	probe, err := grpc.NewClient(healthAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	for _, svc := range []string{"", airlockv1.Broker_ServiceDesc.ServiceName} {
		// As the kubelet asks: plaintext, no token.
		r, err := healthpb.NewHealthClient(probe).Check(testContext(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("probe Check(%q) on %s = %v, %v; want SERVING", svc, healthAddr, r, err)
		}
	}
	scrape := func() string {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return string(b)
	}
	eventually(t, 60*time.Second, func() bool { return strings.Contains(scrape(), `airlock_pool_ready{profile="ironclaw"} 1`) },
		"the ironclaw pool never held its one sandbox")

	resp, err := conn.Broker.Spawn(testContext(t), &airlockv1.SpawnRequest{
		Profile: "ironclaw",
		Task:    &airlockv1.Task{Name: "summarize"},
		Content: []*airlockv1.Content{{Data: []byte("<title>Warm</title><p>Claimed.</p>"), MediaType: "text/html"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Verdict != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("verdict %s: %s", resp.Verdict, resp.Message)
	}
	if m := scrape(); !strings.Contains(m, `airlock_pool_claims_total{profile="ironclaw",result="hit"} 1`) {
		t.Errorf("the job did not claim the warm sandbox:\n%s", grepLines(m, "airlock_pool_"))
	}
	// The pool refills behind the job; Shutdown must take that one too.
	eventually(t, 60*time.Second, func() bool { return strings.Contains(scrape(), `airlock_pool_ready{profile="ironclaw"} 1`) },
		"the ironclaw pool did not refill after its claim")

	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(testContext(t), footprint.Namespace)
	mine := `labels."` + sandbox.LabelInstance + `"==` + footprint.InstanceID(srv.Options().StateDir)
	cs, err := env.ctrd.Containers(ctx, mine)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		t.Errorf("container %s of the stopped airlockd is left", c.ID())
	}
	if _, err := os.Lstat(srv.Options().Socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after Shutdown: %v, want it gone", err)
	}
	if c, err := net.Dial("tcp", metricsAddr); err == nil {
		c.Close()
		t.Errorf("metrics still served on %s after Shutdown", metricsAddr)
	}
	if c, err := net.Dial("tcp", healthAddr); err == nil {
		c.Close()
		t.Errorf("health still served on %s after Shutdown", healthAddr)
	}
}

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

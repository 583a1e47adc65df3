package egress

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/airlock/airlock/sandbox/agent"
)

// TestEgress_AgentFetchGoesThroughProxy runs the reference agent's fetch
// task against the real proxy, configured the way the sandbox configures
// it: HTTP_PROXY and HTTPS_PROXY name the proxy.
func TestEgress_AgentFetchGoesThroughProxy(t *testing.T) {
	h := newHarness(t, Config{})
	allowed := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<title>Allowed</title><p>Visible text.</p><script>hidden()</script>"))
	})
	forbidden := newOrigin(t, nil)
	h.host("page.test", "11.22.33.1", allowed)
	h.host("forbidden.test", "11.22.33.2", forbidden)
	h.net.publish("11.22.33.2", 443, forbidden.Listener.Addr().String())
	// The agent cannot pick its source address here; in a sandbox it is
	// the job's veth address.
	s, err := h.p.Register(netip.MustParseAddr("127.0.0.1"), JobPolicy{JobID: "agent", Egress: rules(t, "page.test:80")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY"} {
		t.Setenv(k, "http://"+h.addr)
	}
	t.Setenv("NO_PROXY", "")

	res, err := agent.Run(agent.Job{ID: "j", Task: "fetch", Params: map[string]string{"url": "http://page.test/a"}}, nil)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if got := res.(agent.FetchResult); got.Title != "Allowed" || got.Text != "Visible text." {
		t.Errorf("result %+v", got)
	}
	for _, u := range []string{"http://forbidden.test/", "https://forbidden.test/"} {
		_, err := agent.Run(agent.Job{ID: "j", Task: "fetch", Params: map[string]string{"url": u}}, nil)
		if !errors.Is(err, agent.ErrEgressRefused) || !strings.Contains(err.Error(), `host "forbidden.test" port`) {
			t.Errorf("%s: err = %v, want the proxy's refusal", u, err)
		}
	}
	if n := forbidden.hits.Load(); n != 0 {
		t.Errorf("forbidden server got %d hits", n)
	}
}

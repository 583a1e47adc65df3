//go:build integration

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// urlReq is extract_text of one URL under egresstest, the suite's profile
// with egress to the allowed server (and rebindName and localhost on the
// forbidden one's port).
func urlReq(url string) *airlockv1.SpawnRequest {
	return &airlockv1.SpawnRequest{
		Profile:      "egresstest",
		Task:         &airlockv1.Task{Name: "extract_text"},
		Content:      []*airlockv1.Content{{Url: url}},
		ResultSchema: anyObject,
	}
}

// TestURLJobs_SandboxFetchesThroughItsProxy: the caller names a URL, and
// the sandbox fetches it through its egress proxy; the response is the
// page's sanitized text, and the egress log shows the fetch.
func TestURLJobs_SandboxFetchesThroughItsProxy(t *testing.T) {
	before := world.allowed.hits.Load()
	resp := spawn(t, urlReq(world.allowed.URL+"/page"))
	if resp.GetVerdict() != airlockv1.Verdict_VERDICT_OK {
		t.Fatalf("verdict %s: %s", resp.GetVerdict(), resp.GetMessage())
	}
	if got := str(resp, "title"); got != "Allowed Page" {
		t.Errorf("title %q", got)
	}
	if !strings.Contains(str(resp, "text"), "Fetched through the proxy") {
		t.Errorf("text %q", str(resp, "text"))
	}
	if world.allowed.hits.Load() != before+1 {
		t.Errorf("allowed server hits %d -> %d, want one more", before, world.allowed.hits.Load())
	}
	if !strings.Contains(egressLog(resp), "allowed=true") {
		t.Errorf("egress log lacks the fetch:\n%s", egressLog(resp))
	}
	requireNothingLeft(t)
}

// TestURLJobs_FailedFetchesHaveClearVerdicts: each way a fetch fails ends
// the job with FETCH_FAILED and a message that says which, and reaches no
// host the job's egress does not allow.
func TestURLJobs_FailedFetchesHaveClearVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name, url, want string
		timeout         time.Duration
	}{
		{"redirect to a forbidden host", world.allowed.URL + "/redirect-forbidden", "refused it or one of its redirects", 0},
		{"a name that resolves to loopback", fmt.Sprintf("http://%s:%d/", rebindName, world.forbidden.port()), "refused it", 0},
		{"a 100 MiB body", world.allowed.URL + "/big", "larger than the agent reads", 0},
		{"a slow loris", world.allowed.URL + "/slow", "too slow", 8 * time.Second},
		{"a type the agent does not read", world.allowed.URL + "/image", "a type the agent does not read", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := urlReq(tc.url)
			if tc.timeout > 0 {
				req.Overrides = &airlockv1.Overrides{Timeout: durationpb.New(tc.timeout)}
			}
			resp := spawn(t, req)
			if resp.GetVerdict() != airlockv1.Verdict_VERDICT_FETCH_FAILED || !strings.Contains(resp.GetMessage(), tc.want) {
				t.Errorf("verdict %s %q, want FETCH_FAILED saying %q\negress:\n%s", resp.GetVerdict(), resp.GetMessage(), tc.want, egressLog(resp))
			}
			if resp.GetResult() != nil {
				t.Errorf("a failed fetch returned a result: %v", resp.GetResult())
			}
		})
	}
	requireNoForbiddenHits(t)
	requireNothingLeft(t)
}

// TestURLJobs_RefusedAtTheDoor: a URL the sandbox could not fetch is the
// caller's mistake, refused before any sandbox is made, naming the field.
func TestURLJobs_RefusedAtTheDoor(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  *airlockv1.SpawnRequest
		want string
	}{
		{"a profile without egress", func() *airlockv1.SpawnRequest {
			r := urlReq(world.allowed.URL + "/page")
			r.Profile = "vanilla"
			return r
		}(), "network.mode"},
		{"a host off the allowlist", urlReq(fmt.Sprintf("http://127.0.0.1:%d/", world.forbidden.port())), "not among the job's egress entries"},
		{"a host the overrides narrowed away", func() *airlockv1.SpawnRequest {
			r := urlReq(world.allowed.URL + "/page")
			r.Overrides = &airlockv1.Overrides{Egress: []string{fmt.Sprintf("localhost:%d", world.forbidden.port())}}
			return r
		}(), "not among the job's egress entries"},
		{"data and a url", func() *airlockv1.SpawnRequest {
			r := urlReq(world.allowed.URL + "/page")
			r.Content[0].Data = []byte("x")
			return r
		}(), "both data and a url"},
		{"a service alias", urlReq("http://model.airlock.internal/v1/models"), "not among the job's egress entries"},
		{"not http", urlReq("file:///etc/passwd"), "absolute http or https URL"},
		{"credentials", urlReq("http://user:pw@" + strings.TrimPrefix(world.allowed.URL, "http://") + "/"), "credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := world.allowed.hits.Load()
			_, err := env.brokerOf.Spawn(testContext(t), tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "content[0].url") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Spawn error %v, want InvalidArgument naming content[0].url and saying %q", err, tc.want)
			}
			if strings.Contains(fmt.Sprint(err), "pw@") {
				t.Error("the refusal echoed the URL's credentials")
			}
			if world.allowed.hits.Load() != before {
				t.Error("a refused request reached the server")
			}
		})
	}
	requireNothingLeft(t)
}

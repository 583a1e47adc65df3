package broker_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

var (
	tokA   = []byte(strings.Repeat("a1b2c3d4", 8))
	tokB   = []byte(strings.Repeat("b2c3d4e5", 8))
	tokR   = []byte(strings.Repeat("c3d4e5f6", 8))
	tokAdm = []byte(strings.Repeat("d4e5f6a7", 8))
)

func testTokens() []auth.Token {
	return []auth.Token{
		{Name: "alice", Scopes: []auth.Scope{auth.ScopeSpawn, auth.ScopeRead}, Secret: tokA},
		{Name: "bob", Scopes: []auth.Scope{auth.ScopeSpawn, auth.ScopeRead}, Secret: tokB},
		{Name: "reader", Scopes: []auth.Scope{auth.ScopeRead}, Secret: tokR},
		{Name: "ops", Scopes: auth.AllScopes, Secret: tokAdm},
	}
}

// newScopedBroker serves a broker with named tokens and returns a client
// that sends no token of its own (each call passes one) and the
// Authenticator, for reloads.
func newScopedBroker(t *testing.T, runner job.Runner) (airlockv1.BrokerClient, *auth.Authenticator) {
	t.Helper()
	profiles, err := policy.Load(policies.FS, policy.WithSchemaCheck(result.CheckSchema))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := broker.New(broker.Config{Runner: runner, Profiles: profiles})
	if err != nil {
		t.Fatal(err)
	}
	a, err := srv.Authenticator(testTokens())
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	g := broker.NewGRPCServerAuth(srv, a)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return airlockv1.NewBrokerClient(cc), a
}

func as(tok []byte) grpc.CallOption { return grpc.PerRPCCredentials(auth.Credentials(tok)) }

func TestScopes_AndOwnership(t *testing.T) {
	c, _ := newScopedBroker(t, &fakeRunner{outcome: rawResult(`{"title":"T"}`)})
	req := request()
	req.JobId = "alice-job"
	if _, err := c.Spawn(ctx(t), req, as(tokA)); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"owner reads its job", func() error {
			_, err := c.GetJob(ctx(t), &airlockv1.GetJobRequest{JobId: "alice-job"}, as(tokA))
			return err
		}, codes.OK},
		// Another tenant's job is answered as a job nobody started.
		{"another caller reads it", func() error {
			_, err := c.GetJob(ctx(t), &airlockv1.GetJobRequest{JobId: "alice-job"}, as(tokB))
			return err
		}, codes.NotFound},
		{"another caller cancels it", func() error {
			_, err := c.Cancel(ctx(t), &airlockv1.CancelRequest{JobId: "alice-job"}, as(tokB))
			return err
		}, codes.NotFound},
		{"admin reads it", func() error {
			_, err := c.GetJob(ctx(t), &airlockv1.GetJobRequest{JobId: "alice-job"}, as(tokAdm))
			return err
		}, codes.OK},
		{"read scope cannot spawn", func() error {
			_, err := c.Spawn(ctx(t), request(), as(tokR))
			return err
		}, codes.PermissionDenied},
		{"read scope lists profiles", func() error {
			_, err := c.ListProfiles(ctx(t), &airlockv1.ListProfilesRequest{}, as(tokR))
			return err
		}, codes.OK},
	}
	for _, s := range steps {
		if got := status.Code(s.call()); got != s.want {
			t.Errorf("%s: %v, want %v", s.name, got, s.want)
		}
	}
}

// TestJobIDs_AreEachCallersOwn: a job ID names a job among its owner's
// only. Another caller using the same ID gets a job of its own, neither
// a refusal that says the ID is taken nor the first job's response; each
// retry reaches its own caller's job, and an admin who names an ID that
// two callers hold is asked to use the owner's token.
func TestJobIDs_AreEachCallersOwn(t *testing.T) {
	runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`)}
	c, _ := newScopedBroker(t, runner)
	reqA := request()
	reqA.JobId = "shared-id"
	reqB := request()
	reqB.JobId = "shared-id"
	reqB.Task.Params = map[string]string{"sentences": "7"}
	if _, err := c.Spawn(ctx(t), reqA, as(tokA)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetJob(ctx(t), &airlockv1.GetJobRequest{JobId: "shared-id"}, as(tokAdm)); err != nil {
		t.Fatalf("admin reads the one job with the ID: %v", err)
	}
	if _, err := c.Spawn(ctx(t), reqB, as(tokB)); err != nil {
		t.Fatalf("another caller's job under the same ID: %v, want a job of its own", err)
	}
	if got := runner.runs.Load(); got != 2 {
		t.Fatalf("%d runs, want 2: one per caller", got)
	}
	for _, retry := range []struct {
		req *airlockv1.SpawnRequest
		tok []byte
	}{{reqA, tokA}, {reqB, tokB}} {
		if _, err := c.Spawn(ctx(t), retry.req, as(retry.tok)); err != nil {
			t.Errorf("retry of the caller's own job: %v", err)
		}
	}
	if _, err := c.Spawn(ctx(t), reqB, as(tokA)); status.Code(err) != codes.AlreadyExists {
		t.Errorf("alice sends bob's request under her ID: %v, want AlreadyExists against her own job", err)
	}
	if got := runner.runs.Load(); got != 2 {
		t.Errorf("%d runs after retries, want still 2", got)
	}
	for _, tok := range [][]byte{tokA, tokB} {
		if _, err := c.GetJob(ctx(t), &airlockv1.GetJobRequest{JobId: "shared-id"}, as(tok)); err != nil {
			t.Errorf("owner reads its job: %v", err)
		}
	}
	_, err := c.GetJob(ctx(t), &airlockv1.GetJobRequest{JobId: "shared-id"}, as(tokAdm))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("admin names an ID two callers hold: %v, want InvalidArgument", err)
	}
}

func TestAuth_RotationStopsOldTokenButNotJobsInFlight(t *testing.T) {
	runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`), block: make(chan struct{})}
	c, a := newScopedBroker(t, runner)
	done := make(chan *airlockv1.SpawnResponse, 1)
	go func() {
		r, _ := c.Spawn(ctx(t), request(), as(tokA))
		done <- r
	}()
	eventually(t, "the job to run", runner.started(1))
	rotated := testTokens()[1:] // alice's token is gone
	if err := a.Reload(rotated); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListProfiles(ctx(t), &airlockv1.ListProfilesRequest{}, as(tokA)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("old token after rotation: %v, want Unauthenticated", err)
	}
	close(runner.block)
	if r := <-done; r.GetVerdict() != airlockv1.Verdict_VERDICT_OK {
		t.Errorf("job in flight during rotation: %v", r)
	}
}

func TestAuth_ThrottlesFailuresNotValidTokens(t *testing.T) {
	c, _ := newScopedBroker(t, &fakeRunner{outcome: rawResult(`{}`)})
	wrong := []byte(strings.Repeat("e5f6a7b8", 8))
	for i := 0; i < auth.DefaultFailureLimit; i++ {
		if _, err := c.ListProfiles(ctx(t), &airlockv1.ListProfilesRequest{}, as(wrong)); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if _, err := c.ListProfiles(ctx(t), &airlockv1.ListProfilesRequest{}, as(wrong)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("wrong token past the limit: %v, want ResourceExhausted", err)
	}
	// Same peer (every unix or bufconn caller shares one): the right
	// token still passes.
	if _, err := c.ListProfiles(ctx(t), &airlockv1.ListProfilesRequest{}, as(tokR)); err != nil {
		t.Fatalf("right token from the throttled peer: %v, want OK", err)
	}
}

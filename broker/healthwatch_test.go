package broker_test

import (
	"context"
	"net"
	"testing"

	"github.com/airlock/airlock/broker"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// TestHealthWatch_IsBounded: Watch needs no token, so whoever can connect
// may open watches; past MaxHealthWatches they are refused, and closing
// one makes room again.
func TestHealthWatch_IsBounded(t *testing.T) {
	_, cc := newBroker(t, &fakeRunner{outcome: rawResult(`{}`)}, testToken, 0)
	hc := healthpb.NewHealthClient(cc)
	watch := func(ctx context.Context) error {
		w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		_, err = w.Recv()
		return err
	}
	cancels := make([]context.CancelFunc, 0, broker.MaxHealthWatches)
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	for i := range broker.MaxHealthWatches {
		wctx, cancel := context.WithCancel(ctx(t))
		cancels = append(cancels, cancel)
		if err := watch(wctx); err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
	}
	if err := watch(ctx(t)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("watch past the bound: %v, want ResourceExhausted", err)
	}
	cancels[0]()
	eventually(t, "a closed watch to make room", func() bool { return watch(ctx(t)) == nil })
}

// TestHealthGRPCServer_AnswersProbesWithoutATokenAndNothingElse: the
// probes' server answers Check for the broker and for the server as a
// whole, with no token, and refuses List, which names services.
func TestHealthGRPCServer_AnswersProbesWithoutATokenAndNothingElse(t *testing.T) {
	srv, _, _ := newBrokerServer(t, &fakeRunner{outcome: rawResult(`{}`)}, testToken, broker.Config{})
	g := broker.NewHealthGRPCServer(srv)
	lis := bufconn.Listen(1 << 16)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	cc, err := grpc.NewClient("passthrough:///probes",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	hc := healthpb.NewHealthClient(cc)
	for _, svc := range []string{"", airlockv1.Broker_ServiceDesc.ServiceName} {
		resp, err := hc.Check(ctx(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, %v; want SERVING", svc, resp, err)
		}
	}
	if _, err := hc.Check(ctx(t), &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("Check of an unknown service: %v, want NotFound", err)
	}
	if _, err := hc.List(ctx(t), &healthpb.HealthListRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("List: %v, want PermissionDenied", err)
	}
	if _, err := airlockv1.NewBrokerClient(cc).ListProfiles(ctx(t), &airlockv1.ListProfilesRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("ListProfiles on the probes' server: %v, want Unimplemented", err)
	}
}

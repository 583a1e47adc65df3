package broker_test

import (
	"context"
	"testing"

	"github.com/airlock/airlock/broker"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
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

package broker

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A handler's panic fails the call with Internal, says nothing of the
// panic to the caller, and logs it quoted.
func TestRecover_HandlerPanicIsInternalAndLogged(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	boom := func() { panic("boom \x1b[31m attacker text") }

	_, err := recoverUnary(log)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/airlock.v1.Broker/Spawn"},
		func(context.Context, any) (any, error) { boom(); return nil, nil })
	if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "attacker") {
		t.Errorf("unary: %v, want Internal without the panic's words", err)
	}
	err = recoverStream(log)(nil, nil, &grpc.StreamServerInfo{FullMethod: "/airlock.v1.Broker/SpawnStream"},
		func(any, grpc.ServerStream) error { boom(); return nil })
	if status.Code(err) != codes.Internal {
		t.Errorf("stream: %v, want Internal", err)
	}
	if got := logs.String(); strings.Count(got, "handler panicked") != 2 || strings.Contains(got, "\x1b") || !strings.Contains(got, "attacker text") {
		t.Errorf("log:\n%s", got)
	}
	// A handler that does not panic is untouched.
	resp, err := recoverUnary(log)(context.Background(), nil, &grpc.UnaryServerInfo{},
		func(context.Context, any) (any, error) { return "ok", nil })
	if resp != "ok" || err != nil {
		t.Errorf("no panic: %v %v", resp, err)
	}
}

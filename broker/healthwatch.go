package broker

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// MaxHealthWatches bounds the health Watch streams open at once. Watch
// needs no token, so that probes can use it, and each stream holds a
// goroutine and a channel in the health server for as long as the peer
// keeps it: without a bound, anyone who can connect could hold thousands.
// Probes need one or two each.
const MaxHealthWatches = 64

// watchLimit refuses health Watch streams past max with ResourceExhausted,
// before the health server makes anything for them.
func watchLimit(max int32) grpc.StreamServerInterceptor {
	var open atomic.Int32
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if info.FullMethod != healthpb.Health_Watch_FullMethodName {
			return handler(srv, ss)
		}
		if open.Add(1) > max {
			open.Add(-1)
			return status.Errorf(codes.ResourceExhausted, "%d health watches are open, the most the broker serves; use Check, or close a watch", max)
		}
		defer open.Add(-1)
		return handler(srv, ss)
	}
}

// NewHealthGRPCServer returns a gRPC server with nothing but the broker's
// health service, Check and Watch, for a listener of its own: Kubernetes'
// gRPC probes speak neither TLS nor bearer tokens, so they cannot reach the
// API's listener off loopback. It serves the same status as the API's
// server. List, which names services, stays behind the API's token.
func NewHealthGRPCServer(s *Server) *grpc.Server {
	g := grpc.NewServer(
		grpc.ChainUnaryInterceptor(recoverUnary(s.log), onlyProbes),
		grpc.ChainStreamInterceptor(recoverStream(s.log), watchLimit(MaxHealthWatches)),
		grpc.MaxRecvMsgSize(maxProbeBytes),
	)
	healthpb.RegisterHealthServer(g, s.ready.hs)
	return g
}

// maxProbeBytes bounds a request to the probes' server: a
// HealthCheckRequest is a service name.
const maxProbeBytes = 4 << 10

// onlyProbes refuses every unary call on the probes' server but Check.
func onlyProbes(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if info.FullMethod != healthpb.Health_Check_FullMethodName {
		return nil, status.Errorf(codes.PermissionDenied, "%s is not served on the probes' listener; call it on the API's, with a token", info.FullMethod)
	}
	return handler(ctx, req)
}

package auth

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

var (
	testToken  = []byte(strings.Repeat("0123456789abcdef", 4))
	otherToken = []byte(strings.Repeat("fedcba9876543210", 4))
)

// testServer is a broker stand-in: the health service behind the
// Authenticator, recording the caller each handler saw.
type testServer struct {
	client healthpb.HealthClient

	mu      sync.Mutex
	callers []string
}

func newTestServer(t *testing.T, opts ...Option) *testServer {
	t.Helper()
	a, err := New(testToken, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{}
	record := func(ctx context.Context) {
		c := "<none>"
		if id, ok := Caller(ctx); ok {
			c = id.Name
		}
		ts.mu.Lock()
		ts.callers = append(ts.callers, c)
		ts.mu.Unlock()
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor(),
			func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				record(ctx)
				return h(ctx, req)
			}),
		grpc.ChainStreamInterceptor(a.StreamServerInterceptor(),
			func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				record(ss.Context())
				return h(srv, ss)
			}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis := bufconn.Listen(1 << 20)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ts.client = healthpb.NewHealthClient(conn)
	return ts
}

func (ts *testServer) seen() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.callers...)
}

// check makes a unary call and returns its status code.
func (ts *testServer) check(t *testing.T, opts ...grpc.CallOption) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := ts.client.Check(ctx, &healthpb.HealthCheckRequest{}, opts...)
	return status.Code(err)
}

// watch opens a stream, reads its first message and returns the status code.
func (ts *testServer) watch(t *testing.T, opts ...grpc.CallOption) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := ts.client.Watch(ctx, &healthpb.HealthCheckRequest{}, opts...)
	if err != nil {
		return status.Code(err)
	}
	_, err = stream.Recv()
	return status.Code(err)
}

// withHeader sends a raw authorization header, bypassing Credentials.
type withHeader string

func (h withHeader) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": string(h)}, nil
}

func (withHeader) RequireTransportSecurity() bool { return false }

func TestAuthenticator_ChecksBearerToken(t *testing.T) {
	tests := []struct {
		name string
		opts []grpc.CallOption
		want codes.Code
	}{
		{name: "refuses a call without a token", want: codes.Unauthenticated},
		{name: "refuses a wrong token", opts: []grpc.CallOption{grpc.PerRPCCredentials(Credentials(otherToken))}, want: codes.Unauthenticated},
		{name: "refuses a prefix of the token", opts: []grpc.CallOption{grpc.PerRPCCredentials(Credentials(testToken[:len(testToken)-1]))}, want: codes.Unauthenticated},
		{name: "refuses the token under another scheme", opts: []grpc.CallOption{grpc.PerRPCCredentials(withHeader("Basic " + string(testToken)))}, want: codes.Unauthenticated},
		{name: "refuses an empty bearer token", opts: []grpc.CallOption{grpc.PerRPCCredentials(withHeader("Bearer "))}, want: codes.Unauthenticated},
		{name: "refuses two authorization headers", opts: []grpc.CallOption{grpc.PerRPCCredentials(Credentials(testToken)), grpc.PerRPCCredentials(Credentials(otherToken))}, want: codes.Unauthenticated},
		{name: "accepts the token", opts: []grpc.CallOption{grpc.PerRPCCredentials(Credentials(testToken))}, want: codes.OK},
		{name: "accepts a lower-case scheme", opts: []grpc.CallOption{grpc.PerRPCCredentials(withHeader("bearer " + string(testToken)))}, want: codes.OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, WithExemptMethods())
			if got := ts.check(t, tc.opts...); got != tc.want {
				t.Errorf("unary Check = %v, want %v", got, tc.want)
			}
			if got := ts.watch(t, tc.opts...); got != tc.want {
				t.Errorf("stream Watch = %v, want %v", got, tc.want)
			}
			wantSeen := 0
			if tc.want == codes.OK {
				wantSeen = 2
			}
			seen := ts.seen()
			if len(seen) != wantSeen {
				t.Fatalf("handlers ran %d times, want %d", len(seen), wantSeen)
			}
			for _, c := range seen {
				if c != TokenCaller {
					t.Errorf("Caller = %q, want %q", c, TokenCaller)
				}
			}
		})
	}
}

func TestAuthenticator_SaysWhatIsWrong(t *testing.T) {
	ts := newTestServer(t, WithExemptMethods())
	ctx := context.Background()
	_, err := ts.client.Check(ctx, &healthpb.HealthCheckRequest{})
	if got := status.Convert(err).Message(); got != "missing bearer token" {
		t.Errorf("without a token: message %q, want %q", got, "missing bearer token")
	}
	_, err = ts.client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.PerRPCCredentials(Credentials(otherToken)))
	if got := status.Convert(err).Message(); got != "invalid bearer token" {
		t.Errorf("with a wrong token: message %q, want %q", got, "invalid bearer token")
	}
}

func TestAuthenticator_ExemptsHealthProbesByDefault(t *testing.T) {
	ts := newTestServer(t)
	if got := ts.check(t); got != codes.OK {
		t.Errorf("Check without a token = %v, want OK", got)
	}
	if got := ts.watch(t); got != codes.OK {
		t.Errorf("Watch without a token = %v, want OK", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := ts.client.List(ctx, &healthpb.HealthListRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("List without a token = %v, want Unauthenticated", err)
	}
	for _, c := range ts.seen() {
		if c != "<none>" {
			t.Errorf("exempt call carried Caller %q", c)
		}
	}
}

// TestAuthenticator_ThrottlesOnlyFailures: a peer's repeated wrong tokens
// are refused with ResourceExhausted without being checked further, but
// the right token from the same peer, on a call or a stream, always
// passes: failures cost the guesser and no one else.
func TestAuthenticator_ThrottlesOnlyFailures(t *testing.T) {
	ts := newTestServer(t, WithExemptMethods(), WithFailureLimit(2, time.Hour, time.Hour))
	wrong := grpc.PerRPCCredentials(Credentials(otherToken))
	right := grpc.PerRPCCredentials(Credentials(testToken))
	steps := []struct {
		name string
		call func(*testing.T, ...grpc.CallOption) codes.Code
		opt  grpc.CallOption
		want codes.Code
	}{
		{"first wrong token", ts.check, wrong, codes.Unauthenticated},
		{"second wrong token", ts.watch, wrong, codes.Unauthenticated},
		{"third wrong token, throttled", ts.check, wrong, codes.ResourceExhausted},
		{"wrong token on a stream, throttled", ts.watch, wrong, codes.ResourceExhausted},
		{"right token from the throttled peer", ts.check, right, codes.OK},
		{"right token on a stream from the throttled peer", ts.watch, right, codes.OK},
	}
	for _, s := range steps {
		if got := s.call(t, s.opt); got != s.want {
			t.Errorf("%s: %v, want %v", s.name, got, s.want)
		}
	}
	for i := range 100 {
		if got := ts.check(t, wrong); got != codes.ResourceExhausted {
			t.Fatalf("wrong token %d: %v, want ResourceExhausted", i, got)
		}
		if got := ts.check(t, right); got != codes.OK {
			t.Fatalf("right token after %d more failures: %v, want OK", i+1, got)
		}
	}
	// A missing token guesses nothing, so it is answered as such.
	if got := ts.check(t); got != codes.Unauthenticated {
		t.Errorf("no token while throttled: %v, want Unauthenticated", got)
	}
}

func TestPeerLimiter_LocksOutOnePeerForTheLockout(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newPeerLimiter(3, time.Minute, 5*time.Minute, func() time.Time { return now })
	for i := 0; i < 3; i++ {
		if d := l.lockedFor("10.0.0.1"); d != 0 {
			t.Fatalf("locked after %d failures", i)
		}
		l.fail("10.0.0.1")
		now = now.Add(10 * time.Second)
	}
	if d := l.lockedFor("10.0.0.1"); d != 5*time.Minute-10*time.Second {
		t.Fatalf("lockedFor = %v, want the rest of the 5m lockout", d)
	}
	if d := l.lockedFor("10.0.0.2"); d != 0 {
		t.Fatalf("another peer is locked out for %v", d)
	}
	now = now.Add(5 * time.Minute)
	if d := l.lockedFor("10.0.0.1"); d != 0 {
		t.Fatalf("still locked %v after the lockout", d)
	}
	l.fail("10.0.0.1")
	if d := l.lockedFor("10.0.0.1"); d != 0 {
		t.Fatalf("one failure after the lockout locked out for %v", d)
	}
}

func TestPeerLimiter_FailuresOutsideTheWindowDoNotAddUp(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newPeerLimiter(3, time.Minute, 5*time.Minute, func() time.Time { return now })
	for i := 0; i < 6; i++ {
		l.fail("p")
		now = now.Add(45 * time.Second)
	}
	if d := l.lockedFor("p"); d != 0 {
		t.Fatalf("slow failures locked out for %v", d)
	}
}

func TestNew_RefusesUnsafeConfiguration(t *testing.T) {
	tests := []struct {
		name  string
		token []byte
		opts  []Option
	}{
		{name: "empty token", token: nil},
		{name: "weak token", token: []byte("secret")},
		{name: "zero failure limit", token: testToken, opts: []Option{WithFailureLimit(0, time.Minute, time.Minute)}},
		{name: "zero failure window", token: testToken, opts: []Option{WithFailureLimit(5, 0, time.Minute)}},
		{name: "zero lockout", token: testToken, opts: []Option{WithFailureLimit(5, time.Minute, 0)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if a, err := New(tc.token, tc.opts...); err == nil {
				t.Errorf("New = %v, want an error", a)
			}
		})
	}
}

func TestCredentials_SendsBearerHeader(t *testing.T) {
	md, err := Credentials(testToken).GetRequestMetadata(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := md["authorization"], "Bearer "+string(testToken); got != want {
		t.Errorf("authorization = %q, want %q", got, want)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.New(md))
	if tok, ok := bearerToken(ctx); !ok || tok != string(testToken) {
		t.Errorf("bearerToken read back %q, %v", tok, ok)
	}
}

type peerKeyer string

func (k peerKeyer) AuthType() string { return "test" }
func (k peerKeyer) PeerKey() string  { return string(k) }

// TestAuthenticator_UnixPeersAreThrottledByUID: on the unix socket, where
// the listener reports each peer's uid, one local user's wrong tokens
// lock out that user only; without it, unix peers share one budget.
func TestAuthenticator_UnixPeersAreThrottledByUID(t *testing.T) {
	a, err := New(testToken, WithExemptMethods(), WithFailureLimit(2, time.Hour, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	call := func(info credentials.AuthInfo) codes.Code {
		md := metadata.Pairs("authorization", "Bearer "+string(otherToken))
		ctx := peer.NewContext(metadata.NewIncomingContext(context.Background(), md),
			&peer.Peer{Addr: &net.UnixAddr{Net: "unix", Name: "@"}, AuthInfo: info})
		_, err := a.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: healthpb.Health_Check_FullMethodName},
			func(context.Context, any) (any, error) { return nil, nil })
		return status.Code(err)
	}
	for range 2 {
		call(peerKeyer("unix-uid:1000"))
	}
	if got := call(peerKeyer("unix-uid:1000")); got != codes.ResourceExhausted {
		t.Errorf("uid 1000 after its failures: %v, want ResourceExhausted", got)
	}
	if got := call(peerKeyer("unix-uid:1001")); got != codes.Unauthenticated {
		t.Errorf("uid 1001 beside it: %v, want Unauthenticated, its own budget", got)
	}
	// The control: unix peers without credentials are one peer.
	for range 2 {
		call(nil)
	}
	if got := call(nil); got != codes.ResourceExhausted {
		t.Errorf("unix peers without credentials: %v, want one shared budget", got)
	}
}

// Package auth guards the broker's gRPC API with one shared bearer token:
// loading and judging the token, a unary and stream server interceptor
// pair that checks it in constant time and limits guessing, and the client
// credentials that send it.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TokenCaller is the identity of a caller that presented the broker token.
// There is one token, so there is one identity; it exists so handlers and
// the audit log already ask Caller, should per-client tokens come later.
const TokenCaller = "token"

// Defaults for WithFailureLimit: far below what guessing a 192-bit token
// would need, far above what a misconfigured but honest client produces.
const (
	// DefaultFailureLimit is how many invalid tokens a window tolerates.
	DefaultFailureLimit = 10
	// DefaultFailureWindow is how long failures count and a lockout lasts at most.
	DefaultFailureWindow = time.Minute
)

// defaultExemptMethods lets health probes through without the token: probes
// (kubelet, grpc_health_probe, systemd) usually cannot carry a secret, and
// the serving status they read says nothing about jobs. List is not exempt
// because it enumerates services.
var defaultExemptMethods = []string{
	healthpb.Health_Check_FullMethodName,
	healthpb.Health_Watch_FullMethodName,
}

// Option configures New.
type Option func(*config)

type config struct {
	exempt    map[string]bool
	limit     int
	window    time.Duration
	now       func() time.Time
	onFailure func(reason string)
}

// WithFailureHook calls f with a short reason ("missing", "invalid",
// "locked_out") for every refused call, for metrics and logs.
func WithFailureHook(f func(reason string)) Option {
	return func(c *config) { c.onFailure = f }
}

// WithExemptMethods sets the methods that need no token, as full gRPC
// method names ("/pkg.Service/Method"), replacing the default of the health
// service's Check and Watch. With no methods, every call needs the token.
func WithExemptMethods(methods ...string) Option {
	return func(c *config) {
		c.exempt = make(map[string]bool, len(methods))
		for _, m := range methods {
			c.exempt[m] = true
		}
	}
}

// WithFailureLimit locks everyone out for the rest of a window once limit
// invalid tokens arrive within it. See Authenticator for why the lockout is
// global.
func WithFailureLimit(limit int, window time.Duration) Option {
	return func(c *config) {
		c.limit, c.window = limit, window
	}
}

// Authenticator checks the bearer token on every call that is not exempt.
// It keeps only a digest of the token. Its failure limit is global, not per
// peer: on a unix socket or loopback every peer looks alike, and a global
// limit caps guessing no matter how many connections an attacker opens. The
// cost is that a local peer sending bad tokens delays legitimate callers for
// up to one window; while locked out, even the right token is refused,
// because checking it would let guessing go on at full speed.
type Authenticator struct {
	digest    [sha256.Size]byte
	exempt    map[string]bool
	limit     *failureLimiter
	onFailure func(reason string)
}

// New returns an Authenticator for token, refusing a token that fails
// CheckToken so that no configuration path can run the broker unguarded.
// Unless options say otherwise, health Check and Watch need no token and
// DefaultFailureLimit invalid tokens per DefaultFailureWindow lock out.
func New(token []byte, opts ...Option) (*Authenticator, error) {
	if err := CheckToken(token); err != nil {
		return nil, err
	}
	c := config{
		limit:  DefaultFailureLimit,
		window: DefaultFailureWindow,
		now:    time.Now,
	}
	WithExemptMethods(defaultExemptMethods...)(&c)
	for _, o := range opts {
		o(&c)
	}
	if c.limit <= 0 || c.window <= 0 {
		return nil, fmt.Errorf("auth: failure limit must be positive, got %d per %s", c.limit, c.window)
	}
	return &Authenticator{
		digest:    sha256.Sum256(token),
		exempt:    c.exempt,
		limit:     &failureLimiter{limit: c.limit, window: c.window, now: c.now},
		onFailure: c.onFailure,
	}, nil
}

func (a *Authenticator) failed(reason string) {
	if a.onFailure != nil {
		a.onFailure(reason)
	}
}

// UnaryServerInterceptor checks the token on unary calls.
func (a *Authenticator) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor checks the token on streaming calls.
func (a *Authenticator) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
	}
}

// authenticate returns ctx carrying the caller, or the status to fail with.
func (a *Authenticator) authenticate(ctx context.Context, method string) (context.Context, error) {
	if a.exempt[method] {
		return ctx, nil
	}
	tok, ok := bearerToken(ctx)
	if !ok {
		// Not counted as a failure: without a token nothing is guessed, and
		// a misconfigured client must not lock everyone out.
		a.failed("missing")
		return nil, status.Error(codes.Unauthenticated, "missing bearer token")
	}
	if wait := a.limit.lockedFor(); wait > 0 {
		a.failed("locked_out")
		return nil, status.Errorf(codes.ResourceExhausted,
			"too many invalid bearer tokens; retry in %s", (wait + time.Second - 1).Truncate(time.Second))
	}
	// Comparing fixed-size digests keeps the token's length out of the timing.
	got := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(got[:], a.digest[:]) != 1 {
		a.limit.fail()
		a.failed("invalid")
		return nil, status.Error(codes.Unauthenticated, "invalid bearer token")
	}
	return context.WithValue(ctx, callerKey{}, TokenCaller), nil
}

// bearerToken extracts the token from the one "authorization: Bearer <token>"
// header. Several authorization headers are treated as none: which one a
// proxy or handler would honour is ambiguous.
func bearerToken(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

type callerKey struct{}

// Caller returns the authenticated identity carried by ctx; ok is false on
// calls that were exempt from authentication.
func Caller(ctx context.Context) (caller string, ok bool) {
	caller, ok = ctx.Value(callerKey{}).(string)
	return caller, ok
}

// authedStream hands handlers the context that carries the caller.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }

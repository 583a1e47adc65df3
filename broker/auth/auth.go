// Package auth guards the broker's gRPC API with named bearer tokens, each
// with scopes: loading and judging tokens, a unary and stream server
// interceptor pair that checks them in constant time, enforces scopes and
// limits guessing per peer, and the client credentials that send a token.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// TokenCaller is the name New gives its single token.
const TokenCaller = "default"

// Scope is what a token may do.
type Scope string

// Scopes. A method needs exactly one; an unmapped method needs ScopeAdmin,
// so a new RPC is closed until someone decides otherwise.
const (
	ScopeSpawn Scope = "spawn"
	ScopeRead  Scope = "read"
	ScopeAdmin Scope = "admin"
)

// AllScopes is every scope, for the single-token setup.
var AllScopes = []Scope{ScopeSpawn, ScopeRead, ScopeAdmin}

// Token is one named token and what it may do.
type Token struct {
	Name   string
	Scopes []Scope
	Secret []byte
}

// Identity is an authenticated caller.
type Identity struct {
	Name   string
	Scopes []Scope
}

// Has reports whether the caller holds scope s.
func (i Identity) Has(s Scope) bool { return slices.Contains(i.Scopes, s) }

// DefaultLockout is how long a peer is refused after too many failures.
const DefaultLockout = 5 * time.Minute

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
	scopes    map[string]Scope
	limit     int
	window    time.Duration
	lockout   time.Duration
	now       func() time.Time
	onFailure func(reason string)
}

// WithMethodScopes maps full method names to the scope each needs.
func WithMethodScopes(m map[string]Scope) Option {
	return func(c *config) { c.scopes = m }
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

// WithFailureLimit throttles a peer for lockout once limit invalid tokens
// from it arrive within window: its further invalid tokens are refused
// unchecked. Its valid tokens always pass.
func WithFailureLimit(limit int, window, lockout time.Duration) Option {
	return func(c *config) {
		c.limit, c.window, c.lockout = limit, window, lockout
	}
}

// withClock replaces time.Now, for tests.
func withClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// Authenticator checks the bearer token on every call that is not exempt.
// It keeps only digests of the tokens, and the token set can be swapped
// while serving (Reload) without touching calls already authenticated.
// Failures are limited per peer: a TCP peer by IP, a unix-socket peer by
// the uid the kernel reports for it where the listener gives one (see
// PeerKeyer), else every unix-socket peer as one. Only failures are throttled: the right token always passes,
// so a guesser sharing a socket or an address with valid callers costs
// them nothing.
type Authenticator struct {
	tokens    atomic.Pointer[[]entry]
	exempt    map[string]bool
	scopes    map[string]Scope
	limits    *peerLimiter
	onFailure func(reason string)
}

type entry struct {
	digest [sha256.Size]byte
	id     Identity
}

// New returns an Authenticator for token, refusing a token that fails
// CheckToken so that no configuration path can run the broker unguarded.
// Unless options say otherwise, health Check and Watch need no token and
// DefaultFailureLimit invalid tokens per DefaultFailureWindow lock out.
func New(token []byte, opts ...Option) (*Authenticator, error) {
	return NewTokens([]Token{{Name: TokenCaller, Scopes: AllScopes, Secret: token}}, opts...)
}

// NewTokens returns an Authenticator for a set of named tokens.
func NewTokens(tokens []Token, opts ...Option) (*Authenticator, error) {
	c := config{
		limit:   DefaultFailureLimit,
		window:  DefaultFailureWindow,
		lockout: DefaultLockout,
		now:     time.Now,
	}
	WithExemptMethods(defaultExemptMethods...)(&c)
	for _, o := range opts {
		o(&c)
	}
	if c.limit <= 0 || c.window <= 0 || c.lockout <= 0 {
		return nil, fmt.Errorf("auth: failure limit must be positive, got %d per %s, lockout %s", c.limit, c.window, c.lockout)
	}
	a := &Authenticator{
		exempt:    c.exempt,
		scopes:    c.scopes,
		limits:    newPeerLimiter(c.limit, c.window, c.lockout, c.now),
		onFailure: c.onFailure,
	}
	if err := a.Reload(tokens); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload replaces the token set. A token no longer in it stops working on
// the next call; calls in flight are not affected.
func (a *Authenticator) Reload(tokens []Token) error {
	if len(tokens) == 0 {
		return fmt.Errorf("%w: no tokens configured", ErrNoToken)
	}
	entries := make([]entry, 0, len(tokens))
	names := map[string]bool{}
	for _, t := range tokens {
		if t.Name == "" || names[t.Name] {
			return fmt.Errorf("auth: token names must be unique and non-empty (got %q)", t.Name)
		}
		names[t.Name] = true
		if err := CheckToken(t.Secret); err != nil {
			return fmt.Errorf("token %q: %w", t.Name, err)
		}
		if len(t.Scopes) == 0 {
			return fmt.Errorf("auth: token %q has no scopes", t.Name)
		}
		for _, s := range t.Scopes {
			if !slices.Contains(AllScopes, s) {
				return fmt.Errorf("auth: token %q: unknown scope %q (want spawn, read or admin)", t.Name, s)
			}
		}
		entries = append(entries, entry{digest: sha256.Sum256(t.Secret), id: Identity{Name: t.Name, Scopes: slices.Clone(t.Scopes)}})
	}
	for i := range entries {
		for j := range entries {
			if i != j && entries[i].digest == entries[j].digest {
				return fmt.Errorf("auth: tokens %q and %q are the same secret", entries[i].id.Name, entries[j].id.Name)
			}
		}
	}
	a.tokens.Store(&entries)
	return nil
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
	// Comparing fixed-size digests keeps the token's length out of the
	// timing, and every entry is compared so the position of a match is too.
	got := sha256.Sum256([]byte(tok))
	var id *Identity
	for _, e := range *a.tokens.Load() {
		if subtle.ConstantTimeCompare(got[:], e.digest[:]) == 1 {
			id = &e.id
		}
	}
	if id == nil {
		// Only failures are throttled, and only the failing peer's: a
		// valid token is never refused because of anyone's failures, its
		// own peer's included, or a guesser could lock out every caller
		// sharing its socket or address. With 192-bit tokens the throttle
		// is not what stops guessing; it keeps a flood of bad tokens cheap.
		peer := peerKey(ctx)
		if wait := a.limits.lockedFor(peer); wait > 0 {
			a.failed("locked_out")
			return nil, status.Errorf(codes.ResourceExhausted,
				"too many invalid bearer tokens; retry in %s", (wait + time.Second - 1).Truncate(time.Second))
		}
		a.limits.fail(peer)
		a.failed("invalid")
		return nil, status.Error(codes.Unauthenticated, "invalid bearer token")
	}
	need, ok := a.scopes[method]
	if !ok {
		need = ScopeAdmin
	}
	if !id.Has(need) {
		a.failed("scope")
		return nil, status.Errorf(codes.PermissionDenied, "token %q lacks the %s scope that %s needs", id.Name, need, method)
	}
	return context.WithValue(ctx, callerKey{}, *id), nil
}

// PeerKeyer is an AuthInfo that names its peer for failure limiting, such
// as the unix socket's peer credentials.
type PeerKeyer interface{ PeerKey() string }

// peerKey identifies a caller's origin for failure limiting.
func peerKey(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if ok {
		if k, ok := p.AuthInfo.(PeerKeyer); ok {
			return k.PeerKey()
		}
	}
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if p.Addr.Network() == "unix" {
		return "unix"
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
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
func Caller(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(callerKey{}).(Identity)
	return id, ok
}

// WithCaller returns ctx carrying id, for tests of handlers.
func WithCaller(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, callerKey{}, id)
}

// authedStream hands handlers the context that carries the caller.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }

package client

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	// Registers the client side of gRPC health checking, which the service
	// config's healthCheckConfig turns on: round_robin then skips a broker
	// whose health is NOT_SERVING (draining, or its admission full).
	_ "google.golang.org/grpc/health"
	"google.golang.org/grpc/resolver"

	"github.com/airlock/airlock/broker/auth"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// ServiceConfig is the gRPC service config of a balanced connection:
//
//   - round_robin over every address the resolver gives (with dns:/// over a
//     headless Service, every airlockd pod);
//   - health checking of airlock.v1.Broker, so that round_robin skips a
//     broker that drains or whose admission is full;
//   - Spawn and SpawnStream retried on UNAVAILABLE and RESOURCE_EXHAUSTED,
//     at most 5 attempts in all (gRPC's own ceiling), with jittered
//     exponential backoff from 0.1 s to 2 s. gRPC retries only until the
//     broker sends response headers: a Spawn until its response, a
//     SpawnStream until its accepted event.
//
// docs/scale-out.md says why a retry is safe.
const ServiceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "healthCheckConfig": {"serviceName": "airlock.v1.Broker"},
  "methodConfig": [{
    "name": [{"service": "airlock.v1.Broker", "method": "Spawn"}, {"service": "airlock.v1.Broker", "method": "SpawnStream"}],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.1s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]
    }
  }]
}`

// retryBufferBytes is how much of a call gRPC keeps to send it again. A
// request larger than this is not retried; it covers the broker's content
// limit (32 MiB) with room for the rest.
const retryBufferBytes = 48 << 20

// Option configures DialTarget.
type Option func(*dialConfig)

type dialConfig struct {
	tls      *tls.Config
	resolver resolver.Builder
}

// WithTLS speaks TLS to the brokers, verifying them with cfg; the server
// name is the target's host unless cfg names one. Without it, every
// address the target resolves to must be loopback.
func WithTLS(cfg *tls.Config) Option { return func(c *dialConfig) { c.tls = cfg } }

// WithResolver resolves the target with b instead of the resolver gRPC has
// registered for its scheme: a manual resolver in tests, for example.
func WithResolver(b resolver.Builder) Option { return func(c *dialConfig) { c.resolver = b } }

// DialTarget connects to every broker a gRPC target names and balances
// jobs over them: "dns:///airlockd.airlock.svc.cluster.local:7443" is
// every pod of a headless Service; "127.0.0.1:7443" is one broker. The
// token is sent with every call, on every connection. GetJob, Cancel and
// Approve for a job this Conn spawned go to the broker that runs it.
func DialTarget(target, tokenFile string, opts ...Option) (*Conn, error) {
	var cfg dialConfig
	for _, o := range opts {
		o(&cfg)
	}
	token, err := auth.LoadToken(tokenFile)
	if err != nil {
		return nil, err
	}
	scheme, endpoint, err := splitTarget(target)
	if err != nil {
		return nil, err
	}
	b := cfg.resolver
	if b == nil {
		if b = resolver.Get(scheme); b == nil {
			return nil, fmt.Errorf("target %q: no resolver for scheme %q (use dns:///host:port)", target, scheme)
		}
	} else if b.Scheme() != scheme {
		return nil, fmt.Errorf("target %q: scheme %q, but the resolver given is for %q", target, scheme, b.Scheme())
	}
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if cfg.tls != nil {
		creds = credentials.NewTLS(cfg.tls)
	}
	base := callOptions(creds, token)
	r := newRouter(endpoint, cfg.tls == nil, base)
	cc, err := grpc.NewClient(target, append(base,
		grpc.WithResolvers(watchedBuilder{Builder: b, r: r}),
		grpc.WithDefaultServiceConfig(ServiceConfig),
		// A resolver's own service config (a DNS TXT record) could turn
		// retries or health checks off; only ours applies.
		grpc.WithDisableServiceConfig(),
		grpc.WithChainUnaryInterceptor(r.unary),
		grpc.WithChainStreamInterceptor(r.stream),
	)...)
	if err != nil {
		return nil, err
	}
	r.cc = cc
	return &Conn{ClientConn: cc, Broker: airlockv1.NewBrokerClient(cc), router: r}, nil
}

// callOptions are what every connection to a broker has, balanced or not:
// its transport, the token, the size limits and the clearer size errors.
func callOptions(creds credentials.TransportCredentials, token []byte) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(auth.Credentials(token)),
		// The send limit is above the broker's read limit, so that the
		// broker's door, not this client, judges a request's size.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(128<<20), grpc.MaxRetryRPCBufferSize(retryBufferBytes)),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return explainTooLarge(invoker(ctx, method, req, reply, cc, opts...))
		}),
	}
}

// splitTarget parses a gRPC target into its scheme (dns when it has none,
// as gRPC does) and its endpoint, the host:port after the authority.
func splitTarget(target string) (scheme, endpoint string, err error) {
	if u, perr := url.Parse(target); perr == nil && u.Scheme != "" && (u.Path != "" || u.Opaque != "") {
		scheme, endpoint = u.Scheme, strings.TrimPrefix(cmp.Or(u.Path, u.Opaque), "/")
	} else {
		scheme, endpoint = "dns", target
	}
	if _, _, err := net.SplitHostPort(endpoint); err != nil {
		return "", "", fmt.Errorf("target %q: want dns:///host:port or host:port: %w", target, err)
	}
	return scheme, endpoint, nil
}

// watchedBuilder wraps a resolver so that the router learns every address
// list it produces, and so that plaintext never reaches past loopback.
type watchedBuilder struct {
	resolver.Builder
	r *router
}

func (b watchedBuilder) Build(t resolver.Target, cc resolver.ClientConn, o resolver.BuildOptions) (resolver.Resolver, error) {
	return b.Builder.Build(t, &watchedConn{ClientConn: cc, r: b.r}, o)
}

type watchedConn struct {
	resolver.ClientConn
	r *router
}

// UpdateState passes the resolver's state on, unless it holds an address
// plaintext must not reach: then the whole update is refused, and calls
// fail with the reason instead of reaching any broker.
func (w *watchedConn) UpdateState(s resolver.State) error {
	addrs := addressesOf(s)
	if w.r.plaintext {
		for _, a := range addrs {
			if !isLoopback(a) {
				err := fmt.Errorf("the target resolves to %s, which is not loopback: brokers elsewhere need TLS (--tls-ca, client.WithTLS)", a)
				w.ClientConn.ReportError(err)
				w.r.markResolved()
				return err
			}
		}
	}
	w.r.setAddresses(addrs)
	return w.ClientConn.UpdateState(s)
}

// ReportError passes a resolver's failure on, and lets calls waiting for
// its first answer fail instead of waiting out their deadline.
func (w *watchedConn) ReportError(err error) {
	w.r.markResolved()
	w.ClientConn.ReportError(err)
}

// addressesOf lists the addresses of a resolver state, whether the
// resolver filled Addresses or Endpoints.
func addressesOf(s resolver.State) []string {
	var out []string
	for _, a := range s.Addresses {
		out = append(out, a.Addr)
	}
	for _, e := range s.Endpoints {
		for _, a := range e.Addresses {
			out = append(out, a.Addr)
		}
	}
	return out
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// errNotANode is a job's node that the target never resolved to.
var errNotANode = errors.New("not among the addresses the target has resolved to")

// Endpoint is where a command finds its brokers, from its flags: Target
// (gRPC target syntax, balanced, TLS with TLSCA), else Addr (one broker on
// loopback TCP), else Socket.
type Endpoint struct {
	Socket, Addr, Target, TLSCA, TokenFile string
}

// Dial connects to the endpoint.
func (e Endpoint) Dial() (*Conn, error) {
	if e.Target == "" {
		if e.TLSCA != "" {
			return nil, errors.New("--tls-ca goes with --target: a socket or loopback address is plaintext")
		}
		return Dial(e.Socket, e.Addr, e.TokenFile)
	}
	if e.Addr != "" {
		return nil, errors.New("give --target or --addr, not both")
	}
	var opts []Option
	if e.TLSCA != "" {
		pem, err := os.ReadFile(e.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", e.TLSCA)
		}
		opts = append(opts, WithTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	return DialTarget(e.Target, e.TokenFile, opts...)
}

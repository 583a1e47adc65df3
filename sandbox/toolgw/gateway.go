package toolgw

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/airlock/airlock/sandbox/job/panics"
)

// Defaults of Config's limits.
const (
	DefaultMaxInFlight = 4
	DefaultMaxConns    = 8
	DefaultRate        = 20
	DefaultBurst       = 40
	DefaultReadTimeout = 5 * time.Second
	// MaxBadCapabilities is how many wrong capabilities a gateway takes
	// before it refuses everything: a job that guesses is hostile.
	MaxBadCapabilities = 8
	// minCapabilityBytes is the shortest capability Listen accepts.
	minCapabilityBytes = 16
)

// Reasons of refusals the gateway makes itself, short codes that also key
// Stats.Refused; the Handler gives its own reasons.
const (
	// ReasonBadCapability: the request's capability is not the job's.
	ReasonBadCapability = "wrong_capability"
	// ReasonLocked: after MaxBadCapabilities, every request is refused.
	ReasonLocked = "locked_out"
	// ReasonRateLimited: over Config.Rate and Burst.
	ReasonRateLimited = "rate_limited"
	// ReasonBusy: over Config.MaxInFlight or MaxConns.
	ReasonBusy = "busy"
	// ReasonMalformed: not one well-formed request frame.
	ReasonMalformed = "malformed_request"
	// ReasonClosing: the job ended while the request waited.
	ReasonClosing = "job_ending"
	// ReasonFailed: handling the request panicked, a bug of Airlock's;
	// the connection was closed unanswered.
	ReasonFailed = "gateway_failed"
)

// Handler decides one authenticated, well-formed request and, when it is
// an allowed command, runs it. It gets the request without its capability.
// It must return once ctx ends.
type Handler func(ctx context.Context, req Request) Response

// Config configures a Gateway.
type Config struct {
	// Socket is the host path to listen on. Its directory must exist and
	// the file must not.
	Socket string
	// Capability is the job's secret; see NewCapability.
	Capability string
	// Handler serves authenticated requests.
	Handler Handler
	// UID and GID own the socket: the sandbox user as the host sees it.
	// The socket is mode 0600, so only that user can connect.
	UID, GID int
	// MaxInFlight caps requests handled at once; more are refused.
	MaxInFlight int
	// MaxConns caps open connections; more are refused and closed.
	MaxConns int
	// Rate and Burst bound requests per second, token-bucket style.
	Rate  float64
	Burst int
	// ReadTimeout bounds reading one request.
	ReadTimeout time.Duration
	Logger      *slog.Logger
}

// Stats counts what a gateway saw.
type Stats struct {
	// Requests is every connection accepted.
	Requests int
	// Handled is requests that reached the Handler.
	Handled int
	// Refused counts the gateway's own refusals, by reason constant.
	Refused map[string]int
}

// Gateway serves one job's tool requests.
type Gateway struct {
	cfg    Config
	lis    net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	log    *slog.Logger

	inFlight chan struct{}
	conns    chan struct{}

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	badCaps int
	stats   Stats
}

// NewCapability returns a fresh random capability.
func NewCapability() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Listen creates the socket and serves it until Close. It refuses a config
// without a capability or handler rather than serve an open gateway.
func Listen(cfg Config) (*Gateway, error) {
	switch {
	case len(cfg.Capability) < minCapabilityBytes:
		return nil, fmt.Errorf("toolgw: a capability of at least %d bytes is required: without one any process that reaches the socket could run commands", minCapabilityBytes)
	case cfg.Handler == nil:
		return nil, errors.New("toolgw: Handler is required")
	case cfg.Socket == "":
		return nil, errors.New("toolgw: Socket is required")
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	lis, err := listenUnix(cfg.Socket)
	if err != nil {
		return nil, fmt.Errorf("toolgw: listen: %w", err)
	}
	// Closing the listener must not unlink the socket behind the runner's
	// back; the runner removes the job directory itself.
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(cfg.Socket, 0o600); err != nil {
		lis.Close()
		return nil, fmt.Errorf("toolgw: %w", err)
	}
	if err := os.Chown(cfg.Socket, cfg.UID, cfg.GID); err != nil {
		lis.Close()
		return nil, fmt.Errorf("toolgw: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		cfg: cfg, lis: lis, ctx: ctx, cancel: cancel, log: cfg.Logger,
		inFlight: make(chan struct{}, cfg.MaxInFlight),
		conns:    make(chan struct{}, cfg.MaxConns),
		tokens:   float64(cfg.Burst),
		last:     time.Now(),
		stats:    Stats{Refused: map[string]int{}},
	}
	g.wg.Add(1)
	// Not recovered: serve only accepts and counts; each connection's
	// goroutine recovers its own panic (recovered).
	go g.serve()
	return g, nil
}

// maxSunPath is the longest socket path bind takes (sun_path less its NUL).
const maxSunPath = 107

// listenUnix listens at path. A job directory's socket path can be longer
// than bind takes, so a long one is bound through the /proc/self/fd link of
// its directory, which names the same place in a few bytes.
func listenUnix(path string) (net.Listener, error) {
	if len(path) <= maxSunPath {
		return net.Listen("unix", path)
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	short := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path))
	if len(short) > maxSunPath {
		return nil, fmt.Errorf("socket name %q is too long", filepath.Base(path))
	}
	return net.Listen("unix", short)
}

// Close stops accepting, cancels the requests in flight and waits for them.
func (g *Gateway) Close() error {
	g.cancel()
	err := g.lis.Close()
	g.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Stats returns a copy of the gateway's counts.
func (g *Gateway) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.stats
	s.Refused = make(map[string]int, len(g.stats.Refused))
	for k, v := range g.stats.Refused {
		s.Refused[k] = v
	}
	return s
}

func (g *Gateway) serve() {
	defer g.wg.Done()
	for {
		conn, err := g.lis.Accept()
		if err != nil {
			if g.ctx.Err() == nil {
				g.log.Warn("tool gateway accept", "err", err)
			}
			return
		}
		g.count(func(s *Stats) { s.Requests++ })
		select {
		case g.conns <- struct{}{}:
		default:
			g.refuseNow(conn, ReasonBusy)
			continue
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer func() { <-g.conns }()
			defer conn.Close()
			defer g.recovered()
			g.handle(conn)
		}()
	}
}

func (g *Gateway) handle(conn net.Conn) {
	if !g.allowRate() {
		g.refuse(conn, ReasonRateLimited)
		return
	}
	_ = conn.SetReadDeadline(time.Now().Add(g.cfg.ReadTimeout))
	var req Request
	if err := ReadFrame(conn, &req, MaxRequestBytes); err != nil {
		g.refuse(conn, ReasonMalformed)
		return
	}
	if reason, ok := g.checkCapability(req.Cap); !ok {
		g.refuse(conn, reason)
		return
	}
	if !req.wellFormed() {
		g.refuse(conn, ReasonMalformed)
		return
	}
	select {
	case g.inFlight <- struct{}{}:
	default:
		g.refuse(conn, ReasonBusy)
		return
	}
	defer func() { <-g.inFlight }()
	g.count(func(s *Stats) { s.Handled++ })

	// The client may hang up while a command waits for approval; the
	// request then ends with the job, not with the connection.
	// The capability goes no further: nothing past here can log it.
	req.Cap = ""
	resp := g.cfg.Handler(g.ctx, req)
	_ = conn.SetWriteDeadline(time.Now().Add(g.cfg.ReadTimeout))
	if err := WriteFrame(conn, resp, MaxResponseBytes); err != nil {
		g.log.Debug("tool gateway reply", "err", err)
	}
}

// recovered, deferred by a connection's goroutine, ends a request whose
// handling panicked: a bug of Airlock's, the gateway's or the Handler's
// (the broker's exec gate, the runner's exec), that the job's request may
// have provoked. The connection is closed unanswered, the failure counted
// as a refusal for the job's audit, and the panic logged with the stack
// it began in; the job's other requests, its other jobs and airlockd go
// on. The Handler's own deferred calls (a process's delete) have run.
func (g *Gateway) recovered() {
	r := recover()
	if r == nil {
		return
	}
	panics.Log(g.log, "tool gateway request panicked", r, debug.Stack())
	g.count(func(s *Stats) { s.Refused[ReasonFailed]++ })
}

// checkCapability compares in constant time, and locks the gateway after
// MaxBadCapabilities wrong ones.
func (g *Gateway) checkCapability(c string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.badCaps >= MaxBadCapabilities {
		return ReasonLocked, false
	}
	if subtle.ConstantTimeCompare([]byte(c), []byte(g.cfg.Capability)) == 1 {
		return "", true
	}
	g.badCaps++
	return ReasonBadCapability, false
}

// allowRate takes one token from the bucket.
func (g *Gateway) allowRate() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	g.tokens = min(float64(g.cfg.Burst), g.tokens+now.Sub(g.last).Seconds()*g.cfg.Rate)
	g.last = now
	if g.tokens < 1 {
		return false
	}
	g.tokens--
	return true
}

func (g *Gateway) refuse(conn net.Conn, reason string) {
	g.count(func(s *Stats) { s.Refused[reason]++ })
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = WriteFrame(conn, Response{ExitCode: -1, Reason: reason}, MaxResponseBytes)
}

// refuseNow answers a connection over the cap without a goroutine of its
// own, and closes it.
func (g *Gateway) refuseNow(conn net.Conn, reason string) {
	g.refuse(conn, reason)
	conn.Close()
}

func (g *Gateway) count(f func(*Stats)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f(&g.stats)
}

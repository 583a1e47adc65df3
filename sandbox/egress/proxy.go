package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airlock/airlock/sandbox/job"
	"github.com/airlock/airlock/sandbox/job/panics"
)

// Defaults for the zero values of Config.
const (
	// DefaultDialTimeout is Config.DialTimeout's default.
	DefaultDialTimeout = 10 * time.Second
	// DefaultReadHeaderTimeout is Config.ReadHeaderTimeout's default.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultResponseHeaderTimeout is Config.ResponseHeaderTimeout's
	// default; a model API may think for a while before it answers.
	DefaultResponseHeaderTimeout = 60 * time.Second
	// DefaultIdleTimeout is Config.IdleTimeout's default.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultFirstRequestTimeout is Config.FirstRequestTimeout's default.
	DefaultFirstRequestTimeout = 5 * time.Second
	// DefaultMaxConns is Config.MaxConns's default.
	DefaultMaxConns = 32
	// DefaultMaxTotalConns is Config.MaxTotalConns's default.
	DefaultMaxTotalConns = 4096
	// DefaultMaxBytes is Config.MaxBytes's default, 1 GiB.
	DefaultMaxBytes = 1 << 30
	// DefaultMaxLogEntries is Config.MaxLogEntries's default.
	DefaultMaxLogEntries = 1000
	// DefaultMaxLogBytes is Config.MaxLogBytes's default, 256 KiB.
	DefaultMaxLogBytes = 256 << 10
)

// Resolver looks up the addresses of a name; *net.Resolver is one.
type Resolver interface {
	// LookupNetIP returns the addresses of host; network is "ip".
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures a Proxy. Zero durations and caps take the defaults
// above; negative ones are refused.
type Config struct {
	// Resolver resolves destination names; net.DefaultResolver if nil.
	Resolver Resolver
	// Dialer opens upstream TCP connections to an IP:port that passed the
	// checks; a net.Dialer if nil.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// HostAddrs lists the broker host's own addresses, which no name may
	// resolve to unless an egress entry names the address itself: a job
	// must not reach the broker's own services through an allowlisted
	// name that points at the host. If nil, the addresses of the
	// interfaces in the proxy's network namespace, listed at most once a
	// second. An error refuses the request.
	HostAddrs func() ([]netip.Addr, error)
	// Logger receives one record per attempt and per connection problem;
	// slog.Default() if nil. Records never hold headers or secrets.
	Logger *slog.Logger
	// ServiceTLS is the TLS configuration towards https upstreams of
	// service aliases (plain-http forwarding has no TLS, and CONNECT
	// tunnels carry the job's own). Its RootCAs, or the system roots if it
	// or they are nil, are all that is trusted: to trust a private CA as
	// well, set RootCAs to LoadCAFile's pool, which adds the file's
	// certificates to the system roots.
	ServiceTLS *tls.Config

	// DialTimeout bounds name resolution and each dial.
	DialTimeout time.Duration
	// FirstRequestTimeout bounds the time from accepting a connection to
	// the end of its first request head, so that a connection opened only
	// to be held is dropped soon.
	FirstRequestTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request head once it has begun.
	ReadHeaderTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an upstream's response head.
	ResponseHeaderTimeout time.Duration
	// IdleTimeout ends a connection or tunnel on which nothing has moved,
	// in either direction, for this long.
	IdleTimeout time.Duration

	// MaxConns caps one job's concurrent connections to the proxy, and
	// those of all unregistered sources together. A connection past it is
	// closed unread.
	MaxConns int
	// MaxTotalConns caps the proxy's concurrent connections from all
	// sources together. A connection past it is closed unread.
	MaxTotalConns int
	// MaxBytes caps the bytes one job moves through the proxy, both
	// directions together, over its whole life.
	MaxBytes int64
	// MaxLogEntries caps the entries of each session's Log. An attempt
	// past it is counted in Stats.Dropped, not kept; Stats keeps counting
	// the rest.
	MaxLogEntries int
	// MaxLogBytes caps the size of each session's Log, counted as the
	// strings its entries hold plus a fixed cost per entry, the same way.
	MaxLogBytes int
}

// Proxy is the egress proxy shared by all jobs. Its zero value is not
// usable; call New.
type Proxy struct {
	cfg Config
	log *slog.Logger
	// host is the host's own addresses, refused as destinations of names.
	host *hostAddrs

	mu        sync.Mutex
	closed    bool
	sessions  map[netip.Addr]*Session
	listeners map[net.Listener]struct{}
	// conns are the open connections, at most MaxTotalConns.
	conns map[*clientConn]struct{}
	// strangers counts the open connections from sources no session
	// holds, at most MaxConns.
	strangers int
	// full and strangersFull are set while connections are refused at
	// MaxTotalConns and at the strangers' cap, so that a flood is logged
	// once, not once a connection.
	full, strangersFull bool
	// wg counts connection goroutines, so Close returns only once they
	// are gone.
	wg sync.WaitGroup

	// refused counts connections closed unread at a cap.
	refused atomic.Int64
}

// New returns a proxy with no jobs registered.
func New(cfg Config) (*Proxy, error) {
	if cfg.DialTimeout < 0 || cfg.FirstRequestTimeout < 0 || cfg.ReadHeaderTimeout < 0 || cfg.ResponseHeaderTimeout < 0 || cfg.IdleTimeout < 0 {
		return nil, errors.New("egress: negative timeout")
	}
	if cfg.MaxConns < 0 || cfg.MaxTotalConns < 0 || cfg.MaxBytes < 0 || cfg.MaxLogEntries < 0 || cfg.MaxLogBytes < 0 {
		return nil, errors.New("egress: negative cap (zero takes the default; there is no unlimited)")
	}
	setDefault(&cfg.DialTimeout, DefaultDialTimeout)
	setDefault(&cfg.FirstRequestTimeout, DefaultFirstRequestTimeout)
	setDefault(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&cfg.ResponseHeaderTimeout, DefaultResponseHeaderTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.MaxConns, DefaultMaxConns)
	setDefault(&cfg.MaxTotalConns, DefaultMaxTotalConns)
	setDefault(&cfg.MaxBytes, DefaultMaxBytes)
	setDefault(&cfg.MaxLogEntries, DefaultMaxLogEntries)
	setDefault(&cfg.MaxLogBytes, DefaultMaxLogBytes)
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Dialer == nil {
		cfg.Dialer = (&net.Dialer{}).DialContext
	}
	if cfg.HostAddrs == nil {
		cfg.HostAddrs = interfaceAddrs
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Proxy{
		cfg: cfg, log: log, host: &hostAddrs{list: cfg.HostAddrs},
		sessions:  map[netip.Addr]*Session{},
		listeners: map[net.Listener]struct{}{},
		conns:     map[*clientConn]struct{}{},
	}, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Serve accepts connections on l until l fails or the proxy is closed, and
// returns ErrProxyClosed in the latter case. It may be called for several
// listeners at once. Serve closes l.
func (p *Proxy) Serve(l net.Listener) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.Close()
		return ErrProxyClosed
	}
	p.listeners[l] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.listeners, l)
		p.mu.Unlock()
		l.Close()
	}()

	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return ErrProxyClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: wait, as
				// net/http does, rather than spin or give up.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !p.track(conn) {
			conn.Close()
			return ErrProxyClosed
		}
	}
}

// track starts serving conn, unless the proxy is closed. A connection
// past its job's cap, the strangers' cap or the proxy's is closed before
// anything is allocated or read for it: a job that floods the proxy costs
// it an accept and a close per connection, nothing that lasts.
func (p *Proxy) track(conn net.Conn) bool {
	src := addrOf(conn.RemoteAddr())
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	s := p.sessions[src.WithZone("")]
	if why, ok := p.admit(s); !ok {
		p.mu.Unlock()
		p.refuseConn(conn, s, src, why)
		return true
	}
	// Attached under p.mu, so that a Session.Close either finds the
	// connection to end it or has already unregistered the source.
	ctx, cancel := context.WithCancel(context.Background())
	c := &clientConn{p: p, s: s, src: src, conn: newIdleConn(conn, p.cfg.IdleTimeout), ctx: ctx, cancel: cancel}
	c.in.conn = c.conn
	// The first request's head is due soon after the connection opens,
	// whatever the idle timeout.
	c.firstBy = time.Now().Add(p.cfg.FirstRequestTimeout)
	c.conn.setReadDeadline(c.firstBy)
	p.conns[c] = struct{}{}
	if s != nil {
		s.attach(c)
	} else {
		p.strangers++
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go c.serve()
	return true
}

// admit decides, under p.mu, whether a new connection from s's source
// fits under the caps. why is what to log when it does not, empty while a
// streak of refusals goes on, so that a flood is logged once.
func (p *Proxy) admit(s *Session) (why string, ok bool) {
	if len(p.conns) >= p.cfg.MaxTotalConns {
		if !p.full {
			why = fmt.Sprintf("the proxy has %d connections open, its cap (MaxTotalConns)", p.cfg.MaxTotalConns)
		}
		p.full = true
		return why, false
	}
	p.full = false
	if s == nil {
		if p.strangers >= p.cfg.MaxConns {
			if !p.strangersFull {
				why = fmt.Sprintf("unregistered sources have %d connections open, their cap (MaxConns)", p.cfg.MaxConns)
			}
			p.strangersFull = true
			return why, false
		}
		p.strangersFull = false
		return "", true
	}
	// The session logs its own streaks, by its refusal count.
	return "", s.hasRoom()
}

// refuseConn closes a connection unread, with a reset so that neither end
// keeps a socket around for it, and counts it. logMsg, if set, is logged:
// once per streak, not once per connection of a flood.
func (p *Proxy) refuseConn(conn net.Conn, s *Session, src netip.Addr, logMsg string) {
	// Counted before the close, so that whoever sees the connection end
	// also sees it counted.
	p.refused.Add(1)
	if s != nil && s.countRefused() == 1 {
		logMsg = fmt.Sprintf("job has %d connections open, its cap (MaxConns)", p.cfg.MaxConns)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
	if logMsg != "" {
		jobID := ""
		if s != nil {
			jobID = s.jobID
		}
		p.log.Warn("egress proxy closing connections unread", "src", src, "job", jobID, "reason", logMsg)
	}
}

// RefusedConns counts the connections closed unread at a cap since New.
func (p *Proxy) RefusedConns() int64 { return p.refused.Load() }

// strangerConns is the number of open connections from unregistered
// sources.
func (p *Proxy) strangerConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.strangers
}

// Close stops every Serve, ends every connection and session, and waits
// for the connection goroutines to finish.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for l := range p.listeners {
		l.Close()
	}
	sessions := make([]*Session, 0, len(p.sessions))
	for _, s := range p.sessions {
		sessions = append(sessions, s)
	}
	conns := make([]*clientConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, s := range sessions {
		s.Close()
	}
	for _, c := range conns {
		c.abort()
	}
	p.wg.Wait()
	return nil
}

// resolve looks a name up with the proxy's resolver, never the job's.
func (p *Proxy) resolve(ctx context.Context, name string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	ips, err := p.cfg.Resolver.LookupNetIP(ctx, "ip", name)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no addresses for %q", name)
	}
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.Unmap().WithZone(""))
	}
	return out, nil
}

// dial connects to the first of addrs that answers. addrs are addresses a
// check has passed; there is no other way to reach the dialer.
func (p *Proxy) dial(ctx context.Context, addrs []netip.AddrPort) (*idleConn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("egress: no checked destination to dial")
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	var errs []error
	for _, a := range addrs {
		conn, err := p.cfg.Dialer(ctx, "tcp", a.String())
		if err == nil {
			return newIdleConn(conn, p.cfg.IdleTimeout), nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (p *Proxy) logAttempt(jobID string, a job.EgressAttempt) {
	level := slog.LevelDebug
	if !a.Allowed {
		level = slog.LevelInfo
	}
	p.log.Log(context.Background(), level, "egress attempt",
		"job", jobID, "method", a.Method, "host", a.Host, "port", a.Port,
		"allowed", a.Allowed, "rule", a.Rule, "reason", a.Reason, "up", a.BytesUp, "down", a.BytesDown)
}

// clientConn is one connection from a job (or from an unknown source).
// It holds its read and write buffers only while it serves a request, so
// that a connection the job keeps open and idle costs little.
type clientConn struct {
	p *Proxy
	// s is the session the connection counts against; nil for a source
	// that was not registered when it connected.
	s    *Session
	src  netip.Addr
	conn *idleConn
	// firstBy is when the first request's head is due.
	firstBy time.Time
	// in is what br reads: the byte that woke an idle connection, then
	// the connection.
	in pendingReader
	// br and bw are taken from pools when a request arrives and given
	// back when the connection idles; nil in between.
	br *bufio.Reader
	bw *bufio.Writer
	// ctx ends when the connection is aborted, cancelling its upstream
	// request or tunnel.
	ctx    context.Context
	cancel context.CancelFunc
}

// Pools of the connections' buffers, which are large: a connection takes
// them only to serve a request.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxLineBytes) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}
)

// pendingReader gives back the byte that ended a connection's idle wait
// before reading on.
type pendingReader struct {
	conn    *idleConn
	one     [1]byte
	pending bool
}

// Read implements io.Reader.
func (r *pendingReader) Read(p []byte) (int, error) {
	if r.pending && len(p) > 0 {
		p[0], r.pending = r.one[0], false
		return 1, nil
	}
	return r.conn.Read(p)
}

// awaitRequest waits, holding no buffer, until the next request begins,
// then takes the buffers to serve it.
func (c *clientConn) awaitRequest() error {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return nil // a pipelined request is already read
		}
		c.releaseBuffers()
	}
	for {
		n, err := c.conn.Read(c.in.one[:])
		if n == 1 {
			break
		}
		if err != nil {
			return err
		}
	}
	c.in.pending = true
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(&c.in)
	c.bw = writers.Get().(*bufio.Writer)
	c.bw.Reset(c.conn)
	return nil
}

// releaseBuffers gives the buffers back while the connection idles. It is
// called only between requests, once a request's body has been read to
// its end and its response flushed, so no other goroutine still uses them.
func (c *clientConn) releaseBuffers() {
	if c.br == nil || c.br.Buffered() > 0 || c.bw.Buffered() > 0 {
		return
	}
	c.br.Reset(nil)
	readers.Put(c.br)
	c.bw.Reset(nil)
	writers.Put(c.bw)
	c.br, c.bw = nil, nil
}

// abort ends the connection from another goroutine.
func (c *clientConn) abort() {
	c.cancel()
	c.conn.Close()
}

// serve serves the connection's requests until one ends it. A panic in
// serving one, a bug of Airlock's that the job's bytes may have provoked
// (in the proxy's parsing, a forward, or the broker's hook that is told
// of an attempt), ends this connection, not airlockd and every job in it:
// it is logged with the stack it began in, and the connection is closed
// like any other. The buffers it held are dropped, not pooled.
func (c *clientConn) serve() {
	defer c.p.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			jobID := ""
			if c.s != nil {
				jobID = c.s.jobID
			}
			panics.Log(c.p.log, "egress proxy connection panicked", r, debug.Stack(), "src", c.src, "job", jobID)
		}
		c.p.mu.Lock()
		delete(c.p.conns, c)
		if c.s == nil {
			c.p.strangers--
		}
		c.p.mu.Unlock()
		if c.s != nil {
			c.s.detach(c)
		}
		c.cancel()
		c.conn.Close()
	}()
	for first := true; c.serveRequest(first); first = false {
	}
}

// addrOf is the IP of a connection's remote end.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// serveRequest handles one request and reports whether the connection can
// carry another.
func (c *clientConn) serveRequest(first bool) bool {
	s, src := c.s, c.src
	// Between requests the connection may idle; once a request starts, its
	// head must arrive within ReadHeaderTimeout, and the first one's by
	// firstBy in any case.
	if !first {
		c.conn.setReadDeadline(time.Time{})
	}
	if err := c.awaitRequest(); err != nil {
		return false
	}
	due := time.Now().Add(c.p.cfg.ReadHeaderTimeout)
	if first && c.firstBy.Before(due) {
		due = c.firstBy
	}
	c.conn.setReadDeadline(due)
	head, err := readHead(c.br)
	c.conn.setReadDeadline(time.Time{})
	a := job.EgressAttempt{Time: time.Now()}
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isTimeout(err) || errors.Is(err, net.ErrClosed) {
			return false
		}
		status := http.StatusBadRequest
		if errors.Is(err, errVersion) {
			status = http.StatusHTTPVersionNotSupported
		}
		c.refuse(s, src, a, status, err.Error())
		return false
	}
	a.Method = head.method
	if head.method != http.MethodConnect {
		a.Path = shownPath(requestPath(head.target))
	}
	t, form, err := parseTarget(head)
	if t.valid() {
		a.Host, a.Port = t.host(), t.port
	}
	if err != nil {
		c.refuse(s, src, a, http.StatusBadRequest, err.Error())
		return false
	}
	switch {
	case s == nil:
		c.refuse(s, src, a, http.StatusForbidden, fmt.Sprintf("source %s is not a registered job", src))
		return false
	case s.isClosed():
		c.refuse(nil, src, a, http.StatusForbidden, fmt.Sprintf("source %s is not a registered job", src))
		return false
	case checkMethod(head.method) != nil:
		c.refuse(s, src, a, http.StatusForbidden, checkMethod(head.method).Error())
		return false
	case s.overCap():
		c.refuse(s, src, a, http.StatusForbidden, fmt.Sprintf("job has moved its cap of %d bytes", c.p.cfg.MaxBytes))
		return false
	}
	if form == formAuthority {
		c.tunnel(s, head, t, a)
		return false
	}
	return c.forward(s, head, t, a)
}

// refuse answers a request the proxy will not carry, records the attempt
// and ends the connection.
func (c *clientConn) refuse(s *Session, src netip.Addr, a job.EgressAttempt, status int, reason string) {
	a.Allowed, a.Reason, a.Status = false, reason, status
	if s != nil {
		s.record(a)
	} else {
		a = capAttempt(a)
		c.p.log.Info("egress attempt from unregistered source", "src", src, "method", a.Method, "host", a.Host, "port", a.Port, "reason", a.Reason)
	}
	c.writeRefusal(status, reason)
	c.lingeringClose()
}

// writeRefusal writes a response made up by the proxy itself.
func (c *clientConn) writeRefusal(status int, reason string) {
	msg := "airlock egress: " + reason + "\n"
	fmt.Fprintf(c.bw, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	fmt.Fprintf(c.bw, "Content-Type: text/plain; charset=utf-8\r\n%s: denied\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		DeniedHeader, len(msg), msg)
	c.bw.Flush()
}

// lingeringClose stops writing and reads a little of what the client is
// still sending, so that closing with unread data does not reset the
// connection before the client has read the refusal.
func (c *clientConn) lingeringClose() {
	c.conn.closeWrite()
	c.conn.setReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, c.conn, 256<<10)
	c.conn.Close()
}

// Request-target forms (RFC 9112 section 3.2).
type targetForm int

const (
	formNone targetForm = iota
	formAbsolute
	formAuthority
)

// parseTarget reads the destination of a proxy request: authority-form for
// CONNECT, absolute-form http:// for everything else. The Host header must
// name the same destination, since an upstream would believe it over the
// target the proxy checked.
func parseTarget(h *requestHead) (target, targetForm, error) {
	var (
		t    target
		err  error
		form targetForm
	)
	if h.method == http.MethodConnect {
		form = formAuthority
		if strings.ContainsAny(h.target, "/?#") {
			return t, formNone, fmt.Errorf("%w: CONNECT wants host:port", errMalformed)
		}
		if h.hasBody() || h.header.Get("Transfer-Encoding") != "" {
			return t, formNone, fmt.Errorf("%w: CONNECT with a body", errMalformed)
		}
		t, err = parseAuthority(h.target, 0)
	} else {
		scheme, rest, ok := strings.Cut(h.target, "://")
		switch {
		case !ok && strings.HasPrefix(h.target, "/"):
			return t, formNone, fmt.Errorf("%w: this is a proxy; send absolute-form http:// requests or CONNECT", errMalformed)
		case !ok:
			return t, formNone, fmt.Errorf("%w: request target is not an absolute http:// URL", errMalformed)
		case strings.EqualFold(scheme, "https"):
			return t, formNone, fmt.Errorf("%w: https:// goes through CONNECT", errMalformed)
		case !strings.EqualFold(scheme, "http"):
			return t, formNone, fmt.Errorf("%w: scheme %q is not proxied", errMalformed, scheme)
		}
		form = formAbsolute
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		if strings.Contains(rest[end:], "#") {
			return t, formNone, fmt.Errorf("%w: fragment in request target", errMalformed)
		}
		t, err = parseAuthority(rest[:end], 80)
	}
	if err != nil {
		return t, formNone, err
	}
	defPort := uint16(80)
	if form == formAuthority {
		defPort = 443
	}
	ht, err := parseAuthority(h.header.Get("Host"), defPort)
	if err != nil || ht != t {
		return t, form, fmt.Errorf("%w: Host header %.100q disagrees with the request target %s", errMalformed, h.header.Get("Host"), t.hostPort())
	}
	return t, form, nil
}

// idleConn ends a read or write only after IdleTimeout with no progress in
// either direction, so that a long download is not cut because the other
// direction is quiet. A fixed deadline, while set, overrides it for reads.
type idleConn struct {
	net.Conn
	idle time.Duration
	// last is the unix-nano time of the last byte moved either way.
	last atomic.Int64
	// fixed, when non-zero, is the unix-nano read deadline.
	fixed atomic.Int64
}

func newIdleConn(c net.Conn, idle time.Duration) *idleConn {
	ic := &idleConn{Conn: c, idle: idle}
	ic.last.Store(time.Now().UnixNano())
	return ic
}

// Read implements net.Conn.
func (c *idleConn) Read(p []byte) (int, error) {
	for {
		if f := c.fixed.Load(); f != 0 {
			c.Conn.SetReadDeadline(time.Unix(0, f))
		} else {
			c.Conn.SetReadDeadline(time.Now().Add(c.idle))
		}
		n, err := c.Conn.Read(p)
		if n > 0 {
			c.last.Store(time.Now().UnixNano())
		}
		if n == 0 && isTimeout(err) && c.fixed.Load() == 0 && time.Since(time.Unix(0, c.last.Load())) < c.idle {
			continue // the other direction moved meanwhile
		}
		return n, err
	}
}

// Write implements net.Conn.
func (c *idleConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// setReadDeadline sets a fixed read deadline, or clears it with the zero
// time to return to idle timing.
func (c *idleConn) setReadDeadline(t time.Time) {
	if t.IsZero() {
		c.fixed.Store(0)
		return
	}
	c.fixed.Store(t.UnixNano())
}

// closeWrite half-closes a TCP connection, or closes any other kind.
func (c *idleConn) closeWrite() {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Conn.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

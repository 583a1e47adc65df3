package modelserver

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

const (
	// MaxBodyBytes is the largest request body read; a larger one is the
	// API's 413. Both APIs refuse far smaller bodies than a process could
	// hold, and so does this.
	MaxBodyBytes = 32 << 20
	// MaxRecordedBodyBytes is how much of each body Requests keeps.
	MaxRecordedBodyBytes = 16 << 20
	// writeBufferBytes is the buffer between a reply and the connection,
	// large enough for a filler event in one write.
	writeBufferBytes = 64 << 10
)

// The paths served.
const (
	PathChatCompletions = "/v1/chat/completions"
	PathMessages        = "/v1/messages"
)

// Options configure Start.
type Options struct {
	// Addr is the address to listen on, "127.0.0.1:0" when empty. It must
	// be loopback.
	Addr string
	// TLS serves HTTPS with a leaf certificate for 127.0.0.1, ::1 and
	// localhost from a CA made in memory for this server (Server.CAPEM).
	TLS bool
	// Key is the key every request must carry: "Authorization: Bearer
	// <Key>" for Chat Completions, "x-api-key: <Key>" (or, without that
	// header, a bearer token) for Messages. Empty checks nothing. A wrong
	// or missing key is the API's 401.
	Key string
	// Scripts are the models, by the request's "model"; any other model is
	// the API's 404.
	Scripts map[string]Script
	// Latency is waited before each reply, as a model's thinking time.
	Latency time.Duration
	// MaxRecorded is how many requests Requests keeps, the oldest dropped
	// first; 0 keeps all, which suits a test but not a long-running server.
	MaxRecorded int

	// hooks let tests see a request arrive and a reply end without
	// waiting on the clock.
	hooks testHooks
}

// testHooks are called, when set, as each request is recorded and as each
// handler returns.
type testHooks struct {
	recorded, done func()
}

// Server is a running stand-in model API. Its methods are safe for
// concurrent use.
type Server struct {
	opts  Options
	url   string
	caPEM []byte
	http  *http.Server
	// done is closed by Close, so that replies waiting on a script's Hang
	// or on Latency end instead of holding Close up.
	done chan struct{}
	// served is closed when the serve loop has returned.
	served chan struct{}

	mu       sync.Mutex
	closed   bool
	requests []Request
	// active counts running handlers; Add happens only under mu while not
	// closed, so Close's Wait never races an Add.
	active sync.WaitGroup
}

// Start listens on opts.Addr and serves until Close.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if err := checkLoopback(opts.Addr); err != nil {
		return nil, err
	}
	if opts.MaxRecorded < 0 {
		return nil, fmt.Errorf("MaxRecorded %d is negative", opts.MaxRecorded)
	}
	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:   opts,
		done:   make(chan struct{}),
		served: make(chan struct{}),
	}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    1 << 20,
		// A client that does not trust the CA is expected in tests; its
		// handshake errors are not the server's to report.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	scheme := "http"
	if opts.TLS {
		cfg, caPEM, err := newTLSConfig()
		if err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("making the TLS certificates: %w", err)
		}
		s.http.TLSConfig, s.caPEM, scheme = cfg, caPEM, "https"
	}
	s.url = scheme + "://" + l.Addr().String()
	go func() {
		defer close(s.served)
		if opts.TLS {
			_ = s.http.ServeTLS(l, "", "")
		} else {
			_ = s.http.Serve(l)
		}
	}()
	return s, nil
}

// checkLoopback refuses any address but a loopback one. "localhost" is
// allowed by name; other names are not resolved, since what they resolve to
// can change after the check.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q (an empty host listens on every interface)", ErrNotLoopback, addr)
	}
	return nil
}

// URL is the server's base URL, scheme and host only, such as
// "https://127.0.0.1:43211".
func (s *Server) URL() string { return s.url }

// CAPEM is the PEM of the CA that signed the server's certificate; nil
// without TLS.
func (s *Server) CAPEM() []byte { return s.caPEM }

// Requests returns every request received so far, in order of arrival.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	copy(out, s.requests)
	return out
}

// Close stops the server: replies that hang or wait end, open connections
// are closed, and Close returns once every handler has returned.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.done)
	err := s.http.Close()
	s.active.Wait()
	<-s.served
	return err
}

// enter registers a handler, or reports that the server is closing.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.active.Add(1)
	return true
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
	if n := s.opts.MaxRecorded; n > 0 && len(s.requests) > n {
		s.requests = append(s.requests[:0:0], s.requests[len(s.requests)-n:]...)
	}
}

// ServeHTTP answers one request of either API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		w.Header().Set("Connection", "close")
		writeError(w, "", "", &apiError{status: http.StatusServiceUnavailable, message: "the server is closing"})
		return
	}
	defer s.active.Done()
	if f := s.opts.hooks.done; f != nil {
		defer f()
	}

	var api string
	switch r.URL.Path {
	case PathChatCompletions:
		api = APIOpenAI
	case PathMessages:
		api = APIAnthropic
	}
	requestID := newRequestID()
	if api == APIAnthropic {
		w.Header().Set("request-id", requestID)
	} else {
		w.Header().Set("x-request-id", requestID)
	}
	rec := Request{API: api, Path: r.URL.Path, Header: r.Header.Clone()}

	body, tooLarge, err := readBody(r.Body)
	// A copy, so that what is kept is no larger than the cap; the body as
	// read may have twice its length in capacity.
	rec.Body = bytes.Clone(body[:min(len(body), MaxRecordedBodyBytes)])
	var turn *Turn
	var parseErr error
	if err == nil && !tooLarge && api != "" && r.Method == http.MethodPost {
		turn, parseErr = parseTurn(api, body)
		if turn != nil {
			rec.Model, rec.Stream = turn.Model, turn.Stream
		}
	}
	s.record(rec)
	if f := s.opts.hooks.recorded; f != nil {
		f()
	}

	fail := func(e *apiError) { writeError(w, api, requestID, e) }
	switch {
	case api == "":
		fail(&apiError{status: http.StatusNotFound, message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path)})
		return
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", http.MethodPost)
		fail(&apiError{status: http.StatusMethodNotAllowed, message: fmt.Sprintf("Method %s not allowed for %s", r.Method, r.URL.Path)})
		return
	case !s.authorized(api, r.Header):
		fail(&apiError{status: http.StatusUnauthorized, message: unauthorizedMessage(api), code: "invalid_api_key"})
		return
	case api == APIAnthropic && r.Header.Get("anthropic-version") == "":
		fail(&apiError{status: http.StatusBadRequest, message: "anthropic-version: header is required", kind: ErrInvalidRequest})
		return
	case err != nil:
		// The client went away or sent a broken body; there may be no
		// one to read this, but a client that is still there gets a 400.
		fail(&apiError{status: http.StatusBadRequest, message: "could not read the request body", kind: ErrInvalidRequest})
		return
	case tooLarge:
		fail(&apiError{status: http.StatusRequestEntityTooLarge, message: fmt.Sprintf("Request exceeds the maximum size of %d bytes", MaxBodyBytes)})
		return
	case parseErr != nil:
		fail(asAPIError(parseErr))
		return
	}
	script, ok := s.opts.Scripts[turn.Model]
	if !ok {
		fail(modelNotFound(api, turn.Model))
		return
	}
	s.wait(r, s.opts.Latency)
	reply := script(turn)
	switch {
	case reply.Hang:
		// wait for ever ends only by ending the handler.
		s.wait(r, -1)
	case reply.Status < 0 || reply.Status > 999 || (reply.Status > 0 && reply.Status < 100):
		fail(&apiError{status: http.StatusInternalServerError, message: fmt.Sprintf("the script asked for status %d", reply.Status)})
		return
	case reply.Status != 0:
		fail(&apiError{status: reply.Status, message: reply.Text})
		return
	}
	o := newOutcome(turn, reply, int64(len(body)))
	bw := bufio.NewWriterSize(w, writeBufferBytes)
	flush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		return http.NewResponseController(w).Flush()
	}
	if turn.Stream {
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		if api == APIAnthropic {
			_ = streamAnthropic(bw, flush, o)
		} else {
			_ = streamOpenAI(bw, flush, o)
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if api == APIAnthropic {
		_ = writeAnthropic(bw, o)
	} else {
		_ = writeOpenAI(bw, o)
	}
	_ = flush()
}

// readBody reads at most MaxBodyBytes, and reports a larger body rather
// than reading the rest of it.
func readBody(r io.Reader) (body []byte, tooLarge bool, err error) {
	body, err = io.ReadAll(io.LimitReader(r, MaxBodyBytes+1))
	if len(body) > MaxBodyBytes {
		return body[:MaxBodyBytes], true, nil
	}
	return body, false, err
}

// wait waits d, or for ever when d < 0. When the client goes away or the
// server closes first, it ends the handler and drops the connection, so
// that no client takes the empty reply for an answer.
func (s *Server) wait(r *http.Request, d time.Duration) {
	if d == 0 {
		return
	}
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return
	case <-r.Context().Done():
	case <-s.done:
	}
	panic(http.ErrAbortHandler)
}

// authorized checks the key in the header each API uses for it, in
// constant time since the key is a secret even in a stand-in. Messages
// takes x-api-key, or a bearer token when that is absent, as the API does
// and as Anthropic's Go SDK sends its API key.
func (s *Server) authorized(api string, h http.Header) bool {
	if s.opts.Key == "" {
		return true
	}
	if api == APIAnthropic {
		if keys := h.Values("x-api-key"); len(keys) > 0 {
			return subtle.ConstantTimeCompare([]byte(keys[0]), []byte(s.opts.Key)) == 1
		}
	}
	got, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.Key)) == 1
}

func unauthorizedMessage(api string) string {
	if api == APIAnthropic {
		return "invalid x-api-key"
	}
	return "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
}

func modelNotFound(api, model string) *apiError {
	if api == APIAnthropic {
		return &apiError{status: http.StatusNotFound, message: "model: " + model}
	}
	return &apiError{
		status:  http.StatusNotFound,
		message: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", model),
		code:    "model_not_found",
	}
}

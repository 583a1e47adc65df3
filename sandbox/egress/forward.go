package egress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/airlock/airlock/sandbox/job"
)

// hopByHop are the fields that describe one connection, not the message,
// plus the proxy's own credentials and the framing the proxy redoes.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Proxy-Authenticate",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Host", "Expect",
}

// removeHopByHop deletes hopByHop and every field that Connection names.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// copyBufs are the buffers bodies and tunnels are copied through.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// forward carries one absolute-form request upstream and its response back,
// and reports whether the connection can carry another request.
func (c *clientConn) forward(s *Session, head *requestHead, t target, a job.EgressAttempt) bool {
	pathQuery := requestPath(head.target)
	var (
		out    *url.URL
		addrs  []netip.AddrPort
		svc    service
		status int
		// mc is the model call this request is, if it goes to the model.
		mc *modelCall
	)
	// Every way out of an admitted model call ends it; ending is
	// idempotent. The explicit ends below come before the proxy writes a
	// refusal, so a refused call is counted by the time the job sees the
	// refusal; a relayed reply is counted once it has been relayed.
	defer func() { mc.end() }()
	if alias, ok := aliasOf(t); ok {
		var found bool
		svc, found = s.services[alias]
		switch {
		case !found:
			c.refuse(s, netip.Addr{}, a, http.StatusForbidden, fmt.Sprintf("service alias %q is not configured for this job", alias))
			return false
		case t.port != 80:
			c.refuse(s, netip.Addr{}, a, http.StatusForbidden, "service aliases are reached on port 80")
			return false
		case !aliasMethods[head.method]:
			c.refuse(s, netip.Addr{}, a, http.StatusMethodNotAllowed, fmt.Sprintf("service alias %s: method %.32q is not one of GET, HEAD, POST, PUT, PATCH, DELETE", alias, head.method))
			return false
		}
		// The upstream holds the injected credential: the path must
		// mean to it what it means here.
		if p, _, _ := strings.Cut(pathQuery, "?"); checkAliasPath(p) != nil {
			c.refuse(s, netip.Addr{}, a, http.StatusForbidden, "service alias "+alias+": "+checkAliasPath(p).Error())
			return false
		}
		// The configured alias, found; record clears it should the
		// request be refused after all.
		a.Rule = ServiceRule(alias)
		if s.model != nil && alias == s.model.pol.Alias {
			var reason string
			if mc, status, reason = s.model.admit(c.ctx, head.method, pathQuery); status != 0 {
				c.refuse(s, netip.Addr{}, a, status, "service alias "+alias+": "+reason)
				return false
			}
		}
		u, err := serviceURL(svc.Upstream, pathQuery)
		if err != nil {
			mc.refuse("bad path")
			c.refuse(s, netip.Addr{}, a, http.StatusBadRequest, err.Error())
			return false
		}
		if addrs, err = c.p.upstreamAddrs(c.ctx, u); err != nil {
			mc.fail(0, "cannot resolve the upstream")
			a.Allowed = true
			c.fail(s, a, http.StatusBadGateway, "service alias "+alias+": cannot resolve its upstream")
			return false
		}
		out, a.Reason = u, "service alias "+alias
	} else {
		addrs, a.Rule, status, a.Reason = s.decide(c.ctx, t)
		if status != 0 {
			c.refuse(s, netip.Addr{}, a, status, a.Reason)
			return false
		}
		host := t.hostPort()
		if t.port == 80 {
			host = t.host()
			if t.addr.Is6() {
				host = "[" + host + "]"
			}
		}
		u, err := url.Parse("http://" + host + pathQuery)
		if err != nil {
			c.refuse(s, netip.Addr{}, a, http.StatusBadRequest, fmt.Sprintf("request target: %v", errMalformed))
			return false
		}
		out = u
	}
	a.Allowed = true

	if expect := head.header.Get("Expect"); expect != "" {
		if !strings.EqualFold(expect, "100-continue") {
			mc.refuse("only Expect: 100-continue is understood")
			c.fail(s, a, http.StatusExpectationFailed, "only Expect: 100-continue is understood")
			return false
		}
		// The decision is made, so the client may send its body now.
		c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		c.bw.Flush()
	}

	hdr := head.header.Clone()
	removeHopByHop(hdr)
	if mc != nil {
		hdr = modelHeader(hdr)
	}
	if _, ok := hdr["User-Agent"]; !ok {
		hdr["User-Agent"] = []string{""} // keep Go's default out: the request is the job's
	}
	for k, v := range svc.Headers {
		hdr[k] = []string{v}
	}
	if svc.Header != "" {
		hdr.Del(svc.Header)
		hdr[svc.Header] = []string{svc.Prefix + string(svc.Secret)}
	}
	b := newBody(head, c.br)
	req := &http.Request{
		Method: head.method, URL: out, Host: out.Host, Header: hdr,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Body: http.NoBody, ContentLength: 0,
	}
	up := &meter{r: b, s: s, up: true}
	if head.hasBody() {
		req.Body, req.ContentLength = io.NopCloser(up), head.contentLength
	}
	if mc != nil {
		// The whole body, read before anything goes upstream, so the
		// model and the token cap are the gate's, not the job's.
		body, status, err := s.model.rewrite(up)
		if err != nil {
			mc.refuse(err.Error())
			a.Allowed = false
			c.refuse(s, netip.Addr{}, a, status, "service alias "+s.model.pol.Alias+": "+err.Error())
			return false
		}
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		mc.Allowed, mc.BytesUp = true, int64(len(body))
	}
	ctx := context.WithValue(c.ctx, destKey{}, addrs)
	resp, err := s.transport.RoundTrip(req.WithContext(ctx))
	a.BytesUp = up.n.Load()
	if err != nil && mc != nil {
		if c.ctx.Err() != nil {
			mc.fail(0, "session closed")
		} else {
			mc.fail(0, "upstream request failed: "+scrubError(err, svc.Secret))
		}
	}
	if err != nil {
		switch {
		case c.ctx.Err() != nil:
			a.Reason += "; ended: session closed"
			s.record(a)
			return false
		case errors.Is(err, ErrByteCap) || s.overCap():
			c.fail(s, a, http.StatusForbidden, fmt.Sprintf("job has moved its cap of %d bytes", c.p.cfg.MaxBytes))
		default:
			c.fail(s, a, http.StatusBadGateway, "upstream request failed: "+scrubError(err, svc.Secret))
		}
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 {
		// Only 101 gets here; Upgrade was stripped, so the upstream
		// answered something that was not asked.
		mc.fail(resp.StatusCode, "upstream switched protocols unasked")
		c.fail(s, a, http.StatusBadGateway, "upstream switched protocols unasked")
		return false
	}
	var rm *replyMeter
	if mc != nil {
		if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
			// The gate asked for none; an encoded reply's usage cannot
			// be read, and an uncounted reply would undo the token cap.
			mc.fail(resp.StatusCode, "model reply is content-encoded; its usage cannot be counted")
			c.fail(s, a, http.StatusBadGateway, "model reply is content-encoded; its usage cannot be counted")
			return false
		}
		mc.Status = resp.StatusCode
		rm = newReplyMeter(resp.Body, s.model.pol.MaxReplyBytes, s.model.pol.API)
		resp.Body = struct {
			io.Reader
			io.Closer
		}{rm, resp.Body}
	}
	a.Status = resp.StatusCode
	down, werr := c.writeResponse(s, head, resp, svc.Secret)
	a.BytesUp, a.BytesDown = up.n.Load(), down
	if werr != nil {
		a.Reason += "; response cut off: " + scrubError(werr, svc.Secret)
	}
	if mc != nil {
		mc.BytesDown = rm.n
		mc.InputTokens, mc.OutputTokens = rm.counts()
		switch {
		case rm.cut:
			mc.Limit = "maxReplyBytes"
			mc.Reason = fmt.Sprintf("reply cut at %d bytes (model.maxReplyBytes)", s.model.pol.MaxReplyBytes)
		case werr != nil:
			mc.Reason = "response cut off: " + scrubError(werr, svc.Secret)
		case mc.Status/100 != 2:
			mc.Reason = fmt.Sprintf("upstream answered HTTP %d", mc.Status)
		}
		mc.end()
	}
	if rm != nil && rm.cut {
		// The job must not read a cut reply as whole, nor send another
		// request on this connection.
		s.record(a)
		c.conn.Close()
		return false
	}
	s.record(a)
	// Another request may follow only if this one's body was read to its
	// end; the transport may otherwise still be reading it.
	return werr == nil && !head.close && b.finished()
}

// fail answers an allowed request that could not be carried out.
func (c *clientConn) fail(s *Session, a job.EgressAttempt, status int, reason string) {
	a.Reason += "; " + reason
	if a.Status == 0 {
		a.Status = status
	}
	s.record(a)
	c.writeRefusal(status, reason)
	c.lingeringClose()
}

// requestPath is the path and query of an absolute-form target, everything
// after the authority.
func requestPath(target string) string {
	_, rest, _ := strings.Cut(target, "://")
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		return rest[i:]
	}
	return ""
}

// aliasOf returns the alias a target names, if it is under AliasDomain.
// Any name there is an alias request, so that no name under the reserved
// domain is ever resolved or matched against the allowlist.
func aliasOf(t target) (string, bool) {
	if t.name == AliasDomain {
		return "", true
	}
	alias, ok := strings.CutSuffix(t.name, "."+AliasDomain)
	return alias, ok
}

// serviceURL appends a request's path and query to a service upstream.
// Dot segments are refused so that a request cannot climb out of the
// upstream's base path.
func serviceURL(up *url.URL, pathQuery string) (*url.URL, error) {
	p, q, _ := strings.Cut(pathQuery, "?")
	if p == "" {
		p = "/"
	}
	for _, seg := range strings.Split(p, "/") {
		if dec, err := url.PathUnescape(seg); err != nil || dec == "." || dec == ".." {
			return nil, fmt.Errorf("%w: path %q has a dot segment or a bad escape", errMalformed, p)
		}
	}
	u := *up
	u.RawPath = strings.TrimSuffix(up.EscapedPath(), "/") + p
	var err error
	if u.Path, err = url.PathUnescape(u.RawPath); err != nil {
		return nil, fmt.Errorf("%w: path %q", errMalformed, p)
	}
	switch {
	case up.RawQuery != "" && q != "":
		u.RawQuery = up.RawQuery + "&" + q
	case q != "":
		u.RawQuery = q
	}
	u.Fragment, u.RawFragment = "", ""
	return &u, nil
}

// upstreamAddrs resolves a service upstream. Its address is not checked
// against the special ranges: the operator configured it, and an internal
// model gateway is a reasonable upstream.
func (p *Proxy) upstreamAddrs(ctx context.Context, u *url.URL) ([]netip.AddrPort, error) {
	port := uint16(443)
	if u.Scheme == "http" {
		port = 80
	}
	if ps := u.Port(); ps != "" {
		n, err := parsePort(ps)
		if err != nil {
			return nil, err
		}
		port = n
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		return []netip.AddrPort{netip.AddrPortFrom(a.Unmap(), port)}, nil
	}
	ips, err := p.resolve(ctx, u.Hostname())
	if err != nil {
		return nil, err
	}
	addrs := make([]netip.AddrPort, len(ips))
	for i, ip := range ips {
		addrs[i] = netip.AddrPortFrom(ip, port)
	}
	return addrs, nil
}

// writeResponse relays an upstream response, reframed for the client, and
// returns the body bytes it passed on.
func (c *clientConn) writeResponse(s *Session, head *requestHead, resp *http.Response, secret []byte) (int64, error) {
	h := resp.Header.Clone()
	headLength := h.Get("Content-Length")
	removeHopByHop(h)
	h.Del(DeniedHeader)
	if len(secret) > 0 {
		// An upstream that echoes the credential must not hand it to the
		// job; a whole body echo cannot be caught this cheaply.
		// The secret alone is matched, which also catches it after its
		// prefix, in any case, since a field's name reaches the job
		// canonicalized, and in a name as well as in the values.
		lower := strings.ToLower(string(secret))
		echoes := func(v string) bool { return strings.Contains(strings.ToLower(v), lower) }
		for k, vs := range h {
			if echoes(k) || slices.ContainsFunc(vs, echoes) {
				delete(h, k)
			}
		}
	}
	code := resp.StatusCode
	noBody := head.method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || code/100 == 1
	chunked := false
	switch {
	case noBody:
		if head.method == http.MethodHead && headLength != "" {
			h.Set("Content-Length", headLength)
		}
	case resp.ContentLength >= 0:
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	default:
		h.Set("Transfer-Encoding", "chunked")
		chunked = true
	}
	if head.close {
		h.Set("Connection", "close")
	}
	text := http.StatusText(code)
	if text == "" {
		text = "Status"
	}
	fmt.Fprintf(c.bw, "HTTP/1.1 %03d %s\r\n", code, text)
	h.Write(c.bw)
	c.bw.WriteString("\r\n")
	if noBody {
		return 0, c.bw.Flush()
	}
	var w io.Writer = c.bw
	var cw io.WriteCloser
	if chunked {
		cw = httputil.NewChunkedWriter(c.bw)
		w = cw
	}
	n, err := c.copyFlushing(w, resp.Body, s, false)
	if err != nil {
		c.bw.Flush()
		return n, err
	}
	if chunked {
		cw.Close()
		c.bw.WriteString("\r\n")
	}
	return n, c.bw.Flush()
}

// copyFlushing copies src to w, charging the session, and flushes after
// every read so that a streamed response (server-sent events, a model's
// tokens) reaches the job as it arrives.
func (c *clientConn) copyFlushing(w io.Writer, src io.Reader, s *Session, up bool) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if err := s.charge(int64(n), up); err != nil {
				return total, err
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return total, err
			}
			total += int64(n)
			if err := c.bw.Flush(); err != nil {
				return total, err
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// meter counts and charges bytes read through it.
type meter struct {
	r  io.Reader
	s  *Session
	up bool
	n  atomic.Int64
}

// Read implements io.Reader.
func (m *meter) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if n > 0 {
		m.n.Add(int64(n))
		if cerr := m.s.charge(int64(n), m.up); cerr != nil {
			return n, cerr
		}
	}
	return n, err
}

// scrubError is err's text with the secret, should it ever appear there,
// blanked out.
func scrubError(err error, secret []byte) string {
	msg := err.Error()
	if len(secret) > 0 {
		msg = string(bytes.ReplaceAll([]byte(msg), secret, []byte("[secret]")))
	}
	return msg
}

// maxShownPath caps an attempt's path, which is the job's text.
const maxShownPath = 256

// shownPath is a request's path without its query, printable ASCII only and
// capped, for the egress log.
func shownPath(pathQuery string) string {
	p, _, _ := strings.Cut(pathQuery, "?")
	p = strings.Map(func(r rune) rune {
		if r < '!' || r > '~' {
			return -1
		}
		return r
	}, p)
	if len(p) > maxShownPath {
		p = p[:maxShownPath-3] + "..."
	}
	return p
}

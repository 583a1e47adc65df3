package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/airlock/airlock/sandbox/job"
)

// tunnel serves a CONNECT: it checks and dials the target, then relays
// bytes both ways until both sides are done, the session ends, the job's
// byte cap is reached or the tunnel idles out. The connection carries
// nothing else afterwards.
func (c *clientConn) tunnel(s *Session, head *requestHead, t target, a job.EgressAttempt) {
	if _, ok := aliasOf(t); ok {
		c.refuse(s, netip.Addr{}, a, http.StatusForbidden, "service aliases take plain http://<alias>."+AliasDomain+"/ requests; the proxy adds TLS")
		return
	}
	addrs, rule, status, reason := s.decide(c.ctx, t)
	a.Reason, a.Rule = reason, rule
	if status != 0 {
		c.refuse(s, netip.Addr{}, a, status, reason)
		return
	}
	a.Allowed = true
	up, err := c.p.dial(c.ctx, addrs)
	if err != nil {
		c.fail(s, a, http.StatusBadGateway, "cannot connect to "+t.hostPort())
		return
	}
	// Aborting the client connection must end the tunnel too.
	stop := context.AfterFunc(c.ctx, func() { up.Close() })
	defer stop()
	defer up.Close()

	c.bw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
	if err := c.bw.Flush(); err != nil {
		a.Reason += "; client gone"
		s.record(a)
		return
	}
	var (
		wg      sync.WaitGroup
		upErr   error
		downErr error
	)
	wg.Add(1)
	// Not recovered: relay copies the job's bytes without reading them.
	go func() {
		defer wg.Done()
		// c.br may already hold bytes the client sent after its CONNECT
		// (an eager TLS ClientHello); they belong to the tunnel.
		a.BytesUp, upErr = relay(up, c.br, s, true)
	}()
	a.BytesDown, downErr = relay(c.conn, up, s, false)
	wg.Wait()
	for _, err := range []error{upErr, downErr} {
		if err != nil && !errors.Is(err, net.ErrClosed) {
			a.Reason += "; tunnel ended: " + err.Error()
			break
		}
	}
	s.record(a)
}

// relay copies src to dst, charging the session, and half-closes dst when
// src is done so the other direction can finish. On an error it closes
// dst outright, which ends the other direction too.
func relay(dst *idleConn, src io.Reader, s *Session, up bool) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if err := s.charge(int64(n), up); err != nil {
				dst.Close()
				return total, err
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				dst.Close()
				return total, err
			}
			total += int64(n)
		}
		if rerr == io.EOF {
			dst.closeWrite()
			return total, nil
		}
		if rerr != nil {
			dst.Close()
			return total, rerr
		}
	}
}

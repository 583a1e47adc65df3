package main

import (
	"errors"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	attackOps["conn_flood"] = connFlood
}

// connFlood opens "count" connections to the proxy (1000 by default) and
// sends nothing on them, as a job out to exhaust the proxy would. A
// connection the proxy has closed is closed here too and the flood goes
// on, so the job's descriptor limit is not what ends it. After "hold_ms"
// (1000 by default) it counts the connections still open. Detail holds
// the counts; the op is ok once it has made its attempts.
func connFlood(_ *attacker, s step) outcome {
	var o outcome
	addr, err := proxyAddr()
	if err != nil {
		o.fail(err)
		return o
	}
	count, err := s.int("count", 1000)
	if err != nil {
		o.fail(err)
		return o
	}
	hold, err := s.int("hold_ms", 1000)
	if err != nil {
		o.fail(err)
		return o
	}
	var (
		held          []net.Conn
		closedByProxy int
		dialed        int
		maxHeld       int
		dialErrors    = map[string]int{}
	)
	sweep := func() {
		kept := held[:0]
		for _, c := range held {
			if stillOpen(c) {
				kept = append(kept, c)
				continue
			}
			c.Close()
			closedByProxy++
		}
		held = kept
	}
	for range count {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			name := errnoName(err)
			if name == "" {
				name = "other"
			}
			dialErrors[name]++
			continue
		}
		dialed++
		held = append(held, c)
		if len(held) >= 64 {
			sweep()
		}
		maxHeld = max(maxHeld, len(held))
	}
	time.Sleep(time.Duration(hold) * time.Millisecond)
	sweep()
	open := len(held)
	for _, c := range held {
		c.Close()
	}
	o.OK = true
	o.Detail = map[string]any{
		"attempts": count, "dialed": dialed, "dial_errors": dialErrors,
		"closed_by_proxy": closedByProxy, "max_held": maxHeld, "open_after_hold": open,
	}
	return o
}

// stillOpen peeks at c without waiting: open means nothing to read yet,
// rather than an end of stream or a reset.
func stillOpen(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		open = n > 0 || errors.Is(err, unix.EAGAIN)
		return true
	})
	return open
}

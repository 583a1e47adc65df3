package auth

import (
	"sync"
	"time"
)

// maxPeers bounds the limiter's memory; beyond it, the oldest idle
// entries are dropped.
const maxPeers = 4096

// peerLimiter counts invalid tokens per peer in fixed windows that start at
// a peer's first failure; limit failures lock that peer out for lockout.
// Fixed windows are enough here: the point is to cap guesses per unit of
// time, not to shape traffic.
type peerLimiter struct {
	limit   int
	window  time.Duration
	lockout time.Duration
	now     func() time.Time

	mu    sync.Mutex
	peers map[string]*peerState
}

type peerState struct {
	start    time.Time
	failures int
	until    time.Time
}

func newPeerLimiter(limit int, window, lockout time.Duration, now func() time.Time) *peerLimiter {
	return &peerLimiter{limit: limit, window: window, lockout: lockout, now: now, peers: map[string]*peerState{}}
}

// lockedFor returns how long peer's lockout still lasts, or 0.
func (l *peerLimiter) lockedFor(peer string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.peers[peer]
	if !ok {
		return 0
	}
	if left := st.until.Sub(l.now()); left > 0 {
		return left
	}
	return 0
}

// fail records one invalid token from peer.
func (l *peerLimiter) fail(peer string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	st, ok := l.peers[peer]
	if !ok {
		if len(l.peers) >= maxPeers {
			l.evictLocked(now)
		}
		st = &peerState{}
		l.peers[peer] = st
	}
	if st.failures == 0 || !now.Before(st.start.Add(l.window)) {
		st.start, st.failures = now, 0
	}
	st.failures++
	if st.failures >= l.limit {
		st.until = now.Add(l.lockout)
		st.failures = 0
	}
}

func (l *peerLimiter) evictLocked(now time.Time) {
	for k, st := range l.peers {
		if now.After(st.until) && !now.Before(st.start.Add(l.window)) {
			delete(l.peers, k)
		}
	}
	if len(l.peers) >= maxPeers {
		// Still full of live entries: drop one at random rather than grow.
		for k := range l.peers {
			delete(l.peers, k)
			break
		}
	}
}

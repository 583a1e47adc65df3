package auth

import (
	"sync"
	"time"
)

// failureLimiter counts invalid tokens in fixed windows that start at the
// first failure; limit failures lock out the rest of the window. Fixed
// windows are enough here: the point is to cap guesses per unit of time,
// not to shape traffic.
type failureLimiter struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu       sync.Mutex
	start    time.Time
	failures int
}

// lockedFor returns how long the lockout still lasts, or 0 if there is none.
func (l *failureLimiter) lockedFor() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures < l.limit {
		return 0
	}
	left := l.start.Add(l.window).Sub(l.now())
	if left <= 0 {
		return 0
	}
	return left
}

// fail records one invalid token.
func (l *failureLimiter) fail() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.failures == 0 || !now.Before(l.start.Add(l.window)) {
		l.start, l.failures = now, 0
	}
	l.failures++
}

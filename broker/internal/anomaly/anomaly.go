// Package anomaly notices bursts: more events of a kind (auth failures,
// egress denials, one owner's jobs) within a window than an operator said
// is normal. A burst is reported once per window, not once per event.
package anomaly

import (
	"sync"
	"time"
)

// Rule is a threshold: more than Limit events within Window is a burst.
type Rule struct {
	Limit  int
	Window time.Duration
}

// Detector counts events per key in fixed windows and calls OnBurst the
// first time a key goes over its rule in a window.
type Detector struct {
	rules   map[string]Rule
	onBurst func(kind, key string, count int)
	now     func() time.Time

	mu     sync.Mutex
	counts map[[2]string]*window
}

type window struct {
	start    time.Time
	n        int
	reported bool
}

// New returns a detector. A kind with no rule, or a rule with Limit 0, is
// never a burst.
func New(rules map[string]Rule, onBurst func(kind, key string, count int)) *Detector {
	return &Detector{rules: rules, onBurst: onBurst, now: time.Now, counts: map[[2]string]*window{}}
}

// maxKeys bounds memory under a flood of distinct keys.
const maxKeys = 10000

// Observe records one event of kind for key (an owner, a host; "" for
// none).
func (d *Detector) Observe(kind, key string) {
	r, ok := d.rules[kind]
	if !ok || r.Limit <= 0 || r.Window <= 0 {
		return
	}
	d.mu.Lock()
	now := d.now()
	k := [2]string{kind, key}
	w, ok := d.counts[k]
	if !ok || now.Sub(w.start) >= r.Window {
		if !ok && len(d.counts) >= maxKeys {
			for old, ow := range d.counts {
				if now.Sub(ow.start) >= d.rules[old[0]].Window {
					delete(d.counts, old)
				}
			}
		}
		w = &window{start: now}
		d.counts[k] = w
	}
	w.n++
	burst := w.n > r.Limit && !w.reported
	if burst {
		w.reported = true
	}
	n := w.n
	d.mu.Unlock()
	if burst && d.onBurst != nil {
		d.onBurst(kind, key, n)
	}
}

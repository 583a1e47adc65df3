package egress

import (
	"fmt"
	"net/netip"

	"github.com/airlock/airlock/policies/policy"
)

// allowlist is a job's egress rules with their hosts normalized the way
// targets are, so that policy.EgressRule.Matches compares like with like:
// one spelling per name and per address.
type allowlist []allowEntry

// allowEntry is one normalized rule and the profile entry it came from.
type allowEntry struct {
	policy.EgressRule
	// entry is the rule as the profile states it, before normalizing:
	// the name an attempt's Rule gives, which comes from the policy alone.
	entry string
}

// newAllowlist normalizes rules. ParseEgress already lowercases, but a rule
// built by hand, or one naming [::ffff:a.b.c.d], must still mean what a
// request for the same host means.
func newAllowlist(rules []policy.EgressRule) (allowlist, error) {
	out := make(allowlist, 0, len(rules))
	for _, r := range rules {
		entry := r.String()
		if r.Port == 0 {
			return nil, fmt.Errorf("egress rule %s: port 0", r)
		}
		host := r.Host
		if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
			host = "[" + host + "]"
		}
		name, addr, err := normalizeHost(host)
		if err != nil {
			return nil, fmt.Errorf("egress rule %s: %w", r, err)
		}
		if r.Wildcard && name == "" {
			return nil, fmt.Errorf("egress rule %s: %w: a wildcard needs a DNS suffix", r, ErrBadHost)
		}
		if name != "" {
			r.Host = name
		} else {
			r.Host = addr.String()
		}
		out = append(out, allowEntry{r, entry})
	}
	return out, nil
}

// match returns the first rule allowing t.
func (l allowlist) match(t target) (allowEntry, bool) {
	for _, r := range l {
		if r.Matches(t.host(), t.port) {
			return r, true
		}
	}
	return allowEntry{}, false
}

// namesAddr reports whether an entry names a itself, on port: the one way
// a special address (loopback, private, ...) becomes reachable.
func (l allowlist) namesAddr(a netip.Addr, port uint16) bool {
	_, ok := l.match(target{addr: a, port: port})
	return ok
}

package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Overrides are a request's narrowing of its profile. A zero field, or an
// empty Egress, means the profile's value stands; there is no way to say
// "no egress" here, because mode none already says it.
type Overrides struct {
	// Timeout must not exceed the profile's limits.timeout.
	Timeout time.Duration
	// MemoryBytes must not exceed the profile's limits.memory.
	MemoryBytes int64
	// Egress must be covered, entry by entry, by the profile's network.egress.
	Egress []string
	// OutputBytes must not exceed the profile's limits.output.
	OutputBytes int64
	// Model picks a name from the profile's model.name and model.allowed.
	Model string
	// MaxTurns, MaxToolCalls, MaxInputTokens and MaxOutputTokens must not
	// exceed the profile's model limits.
	MaxTurns, MaxToolCalls          int
	MaxInputTokens, MaxOutputTokens int64
}

// hasModel reports whether o touches the model section.
func (o Overrides) hasModel() bool {
	return o.Model != "" || o.MaxTurns != 0 || o.MaxToolCalls != 0 || o.MaxInputTokens != 0 || o.MaxOutputTokens != 0
}

// Tighten returns a copy of p narrowed by o, validated. An override that
// would widen the profile is an error wrapping ErrLoosen that names the
// field; one that is malformed or below a minimum wraps ErrInvalid. p is
// never changed.
func (p *Profile) Tighten(o Overrides) (*Profile, error) {
	t := p.Clone()
	switch {
	case o.Timeout < 0:
		return nil, fmt.Errorf("%w: limits.timeout: override %s is negative", ErrInvalid, o.Timeout)
	case o.Timeout > p.Limits.Timeout:
		return nil, fmt.Errorf("%w: limits.timeout: %s is longer than the profile's %s", ErrLoosen, o.Timeout, formatDuration(p.Limits.Timeout))
	case o.Timeout > 0:
		t.Limits.Timeout = o.Timeout
	}
	switch {
	case o.MemoryBytes < 0:
		return nil, fmt.Errorf("%w: limits.memory: override %d is negative", ErrInvalid, o.MemoryBytes)
	case o.MemoryBytes > p.Limits.MemoryBytes:
		return nil, fmt.Errorf("%w: limits.memory: %s is more than the profile's %s", ErrLoosen, FormatBytes(o.MemoryBytes), FormatBytes(p.Limits.MemoryBytes))
	case o.MemoryBytes > 0:
		t.Limits.MemoryBytes = o.MemoryBytes
	}
	switch {
	case o.OutputBytes < 0:
		return nil, fmt.Errorf("%w: limits.output: override %d is negative", ErrInvalid, o.OutputBytes)
	case o.OutputBytes > p.Limits.OutputBytes:
		return nil, fmt.Errorf("%w: limits.output: %s is more than the profile's %s", ErrLoosen, FormatBytes(o.OutputBytes), FormatBytes(p.Limits.OutputBytes))
	case o.OutputBytes > 0:
		t.Limits.OutputBytes = o.OutputBytes
	}
	if o.hasModel() {
		if err := t.tightenModel(o); err != nil {
			return nil, err
		}
	}
	if len(o.Egress) > 0 {
		egress, err := p.narrowEgress(o.Egress)
		if err != nil {
			return nil, err
		}
		t.Network.Egress = egress
	}
	if errs := validate(t, config{devMode: true, schemaChecked: true}, nil); len(errs) > 0 {
		// Dev mode only so that a profile loaded in dev mode stays usable;
		// Tighten checks limits here, and it never adds what dev mode guards.
		return nil, joinSorted(errs)
	}
	return t, nil
}

// narrowEgress returns the canonical, sorted form of want, if every entry is
// covered by an entry of the profile.
func (p *Profile) narrowEgress(want []string) ([]string, error) {
	if p.Network.Mode != NetworkAllowlist {
		return nil, fmt.Errorf("%w: network.egress: the profile allows no network", ErrLoosen)
	}
	have := make([]EgressRule, 0, len(p.Network.Egress))
	for _, e := range p.Network.Egress {
		if r, err := ParseEgress(e); err == nil {
			have = append(have, r)
		}
	}
	out := make([]string, 0, len(want))
	for i, e := range want {
		r, err := ParseEgress(e)
		if err != nil {
			return nil, fmt.Errorf("%w: network.egress[%d]: %v", ErrInvalid, i, err)
		}
		if !slices.ContainsFunc(have, func(h EgressRule) bool { return h.Covers(r) }) {
			return nil, fmt.Errorf("%w: network.egress[%d]: %s is not covered by the profile's egress (%s)", ErrLoosen, i, r, cmp.Or(strings.Join(p.Network.Egress, ", "), "none"))
		}
		out = append(out, r.String())
	}
	return sortedSet(out), nil
}

// tightenModel applies o's model settings to t, a clone. A limit can only
// come down, and a name must be one the profile lists.
func (t *Profile) tightenModel(o Overrides) error {
	m := t.Model
	if m == nil {
		return fmt.Errorf("%w: model: the profile has no model", ErrLoosen)
	}
	if o.Model != "" {
		if !slices.Contains(m.ModelNames(), o.Model) {
			return fmt.Errorf("%w: model.name: %q is not one the profile allows (%s)", ErrLoosen, truncate(o.Model, maxModelNameBytes), strings.Join(m.ModelNames(), ", "))
		}
		m.Name, m.Allowed = o.Model, nil
	}
	for _, l := range []struct {
		field   string
		v, have int64
		set     func(int64)
	}{
		{"model.maxTurns", int64(o.MaxTurns), int64(m.MaxTurns), func(v int64) { m.MaxTurns = int(v) }},
		{"model.maxToolCalls", int64(o.MaxToolCalls), int64(m.MaxToolCalls), func(v int64) { m.MaxToolCalls = int(v) }},
		{"model.maxInputTokens", o.MaxInputTokens, m.MaxInputTokens, func(v int64) { m.MaxInputTokens = v }},
		{"model.maxOutputTokens", o.MaxOutputTokens, m.MaxOutputTokens, func(v int64) { m.MaxOutputTokens = v }},
	} {
		switch {
		case l.v < 0:
			return fmt.Errorf("%w: %s: override %d is negative", ErrInvalid, l.field, l.v)
		case l.v > l.have:
			return fmt.Errorf("%w: %s: %d is more than the profile's %d", ErrLoosen, l.field, l.v, l.have)
		case l.v > 0:
			l.set(l.v)
		}
	}
	return nil
}

// truncate cuts a caller's string for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

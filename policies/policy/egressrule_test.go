package policy

import "testing"

func TestProfileEgressRule_NamesTheProfilesEntry(t *testing.T) {
	p := &Profile{Network: Network{Mode: NetworkAllowlist,
		Egress:   []string{"*.cdn.example.net:443", "api.example.com:443", "10.0.0.7:80"},
		Services: map[string]Service{"model": {Upstream: "https://api.example.com"}}}}
	tests := []struct {
		host string
		port uint16
		want string
	}{
		{"x1.cdn.example.net", 443, "*.cdn.example.net:443"},
		{"X1.CDN.example.net.", 443, "*.cdn.example.net:443"},
		{"cdn.example.net", 443, ""},
		{"api.example.com", 443, "api.example.com:443"},
		{"api.example.com", 80, ""},
		{"10.0.0.7", 80, "10.0.0.7:80"},
		{"model.airlock.internal", 80, "service:model"},
		{"other.airlock.internal", 80, ""},
		{"evil.test\x1b[2J", 443, ""},
	}
	for _, tt := range tests {
		if got := p.EgressRule(tt.host, tt.port); got != tt.want {
			t.Errorf("EgressRule(%q, %d) = %q, want %q", tt.host, tt.port, got, tt.want)
		}
	}
}

// A service alias's host is never an entry's, even where a profile built
// by hand has an entry that would match it: only the alias rule reaches
// it, and a content URL, which needs an entry, never does.
func TestProfileEgressEntry_NeverAnAlias(t *testing.T) {
	p := &Profile{Network: Network{Mode: NetworkAllowlist,
		Egress:   []string{"*.airlock.internal:80", "model.airlock.internal:80", "api.example.com:443"},
		Services: map[string]Service{"model": {Upstream: "https://api.example.com"}}}}
	for _, host := range []string{"model.airlock.internal", "MODEL.airlock.internal.", "other.airlock.internal", "airlock.internal"} {
		if got := p.EgressEntry(host, 80); got != "" {
			t.Errorf("EgressEntry(%q, 80) = %q, want none", host, got)
		}
	}
	if got := p.EgressRule("model.airlock.internal", 80); got != "service:model" {
		t.Errorf("EgressRule(model alias) = %q, want service:model", got)
	}
	if got := p.EgressEntry("api.example.com", 443); got != "api.example.com:443" {
		t.Errorf("EgressEntry(api.example.com) = %q", got)
	}
}

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

package policy

import (
	"strings"
	"testing"

	"github.com/airlock/airlock/policies"
)

func TestWarnings_NameInternalDestinations(t *testing.T) {
	tests := []struct {
		entry string
		want  string // in the one warning; "" for none
	}{
		{"api.example.com", ""},
		{"*.cdn.example.net", ""},
		{"93.184.216.34:443", ""},
		{"[2606:4700::1111]", ""},
		{"127.0.0.1:8080", "loopback"},
		{"127.4.5.6", "loopback"},
		{"[::1]:443", "loopback"},
		{"10.0.0.7:80", "private"},
		{"172.16.1.1", "private"},
		{"192.168.1.1", "private"},
		{"[fd00::1]", "private"},
		{"169.254.169.254:80", "metadata"},
		{"169.254.170.2:80", "metadata"},
		{"[fd00:ec2::254]:80", "metadata"},
		{"169.254.1.1", "link-local"},
		{"[fe80::1]", "link-local"},
		{"100.100.100.200:80", "metadata"},
		{"100.101.102.103", "shared"},
		{"0.0.0.0:80", "unspecified"},
		{"224.0.0.1", "multicast"},
		{"localhost:8080", "host-local"},
		{"app.localhost", "host-local"},
		{"metadata.google.internal:80", "metadata"},
		{"metadata", "metadata"},
		{"printer.local", "host-local"},
		{"*.internal.example.com", ""},
		{"*.corp.internal", "every name under .corp.internal"},
		{"db.home.arpa", "host-local"},
	}
	for _, tt := range tests {
		t.Run(tt.entry, func(t *testing.T) {
			p := &Profile{Network: Network{Mode: NetworkAllowlist, Egress: []string{tt.entry}}}
			w := Warnings(p)
			if tt.want == "" {
				if len(w) != 0 {
					t.Fatalf("Warnings = %q, want none", w)
				}
				return
			}
			if len(w) != 1 || !strings.Contains(w[0], tt.want) || !strings.Contains(w[0], "network.egress[0]") {
				t.Fatalf("Warnings = %q, want one naming network.egress[0] and %q", w, tt.want)
			}
		})
	}
}

func TestWarnings_NameInternalServiceUpstreams(t *testing.T) {
	p := &Profile{Network: Network{Mode: NetworkAllowlist, Services: map[string]Service{
		"model": {Upstream: "https://api.example.com/v1"},
		"meta":  {Upstream: "http://169.254.169.254/latest"},
		"local": {Upstream: "https://127.0.0.1:8443/"},
	}}}
	w := Warnings(p)
	if len(w) != 2 || !strings.Contains(w[0], "network.services.local.upstream") || !strings.Contains(w[1], "network.services.meta.upstream") {
		t.Fatalf("Warnings = %q, want local then meta", w)
	}
}

func TestWarnings_ShippedProfilesHaveNone(t *testing.T) {
	set, err := Load(policies.FS, checkSchema)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range set.Names() {
		p, _ := set.Get(name)
		if w := Warnings(p); len(w) != 0 {
			t.Errorf("%s: %q", name, w)
		}
	}
}

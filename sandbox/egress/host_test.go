package egress

import (
	"errors"
	"net/netip"
	"testing"
)

func TestAllowlist_MatchesOnLabelBoundariesAfterNormalizing(t *testing.T) {
	tests := []struct {
		rule, target string
		want         bool
	}{
		{"allowed.example:443", "allowed.example:443", true},
		{"allowed.example:443", "ALLOWED.Example:443", true},
		{"allowed.example:443", "allowed.example.:443", true},
		{"allowed.example:443", "allowed.example..:443", false},
		{"allowed.example:443", "allowed.example:444", false},
		{"allowed.example:443", "allowed.example.evil.test:443", false},
		{"allowed.example:443", "evilallowed.example:443", false},
		{"allowed.example:443", "sub.allowed.example:443", false},
		{"allowed.example:443", "allowed-example:443", false},
		{"*.allowed.example:443", "sub.allowed.example:443", true},
		{"*.allowed.example:443", "a.b.allowed.example:443", true},
		{"*.allowed.example:443", "SUB.Allowed.Example.:443", true},
		{"*.allowed.example:443", "allowed.example:443", false},
		{"*.allowed.example:443", "evilallowed.example:443", false},
		{"*.allowed.example:443", "sub.allowed.example.evil.test:443", false},
		{"*.allowed.example:443", "allowed.example.evil.test:443", false},
		// IDNA: Unicode, full-width letters and the ideographic full stop
		// all map to the A-label the rule holds.
		{"xn--bcher-kva.example:443", "bücher.example:443", true},
		{"xn--bcher-kva.example:443", "BÜCHER.example:443", true},
		{"*.xn--bcher-kva.example:443", "shop.bücher.example:443", true},
		{"allowed.example:443", "ａｌｌｏｗｅｄ.example:443", true},
		{"allowed.example:443", "allowed。example:443", true},
		{"allowed.example:443", "аllowed.example:443", false}, // Cyrillic а
		// Addresses match addresses only, whatever the spelling.
		{"127.0.0.1:80", "2130706433:80", true},
		{"127.0.0.1:80", "[::ffff:127.0.0.1]:80", true},
		{"127.0.0.1:80", "127.0.0.2:80", false},
		{"[::1]:80", "[0:0:0:0:0:0:0:1]:80", true},
		{"[::ffff:127.0.0.1]:80", "127.1:80", true},
		{"*.allowed.example:443", "[::1]:443", false},
	}
	for _, tt := range tests {
		t.Run(tt.rule+" "+tt.target, func(t *testing.T) {
			l, err := newAllowlist(rules(t, tt.rule))
			if err != nil {
				t.Fatal(err)
			}
			target, err := parseAuthority(tt.target, 0)
			if err != nil {
				if tt.want {
					t.Fatalf("parseAuthority(%q): %v", tt.target, err)
				}
				return
			}
			if _, got := l.match(target); got != tt.want {
				t.Errorf("match = %v, want %v (target normalized to %s)", got, tt.want, target.hostPort())
			}
		})
	}
}

func TestNormalizeHost_ReadsIPv4SpellingsAsAddresses(t *testing.T) {
	tests := map[string]string{
		"127.0.0.1":          "127.0.0.1",
		"2130706433":         "127.0.0.1",
		"0x7f000001":         "127.0.0.1",
		"0X7F000001":         "127.0.0.1",
		"017700000001":       "127.0.0.1",
		"0177.0.0.1":         "127.0.0.1",
		"0x7f.0.0.1":         "127.0.0.1",
		"127.1":              "127.0.0.1",
		"127.0.1":            "127.0.0.1",
		"0x7f.1":             "127.0.0.1",
		"127.0.0.1.":         "127.0.0.1",
		"0":                  "0.0.0.0",
		"0x":                 "0.0.0.0",
		"10.0.0.0x1":         "10.0.0.1",
		"169.254.43518":      "169.254.169.254",
		"0xa9fea9fe":         "169.254.169.254",
		"４２９４９６７２９５":         "255.255.255.255",
		"[::ffff:10.0.0.1]":  "10.0.0.1",
		"[::ffff:a00:1]":     "10.0.0.1",
		"[2001:DB8::1]":      "2001:db8::1",
		"[::127.0.0.1]":      "::7f00:1",
		"[64:ff9b::7f00:1]":  "64:ff9b::7f00:1",
		"1.2.3.4":            "1.2.3.4",
		"001.002.003.004":    "1.2.3.4",
		"0x01.0x02.0x03.004": "1.2.3.4",
	}
	for in, want := range tests {
		name, addr, err := normalizeHost(in)
		if err != nil || name != "" || addr != netip.MustParseAddr(want) {
			t.Errorf("normalizeHost(%q) = %q, %v, %v; want address %s", in, name, addr, err, want)
		}
	}
}

func TestNormalizeHost_RefusesNamesThatAreNeitherNameNorAddress(t *testing.T) {
	for _, in := range []string{
		"", "4294967296", "256.0.0.1", "1.2.3.4.5", "1.2.3.256", "1.2.65536", "09.0.0.1", "1.2.3.09",
		"a..b", ".a", "a.example..", "-a.example", "a-.example", "under_score.example", "sp ace.example",
		"a.example/", "a.example\\", "xn--zz.example", "a\u200db.example", "::1", "[::1", "[fe80::1%eth0]",
		"[127.0.0.1]", "foo.0x", "foo.123", string(make([]byte, 300)),
	} {
		if name, addr, err := normalizeHost(in); !errors.Is(err, ErrBadHost) {
			t.Errorf("normalizeHost(%q) = %q, %v, %v; want ErrBadHost", in, name, addr, err)
		}
	}
}

func TestNormalizeHost_CanonicalizesNames(t *testing.T) {
	tests := map[string]string{
		"Example.COM":    "example.com",
		"example.com.":   "example.com",
		"bücher.de":      "xn--bcher-kva.de",
		"ＥＸＡＭＰＬＥ.com":    "example.com",
		"example。com":    "example.com",
		"localhost":      "localhost",
		"1.2.3.4.nip.io": "1.2.3.4.nip.io",
	}
	for in, want := range tests {
		if name, _, err := normalizeHost(in); err != nil || name != want {
			t.Errorf("normalizeHost(%q) = %q, %v; want %q", in, name, err, want)
		}
	}
}

func TestSpecialKind_CoversEverySpecialRangeAndSparesPublicAddresses(t *testing.T) {
	special := []string{
		"0.0.0.0", "0.255.255.255", "10.0.0.1", "100.64.0.1", "100.127.255.255", "127.0.0.1", "127.255.255.254",
		"169.254.169.254", "172.16.0.1", "172.31.255.255", "192.0.0.8", "192.0.2.1", "192.88.99.1", "192.168.0.1",
		"198.18.0.1", "198.19.255.255", "198.51.100.1", "203.0.113.1", "224.0.0.1", "239.255.255.250",
		"240.0.0.1", "255.255.255.255",
		"::", "::1", "::7f00:1", "::ffff:0:7f00:1", "64:ff9b::a00:1", "100::1", "2001::1", "2001:db8::1",
		"2002:a00:1::1", "3fff::1", "fc00::1", "fd00:ec2::254", "fe80::1", "fec0::1", "ff02::1",
	}
	for _, s := range special {
		if specialKind(netip.MustParseAddr(s)) == "" {
			t.Errorf("%s is treated as public", s)
		}
	}
	for _, s := range []string{"1.1.1.1", "8.8.8.8", "11.22.33.44", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0", "192.167.255.255", "223.255.255.255", "2600::1", "2a00:1450::1"} {
		if k := specialKind(netip.MustParseAddr(s)); k != "" {
			t.Errorf("%s is treated as %s", s, k)
		}
	}
}

func TestParseAuthority_RequiresPortForConnectAndDefaultsOtherwise(t *testing.T) {
	if _, err := parseAuthority("a.example", 0); err == nil {
		t.Error("CONNECT authority without a port was accepted")
	}
	tg, err := parseAuthority("a.example", 80)
	if err != nil || tg.port != 80 {
		t.Errorf("got %+v, %v; want port 80", tg, err)
	}
	for _, bad := range []string{"a.example:", "a.example:0", "a.example:65536", "a.example:+1", "a.example:1:2", "[::1]x", "u@a.example:80"} {
		if _, err := parseAuthority(bad, 80); err == nil {
			t.Errorf("parseAuthority(%q) accepted", bad)
		}
	}
}

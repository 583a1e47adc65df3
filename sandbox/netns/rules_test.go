package netns

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/nftables"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func TestRuleset_MatchesGolden(t *testing.T) {
	rules, err := Ruleset(netip.MustParseAddr("10.213.0.1"), 3128)
	if err != nil {
		t.Fatal(err)
	}
	got := rules.String()
	golden := filepath.Join("testdata", "ruleset.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestRuleset_MatchesGolden -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("ruleset differs from %s (rerun with -update if the change is intended)\n--- got\n%s\n--- want\n%s", golden, got, want)
	}
}

func TestRuleset_EveryChainDropsByDefault(t *testing.T) {
	rules, err := Ruleset(netip.MustParseAddr("10.213.0.1"), 3128)
	if err != nil {
		t.Fatal(err)
	}
	if rules.Table.Family != nftables.TableFamilyINet {
		t.Errorf("table family %v, want inet so IPv6 is covered too", rules.Table.Family)
	}
	hooks := map[string]bool{}
	for _, c := range rules.Chains {
		hooks[hookName(c.Spec.Hooknum)] = true
		if c.Spec.Policy == nil || *c.Spec.Policy != nftables.ChainPolicyDrop {
			t.Errorf("chain %s: policy %s, want drop", c.Spec.Name, policyName(c.Spec.Policy))
		}
	}
	for _, h := range []string{"input", "forward", "output"} {
		if !hooks[h] {
			t.Errorf("no chain on hook %s", h)
		}
	}
}

func TestRuleset_RejectsWhatNoProxyListensOn(t *testing.T) {
	for _, tc := range []struct {
		name string
		ip   netip.Addr
		port uint16
	}{
		{"ipv6 proxy", netip.MustParseAddr("fd00::1"), 3128},
		{"ipv4-mapped proxy", netip.MustParseAddr("::ffff:10.213.0.1"), 3128},
		{"unspecified proxy", netip.IPv4Unspecified(), 3128},
		{"zero address", netip.Addr{}, 3128},
		{"port 0", netip.MustParseAddr("10.213.0.1"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Ruleset(tc.ip, tc.port); !errors.Is(err, ErrInvalidRules) {
				t.Errorf("Ruleset(%v, %d) error %v, want ErrInvalidRules", tc.ip, tc.port, err)
			}
		})
	}
}

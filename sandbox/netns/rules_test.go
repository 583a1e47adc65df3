package netns

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func TestRuleset_MatchesGolden(t *testing.T) {
	rules, err := Ruleset(netip.MustParseAddr("10.213.0.1"), 3128)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "ruleset.golden", rules.String())
}

// checkGolden compares got with testdata/name, which -update rewrites.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("rules differ from %s (rerun with -update if the change is intended)\n--- got\n%s\n--- want\n%s", golden, got, want)
	}
}

func TestLinkRuleset_MatchesGolden(t *testing.T) {
	rules, err := LinkRuleset(netip.MustParseAddr("10.213.0.1"), netip.MustParseAddr("10.213.0.2"), 3128, JobIf)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "linkruleset.golden", rules.String())
}

func TestLinkRuleset_RejectsWhatNoJobHas(t *testing.T) {
	host, job := netip.MustParseAddr("10.213.0.1"), netip.MustParseAddr("10.213.0.2")
	for _, tc := range []struct {
		name      string
		host, job netip.Addr
		port      uint16
		dev       string
	}{
		{"ipv6 job", host, netip.MustParseAddr("fd00::2"), 3128, JobIf},
		{"no job address", host, netip.Addr{}, 3128, JobIf},
		{"unspecified proxy", netip.IPv4Unspecified(), job, 3128, JobIf},
		{"port 0", host, job, 0, JobIf},
		{"no device", host, job, 3128, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := LinkRuleset(tc.host, tc.job, tc.port, tc.dev); !errors.Is(err, ErrInvalidRules) {
				t.Errorf("LinkRuleset error %v, want ErrInvalidRules", err)
			}
		})
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

// The kernel caps a job's connections to the proxy as a second wall: new
// connections past ProxyConnLimit are reset before the rule that accepts
// connections to the proxy can see them.
func TestRuleset_ResetsConnectionsToProxyPastTheLimit(t *testing.T) {
	rules, err := Ruleset(netip.MustParseAddr("10.213.0.1"), 3128)
	if err != nil {
		t.Fatal(err)
	}
	var output []Rule
	for _, c := range rules.Chains {
		if c.Spec.Name == "output" {
			output = c.Rules
		}
	}
	limit, accept := -1, -1
	for i, r := range output {
		for j, e := range r.Exprs {
			if cl, ok := e.(*expr.Connlimit); ok {
				if cl.Count != ProxyConnLimit || cl.Flags != expr.NFT_CONNLIMIT_F_INV {
					t.Errorf("connlimit %+v, want count over %d", cl, ProxyConnLimit)
				}
				rest := r.Exprs[j+1:]
				if rj, ok := rest[len(rest)-1].(*expr.Reject); !ok || rj.Type != unix.NFT_REJECT_TCP_RST {
					t.Errorf("rule %q ends with %s, want a tcp reset", r.Comment, exprString(rest[len(rest)-1]))
				}
				limit = i
			}
		}
		if r.Comment == "accept tcp to the egress proxy" {
			accept = i
		}
	}
	if limit < 0 || accept < 0 || limit > accept {
		t.Errorf("connection limit at rule %d, accept to the proxy at rule %d: want the limit first", limit, accept)
	}
}

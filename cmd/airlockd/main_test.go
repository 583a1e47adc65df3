package main

import (
	"maps"
	"strings"
	"testing"

	"github.com/airlock/airlock/policies/policy"
)

func TestParsePools_TakesNameSizePairsAndRefusesTheRest(t *testing.T) {
	var pools map[string]int
	if err := policy.ParsePools("secureclaw=2, ironclaw=1", &pools); err != nil {
		t.Fatal(err)
	}
	if err := policy.ParsePools("vanilla=64", &pools); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"secureclaw": 2, "ironclaw": 1, "vanilla": 64}; !maps.Equal(pools, want) {
		t.Fatalf("pools = %v, want %v", pools, want)
	}
	for _, bad := range []string{"secureclaw", "=2", "x=0", "x=65", "x=two", "secureclaw=1"} {
		if err := policy.ParsePools(bad, &pools); err == nil || !strings.Contains(err.Error(), "want PROFILE=SIZE") && !strings.Contains(err.Error(), "named twice") {
			t.Errorf("policy.ParsePools(%q) = %v, want a refusal", bad, err)
		}
	}
}

package sandbox

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestGolden_ShippedProfilesToOCISpec pins each shipped profile's resolved
// policy and the OCI spec it produces. A change to either is a change to
// what every job of that profile runs with, and must show in review.
func TestGolden_ShippedProfilesToOCISpec(t *testing.T) {
	set := shippedProfiles(t)
	for _, p := range set.All() {
		t.Run(p.Name, func(t *testing.T) {
			resolved, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "golden", p.Name+".policy.json"), resolved)
			// On a host that supports user namespaces, whatever this one does.
			s, err := explain(p, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			spec, err := json.MarshalIndent(s, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "golden", p.Name+".spec.json"), spec)
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	got = append(got, '\n')
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; if the change is intended, run go test ./sandbox -update and review the diff\ngot:\n%s", path, got)
	}
}

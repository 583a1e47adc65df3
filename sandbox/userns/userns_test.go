package userns

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

func newClaims(t *testing.T, dir, owner string) *Claims {
	t.Helper()
	c, err := NewClaims(dir, owner)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClaims_ConcurrentClaimsGetDisjointRangesInTheBlock(t *testing.T) {
	dir := t.TempDir()
	// Two owners, as two brokers with different state dirs on one host.
	a, b := newClaims(t, dir, "aaaa"), newClaims(t, dir, "bbbb")
	const n = 64
	got := make([]Range, 2*n)
	var wg sync.WaitGroup
	for i := range 2 * n {
		wg.Go(func() {
			c := a
			if i%2 == 1 {
				c = b
			}
			r, _, err := c.Claim("run-" + strconv.Itoa(i))
			if err != nil {
				t.Error(err)
			}
			got[i] = r
		})
	}
	wg.Wait()
	first, last := Block()
	seen := map[uint32]bool{}
	for _, r := range got {
		if r.First < first || r.HostID(Size-1) > last {
			t.Errorf("range %d-%d is outside the block %d-%d", r.First, r.HostID(Size-1), first, last)
		}
		if r == Shared || r.First < Shared.HostID(Size) {
			t.Errorf("range %d overlaps the shared range", r.First)
		}
		if (r.First-Base)%Size != 0 {
			t.Errorf("range %d is not aligned on %d", r.First, Size)
		}
		if seen[r.First] {
			t.Errorf("range %d handed out twice", r.First)
		}
		seen[r.First] = true
	}
}

func TestClaims_ReleaseFreesTheRangeAndIsIdempotent(t *testing.T) {
	c := newClaims(t, t.TempDir(), "owner")
	c.ranges = 3 // two ranges besides Shared
	r1, release1, err := c.Claim("one")
	if err != nil {
		t.Fatal(err)
	}
	r2, _, err := c.Claim("two")
	if err != nil {
		t.Fatal(err)
	}
	if r1 == r2 {
		t.Fatalf("both claims got %d", r1.First)
	}
	if _, _, err := c.Claim("three"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("a claim past the block: %v, want ErrExhausted", err)
	}
	if err := release1(); err != nil {
		t.Fatal(err)
	}
	if err := release1(); err != nil {
		t.Fatalf("a second release: %v", err)
	}
	r3, _, err := c.Claim("three")
	if err != nil || r3 != r1 {
		t.Fatalf("claim after release = %d, %v; want the released %d", r3.First, err, r1.First)
	}
}

func TestClaims_SurviveACrashUntilTheOwnersReap(t *testing.T) {
	dir := t.TempDir()
	crashed := newClaims(t, dir, "mine")
	other := newClaims(t, dir, "theirs")
	mine, _, err := crashed.Claim("run-a")
	if err != nil {
		t.Fatal(err)
	}
	theirs, _, err := other.Claim("run-b")
	if err != nil {
		t.Fatal(err)
	}
	// A leftover of a claim cut short between its two steps.
	if err := os.WriteFile(filepath.Join(dir, ".tmp-0011223344556677"), []byte("mine run-c\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The successor, before its reap, never hands out either range.
	next := newClaims(t, dir, "mine")
	for i := range 8 {
		r, _, err := next.Claim("probe-" + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		if r == mine || r == theirs {
			t.Fatalf("range %d handed out while claimed", r.First)
		}
	}
	n, err := next.Reap()
	if err != nil || n != 9 {
		t.Fatalf("Reap = %d, %v; want its 9 claims", n, err)
	}
	held, err := other.Holders()
	if err != nil || len(held) != 1 || held[theirs] != "run-b" {
		t.Fatalf("the other owner's claims after a reap: %v, %v", held, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("after the reap %d files are left, want the other owner's one", len(entries))
	}
}

func TestNewClaims_RefusesNamesThatCannotBeRecorded(t *testing.T) {
	for _, owner := range []string{"", "a b", "a/b", "a\n"} {
		if _, err := NewClaims(t.TempDir(), owner); err == nil {
			t.Errorf("owner %q accepted", owner)
		}
	}
	c := newClaims(t, t.TempDir(), "owner")
	for _, holder := range []string{"", "a b", "a\nb"} {
		if _, _, err := c.Claim(holder); err == nil {
			t.Errorf("holder %q accepted", holder)
		}
	}
}

func TestCheck_SaysWhyAHostCannot(t *testing.T) {
	proc := func(t *testing.T, withNS bool, max string) string {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "self/ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if withNS {
			if err := os.Symlink("user:[4026531837]", filepath.Join(root, "self/ns/user")); err != nil {
				t.Fatal(err)
			}
		}
		if max != "" {
			if err := os.MkdirAll(filepath.Join(root, "sys/user"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "sys/user/max_user_namespaces"), []byte(max), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	for _, tt := range []struct {
		name   string
		withNS bool
		max    string
		ok     bool
	}{
		{"supported", true, "15000\n", true},
		{"no user namespaces in the kernel", false, "15000\n", false},
		{"limit zero", true, "0\n", false},
		{"limit unreadable", true, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(proc(t, tt.withNS, tt.max))
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Check = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

package netns

import (
	"errors"
	"net/netip"
	"testing"
)

func TestPool_LeasesHostDotOneJobDotTwo(t *testing.T) {
	p, err := poolOf(netip.MustParsePrefix("10.213.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Lease{
		{netip.MustParsePrefix("10.213.0.0/30"), netip.MustParseAddr("10.213.0.1"), netip.MustParseAddr("10.213.0.2")},
		{netip.MustParsePrefix("10.213.0.4/30"), netip.MustParseAddr("10.213.0.5"), netip.MustParseAddr("10.213.0.6")},
	}
	for i, w := range want {
		got, err := p.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		if got != w {
			t.Errorf("lease %d = %+v, want %+v", i, got, w)
		}
	}
}

func TestPool_ExhaustionIsAnError(t *testing.T) {
	p, err := poolOf(netip.MustParsePrefix("10.213.0.0/29"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for range 2 {
		l, err := p.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		if seen[l.JobIP] {
			t.Fatalf("address %s leased twice", l.JobIP)
		}
		seen[l.JobIP] = true
	}
	if _, err := p.Acquire(); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("third lease of a /29: error %v, want ErrPoolExhausted", err)
	}
}

func TestPool_ReleasedBlockIsReusedLast(t *testing.T) {
	p, err := poolOf(netip.MustParsePrefix("10.213.0.0/28"))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := p.Acquire()
	p.Release(first)
	p.Release(first) // twice is harmless
	for i := 1; i < 4; i++ {
		l, err := p.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		if l == first {
			t.Fatalf("released block reused after %d leases; want the other free blocks first", i)
		}
	}
	l, err := p.Acquire()
	if err != nil || l != first {
		t.Fatalf("last free block: %+v, %v; want %+v", l, err, first)
	}
}

func TestPool_ReleaseIgnoresForeignLeases(t *testing.T) {
	p, err := poolOf(netip.MustParsePrefix("10.213.0.0/30"))
	if err != nil {
		t.Fatal(err)
	}
	l, _ := p.Acquire()
	for _, foreign := range []Lease{
		{},
		{netip.MustParsePrefix("10.99.0.0/30"), netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")},
		{l.Prefix, l.JobIP, l.HostIP},
	} {
		p.Release(foreign)
	}
	if _, err := p.Acquire(); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("a foreign release freed the only block: %v", err)
	}
}

func TestNewPool_RejectsUnusablePrefixes(t *testing.T) {
	for _, s := range []string{"10.213.0.0/31", "10.213.0.1/16", "fd00::/64", "10.0.0.0/7"} {
		if _, err := NewAddressPool(netip.MustParsePrefix(s), ""); !errors.Is(err, ErrInvalidPool) {
			t.Errorf("NewAddressPool(%s) error %v, want ErrInvalidPool", s, err)
		}
	}
}

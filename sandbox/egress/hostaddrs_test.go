package egress

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

// hostAddr stands for a public address of the broker's host; like every
// fake public address it is mapped onto a local server and never dialed.
const hostAddr = "11.22.33.7"

// A name that resolves to one of the broker host's own addresses is
// refused, as a special address is, unless an entry names that address.
func TestDecide_RefusesTheHostsOwnAddressesUnlessAnEntryNamesThem(t *testing.T) {
	o := newOrigin(t, nil)
	for _, tc := range []struct {
		name    string
		entries []string
		req     string
		want    int
	}{
		{"name on the allowlist", []string{"self.test:80"},
			"GET http://self.test/ HTTP/1.1\r\nHost: self.test\r\n\r\n", http.StatusForbidden},
		{"name under a wildcard", []string{"*.wild.test:80"},
			"GET http://self.wild.test/ HTTP/1.1\r\nHost: self.wild.test\r\n\r\n", http.StatusForbidden},
		{"name with a public address too", []string{"mixed.test:80"},
			"GET http://mixed.test/ HTTP/1.1\r\nHost: mixed.test\r\n\r\n", http.StatusForbidden},
		{"tunnel to the name", []string{"self.test:80"},
			"CONNECT self.test:80 HTTP/1.1\r\nHost: self.test:80\r\n\r\n", http.StatusForbidden},
		{"entry naming the address on another port", []string{"self.test:80", hostAddr + ":8080"},
			"GET http://self.test/ HTTP/1.1\r\nHost: self.test\r\n\r\n", http.StatusForbidden},
		{"the address literally, not on the allowlist", []string{"self.test:80"},
			"GET http://" + hostAddr + "/ HTTP/1.1\r\nHost: " + hostAddr + "\r\n\r\n", http.StatusForbidden},
		{"entry naming the address", []string{hostAddr + ":80"},
			"GET http://" + hostAddr + "/ HTTP/1.1\r\nHost: " + hostAddr + "\r\n\r\n", http.StatusOK},
		{"name and an entry naming its address", []string{"self.test:80", hostAddr + ":80"},
			"GET http://self.test/ HTTP/1.1\r\nHost: self.test\r\n\r\n", http.StatusOK},
		{"another public name", []string{"other.test:80"},
			"GET http://other.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{HostAddrs: func() ([]netip.Addr, error) {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr(hostAddr), netip.MustParseAddr("::ffff:" + hostAddr)}, nil
			}})
			h.host("self.test", hostAddr, o)
			h.host("self.wild.test", hostAddr, o)
			h.host("mixed.test", "11.22.33.1", o)
			h.host("mixed.test", hostAddr, o)
			h.host("other.test", "11.22.33.1", o)
			s := h.register(tc.entries...)
			before := o.hits.Load()
			code, body := h.raw(tc.req)
			if code != tc.want {
				t.Fatalf("got %d %q, want %d", code, body, tc.want)
			}
			if tc.want != http.StatusOK {
				if o.hits.Load() != before {
					t.Error("the host's address was reached")
				}
				log := s.Log()
				if len(log) != 1 || log[0].Allowed || log[0].Rule != "" {
					t.Errorf("log %+v, want one denied attempt", log)
				}
			}
		})
	}
}

// Failing to list the host's addresses refuses rather than guesses.
func TestDecide_RefusesWhenTheHostsAddressesCannotBeListed(t *testing.T) {
	o := newOrigin(t, nil)
	h := newHarness(t, Config{HostAddrs: func() ([]netip.Addr, error) { return nil, errors.New("netlink gone") }})
	h.host("other.test", "11.22.33.1", o)
	h.register("other.test:80")
	code, body := h.raw("GET http://other.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n")
	if code == http.StatusOK || !strings.Contains(body, "host's addresses") || o.hits.Load() != 0 {
		t.Errorf("got %d %q, want a refusal", code, body)
	}
}

// The addresses are listed again once they are older than hostAddrsTTL,
// not once per request.
func TestHostAddrs_ListsOncePerTTL(t *testing.T) {
	var calls atomic.Int32
	h := &hostAddrs{list: func() ([]netip.Addr, error) {
		calls.Add(1)
		return []netip.Addr{netip.MustParseAddr("::ffff:" + hostAddr)}, nil
	}}
	for range 100 {
		if own, err := h.contains(netip.MustParseAddr(hostAddr)); !own || err != nil {
			t.Fatalf("contains = %v, %v", own, err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("listed %d times, want 1", n)
	}
	h.at = h.at.Add(-2 * hostAddrsTTL)
	h.contains(netip.MustParseAddr(hostAddr))
	if n := calls.Load(); n != 2 {
		t.Errorf("listed %d times after the TTL, want 2", n)
	}
}

func TestInterfaceAddrs_IncludesLoopback(t *testing.T) {
	addrs, err := interfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fmt.Sprint(addrs), "127.0.0.1") {
		t.Errorf("interface addresses %v lack 127.0.0.1", addrs)
	}
}

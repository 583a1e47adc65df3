package server

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestListenPprof_RefusesAllButLoopbackIPs(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", ":0", "localhost:0", "192.0.2.1:0", "127.0.0.1"} {
		t.Run(addr, func(t *testing.T) {
			l, err := listenPprof(addr)
			if err == nil {
				l.Close()
				t.Fatalf("listenPprof(%q) listened on %s, want a refusal", addr, l.Addr())
			}
			if !strings.Contains(err.Error(), "--pprof") {
				t.Errorf("error %q does not name the flag", err)
			}
		})
	}
}

func TestServePprof_LoopbackServesTheIndexAndHeap(t *testing.T) {
	l, err := listenPprof("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := servePprof(l, slog.New(slog.DiscardHandler))
	t.Cleanup(stop)
	// A client of its own, so no idle connection outlives the test.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for path, want := range map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/heap?gc=1&debug=1": "heap profile",
		"/debug/pprof/cmdline":           "",
	} {
		resp, err := c.Get("http://" + l.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %s, body lacks %q:\n%.300s", path, resp.Status, want, body)
		}
	}
}

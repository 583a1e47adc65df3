package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/airlock/airlock/integration/modelserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lineWatcher is run's stderr; it reports the first line with a word.
type lineWatcher struct {
	mu   sync.Mutex
	buf  strings.Builder
	word string
	seen chan struct{}
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.word)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.word) {
		close(w.seen)
	}
	return len(p), nil
}

func TestRun_ServesTheBuiltinModelsUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	keyFile, caFile, readyFile := filepath.Join(dir, "key"), filepath.Join(dir, "ca.pem"), filepath.Join(dir, "url")
	if err := os.WriteFile(keyFile, []byte("sk-cmd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &lineWatcher{word: "serving", seen: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--tls", "--ca-out", caFile, "--key-file", keyFile, "--ready-file", readyFile}, stderr)
	}()
	select {
	case <-stderr.seen:
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("run did not start serving")
	}

	url, err := os.ReadFile(readyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(caFile); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("CA file mode %v (%v), want 0644", fi.Mode(), err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("the CA file holds no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	base := strings.TrimSpace(string(url))
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Errorf("ready file says %q", base)
	}
	for key, want := range map[string]int{"sk-cmd": http.StatusOK, "sk-other": http.StatusUnauthorized} {
		req, _ := http.NewRequest(http.MethodPost, base+modelserver.PathChatCompletions,
			strings.NewReader(`{"model":"instant","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("key %s: %d %s, want %d", key, resp.StatusCode, body, want)
		}
		if want == http.StatusOK && !strings.Contains(string(body), `"content":"ok"`) {
			t.Errorf("instant answered %s", body)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestRun_RefusesBadSetups(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args []string
		is   error
	}{
		"not loopback":     {[]string{"--addr", "0.0.0.0:0"}, modelserver.ErrNotLoopback},
		"empty key file":   {[]string{"--key-file", empty}, nil},
		"missing key file": {[]string{"--key-file", filepath.Join(dir, "absent")}, os.ErrNotExist},
		"ca-out, no tls":   {[]string{"--ca-out", filepath.Join(dir, "ca.pem")}, nil},
		"stray argument":   {[]string{"serve"}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			err := run(context.Background(), tc.args, io.Discard)
			if err == nil {
				t.Fatal("run accepted it")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want %v", err, tc.is)
			}
		})
	}
}

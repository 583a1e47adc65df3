package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// pprofShutdownGrace is how long a profile being taken at exit may take
// to finish before its connection is closed.
const pprofShutdownGrace = 2 * time.Second

// listenPprof opens the --pprof listener. Only a loopback IP literal is
// allowed, whatever --allow-remote says: a heap profile or a goroutine dump shows
// job content and secrets in memory, and a name could resolve elsewhere.
func listenPprof(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("--pprof %q: must be a loopback IP address and port, such as 127.0.0.1:6060: profiles show memory that holds job content and secrets", addr)
	}
	return net.Listen("tcp", addr)
}

// pprofHandler serves net/http/pprof on its own mux: the package's init
// registers on http.DefaultServeMux too, which airlockd never serves, so
// nothing else can expose the profiles by accident.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// servePprof serves the profiles on l until the returned stop is called.
// stop lets a profile in progress finish for a short grace, then closes.
func servePprof(l net.Listener, log *slog.Logger) (stop func()) {
	// No WriteTimeout: a CPU profile or trace answers only after the
	// seconds it was asked for.
	srv := &http.Server{Handler: pprofHandler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof listener", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), pprofShutdownGrace)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		<-done
	}
}

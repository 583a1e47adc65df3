package main

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/listen"
	"github.com/airlock/airlock/cmd/airlock/internal/mcpserver"
)

const mcpUsage = `usage: airlock mcp [--http HOST:PORT [--allow-remote --tls-cert FILE --tls-key FILE]]

Serves Airlock to an MCP client. Its tools:

  airlock_read      read untrusted content in a sandbox; only the sanitized,
                    schema-valid result, the verdict, the flags and an
                    egress summary come back
  airlock_profiles  list the broker's profiles

By default it speaks MCP on stdin and stdout: an MCP client's server
config runs "airlock mcp" as its command, with AIRLOCK_SOCKET and
AIRLOCK_TOKEN_FILE in its environment. With --http it serves MCP's
Streamable HTTP at /mcp instead, on loopback unless --allow-remote (which
needs TLS); every request must carry "Authorization: Bearer TOKEN", the
token this command reaches airlockd with.

A command a job asks to run that needs approval is put to the client's
user when the client supports elicitation; otherwise it is denied at
once, as exec.askFallback (always deny) would decide. A client that sends
a progress token gets the job's events as progress notifications.

flags:
`

// mcpCmd serves MCP until its client goes away or a signal arrives.
func mcpCmd(ep client.Endpoint, args []string) error {
	fs := flag.NewFlagSet("mcp", flag.ExitOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, mcpUsage); fs.PrintDefaults() }
	httpAddr := fs.String("http", "", "serve Streamable HTTP on this host:port instead of stdio")
	allowRemote := fs.Bool("allow-remote", false, "allow --http on a non-loopback address (needs --tls-cert and --tls-key)")
	tlsCert := fs.String("tls-cert", "", "TLS certificate for --http")
	tlsKey := fs.String("tls-key", "", "TLS key for --http")
	_ = fs.Parse(args)
	if fs.NArg() > 0 {
		return fmt.Errorf("mcp takes no arguments, got %q", fs.Args())
	}
	if *httpAddr == "" && (*allowRemote || *tlsCert != "" || *tlsKey != "") {
		return errors.New("--allow-remote, --tls-cert and --tls-key go with --http")
	}
	bind := listen.Config{Addr: *httpAddr, AllowRemote: *allowRemote, TLSCert: *tlsCert, TLSKey: *tlsKey}
	if *httpAddr != "" {
		// The broker's own bind rule: loopback by address, or
		// --allow-remote with TLS, so that the token never crosses the
		// network in clear.
		if err := listen.Check("--http", bind); err != nil {
			return err
		}
	}
	tokenPath := client.TokenFile(ep.TokenFile)
	ep.TokenFile = tokenPath
	conn, err := ep.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	server := mcpserver.New(conn.Broker, mcpserver.Options{Version: version(), Describe: eventLine})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *httpAddr == "" {
		return ignoreClosedStdio(server.Run(ctx, &mcp.StdioTransport{}))
	}
	token, err := auth.LoadToken(tokenPath)
	if err != nil {
		return err
	}
	lis, tc, err := listen.TCP("--http", bind)
	if err != nil {
		return err
	}
	if tc != nil {
		lis = tls.NewListener(lis, tc)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", requireBearer(token, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "airlock mcp: serving Streamable HTTP on %s/mcp\n", lis.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// requireBearer lets through only requests with the token, compared in
// constant time.
func requireBearer(token []byte, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="airlock"`)
			http.Error(w, "a bearer token is required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ignoreClosedStdio treats the client closing stdin as the end of the
// session, which it is.
func ignoreClosedStdio(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "EOF") {
		return nil
	}
	return err
}

// version is this build's module version, or "devel" for a local build.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

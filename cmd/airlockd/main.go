// Command airlockd is the Airlock broker daemon: it serves the gRPC Spawn
// API and runs each job in a containerd sandbox.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/airlock/airlock/cmd/airlockd/server"
)

func main() {
	var o server.Options
	fs, debug := server.FlagSet("airlockd", flag.ExitOnError, &o)
	_ = fs.Parse(os.Args[1:]) // ExitOnError: a bad flag exits 2, -h exits 0
	if err := o.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "airlockd:", err)
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	o.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "airlockd:", err)
		os.Exit(1)
	}
}

// run starts airlockd and serves until SIGINT or SIGTERM, then drains and
// stops it. SIGHUP rereads the token files.
func run(o server.Options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	s, err := server.Start(ctx, o)
	if err != nil {
		return err
	}
	for {
		select {
		case <-hup:
			_ = s.ReloadTokens() // logged; the old tokens stay
		case err := <-s.Serving():
			_ = s.Shutdown(context.Background())
			return err
		case <-ctx.Done():
			return s.Shutdown(context.Background())
		}
	}
}

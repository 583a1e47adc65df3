// Command airlock-modelserver serves the stand-in model API of package
// modelserver on loopback, with its built-in models ("stand-in" for the
// demo, "instant" for benchmarks), until SIGINT or SIGTERM.
//
// It speaks OpenAI's Chat Completions and Anthropic's Messages, so a
// profile can point at it as at a real endpoint:
//
//	airlock-modelserver --tls --ca-out /tmp/model-ca.pem \
//	  --key-file /tmp/model.key --ready-file /tmp/model.url
//
// The URL is written to --ready-file only once the server listens, by a
// rename, so a script that waits for the file never reads half of it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/airlock/airlock/integration/modelserver"
)

// maxRecorded is how many requests the command keeps for no one to read:
// a server that runs for a whole benchmark must not grow with it.
const maxRecorded = 1

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "airlock-modelserver:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("airlock-modelserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "loopback address to listen on")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a certificate from a CA made at start")
	caOut := fs.String("ca-out", "", "write the CA certificate (PEM) to this file; needs --tls")
	keyFile := fs.String("key-file", "", "require the key in this file (Authorization: Bearer, or x-api-key); none when absent")
	readyFile := fs.String("ready-file", "", "write the server's URL to this file once it listens")
	latency := fs.Duration("latency", 0, "wait this long before each reply")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *caOut != "" && !*useTLS {
		return errors.New("--ca-out needs --tls: without it there is no CA")
	}
	opts := modelserver.Options{
		Addr:        *addr,
		TLS:         *useTLS,
		Scripts:     modelserver.Builtin(),
		Latency:     *latency,
		MaxRecorded: maxRecorded,
	}
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("reading the key: %w", err)
		}
		opts.Key = strings.TrimSpace(string(b))
		if opts.Key == "" {
			return fmt.Errorf("the key file %s is empty: refusing to serve without the key it was meant to require", *keyFile)
		}
	}
	srv, err := modelserver.Start(opts)
	if err != nil {
		return err
	}
	defer srv.Close()
	if *caOut != "" {
		if err := writeFileAtomic(*caOut, srv.CAPEM()); err != nil {
			return fmt.Errorf("writing the CA: %w", err)
		}
	}
	if *readyFile != "" {
		if err := writeFileAtomic(*readyFile, []byte(srv.URL()+"\n")); err != nil {
			return fmt.Errorf("writing the ready file: %w", err)
		}
	}
	fmt.Fprintf(stderr, "airlock-modelserver: serving %s (models: stand-in, instant)\n", srv.URL())
	<-ctx.Done()
	// Close ends replies still hanging; bound it anyway so a stuck client
	// cannot keep the process from exiting on a signal.
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		return err
	case <-time.After(10 * time.Second):
		return errors.New("timed out closing the server")
	}
}

// writeFileAtomic writes data to path, mode 0644, by a rename, so a reader
// sees the whole file or none.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/airlock/airlock/cmd/airlock/internal/bench"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// Defaults of -n and --warmup with --growth: the 1000 jobs, after
// enough warm-up for airlockd's connections, caches and pools to exist.
const (
	growthJobs   = 1000
	growthWarmup = 10
)

// errGrowth is the error of a growth check that ran and failed: the
// report says why, so main only has to exit non-zero.
var errGrowth = errors.New("growth check failed")

// growthFlags are the bench flags a growth check uses.
type growthFlags struct {
	options              bench.Options
	warmup               int
	metricsURL, pprofURL string
	stateDir             string
	pid                  int
	socket               string
	tcp                  bool
	settle, timeout      time.Duration
	json                 bool
}

// benchGrowth runs a growth check and prints its report.
func benchGrowth(conn airlockv1.BrokerClient, f growthFlags) error {
	if f.metricsURL == "" {
		return errors.New("--growth reads airlockd's goroutines, descriptors and memory from its metrics: set --metrics-url (airlockd --metrics-listen)")
	}
	stateDir, err := growthStateDir(f)
	if err != nil {
		return err
	}
	if f.pprofURL == "" {
		fmt.Fprintln(os.Stderr, "airlock bench: no --pprof-url: the heap is reported, not judged (start airlockd with --pprof)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	rep, err := bench.RunGrowth(ctx, bench.GrowthConfig{
		Broker: conn, Options: f.options, Warmup: f.warmup, MetricsURL: f.metricsURL, PprofURL: f.pprofURL,
		StateDir: stateDir, Settle: f.settle, Progress: os.Stderr,
	})
	if err != nil {
		return err
	}
	if f.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteTable(os.Stdout)
	}
	if err == nil && !rep.Pass() {
		err = errGrowth
	}
	return err
}

// growthStateDir is --state-dir, else the one on the command line of the
// airlockd serving the socket, else the default.
func growthStateDir(f growthFlags) (string, error) {
	if f.stateDir != "" {
		return f.stateDir, nil
	}
	pid := f.pid
	if pid == 0 && !f.tcp {
		var err error
		if pid, err = bench.ListenerPID(f.socket); err != nil {
			return "", fmt.Errorf("airlockd's state dir, where leftovers are counted: %w (set --state-dir)", err)
		}
	}
	if pid == 0 {
		return bench.DefaultStateDir, nil
	}
	return bench.StateDirOf(pid)
}

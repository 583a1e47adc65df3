package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/cmd/airlock/internal/bench"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

const benchUsage = `usage: airlock bench [flags]

Runs N jobs at concurrency C through a running airlockd and, in the same
run and under the same profile, the same job through containerd's Go
client and through raw runc, then prints latency percentiles, jobs per
second, the ratios of Airlock to each baseline, and airlockd's CPU and
memory per sandbox. The baselines need root and airlockd's containerd.

With --task agent it instead runs N agent jobs (the model loop) and N
extract_text jobs under the same profile, which must have a model section,
in rounds that take turns, and reports Airlock's overhead per model turn:
(agent mean - extract_text mean - the model's own time) / turns. Point the
profile at the stand-in model's "instant" model (integration/cmd/
airlock-modelserver), which answers at once, so that what is left is
Airlock's. No baselines run.

With --growth it instead runs N jobs one at a time (default 1000, after 10
warm-up) and checks that they leave airlockd's goroutines, descriptors and
memory, and the host's mounts, job dirs, netns and veths, where they were;
it exits non-zero on a FAIL. It needs --metrics-url, and --pprof-url to
judge the heap.

flags:
`

// benchCmd benchmarks a running broker against its baselines.
func benchCmd(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, benchUsage); fs.PrintDefaults() }
	n := fs.Int("n", 50, "jobs per system")
	c := fs.Int("c", 4, "jobs at once")
	profile := fs.String("profile", "secureclaw", "broker profile; the baselines use its OCI spec and image")
	task := fs.String("task", bench.DefaultTask, "task each job runs")
	schema := fs.String("schema", "", "JSON Schema file for the result (default: one that fits extract_text)")
	mediaType := fs.String("media-type", "", "media type of --content (default: by file extension)")
	warmup := fs.Int("warmup", 2, "unmeasured jobs per system first, one at a time")
	rounds := fs.Int("rounds", 1, "split the jobs into rounds in which the systems take turns")
	interval := fs.Duration("interval", 0, "least time between two jobs' starts, for every system (0: back to back); gives a warm pool time to refill")
	noBaselines := fs.Bool("no-baselines", false, "measure airlockd only: no containerd or runc baseline (no root needed)")
	socket := fs.String("socket", "", "broker unix socket (default $AIRLOCK_SOCKET or "+client.DefaultSocket+")")
	addr := fs.String("addr", "", "broker loopback host:port, instead of the socket")
	target := fs.String("target", "", "gRPC target of several brokers (dns:///NAME:PORT): jobs are balanced over them; measure with --no-baselines")
	tlsCA := fs.String("tls-ca", "", "with --target: CA bundle to verify the brokers with (TLS)")
	tokenFile := fs.String("token-file", "", "bearer token file (default $AIRLOCK_TOKEN_FILE)")
	ctdAddr := fs.String("containerd-address", "", "containerd socket for the baselines (default: the one airlockd uses, from its command line)")
	stateDir := fs.String("state-dir", "", "airlockd's --state-dir, to find its embedded containerd and, with --growth, its leftovers (default: from airlockd's command line, else "+bench.DefaultStateDir+")")
	pid := fs.Int("airlockd-pid", 0, "airlockd's pid, for its CPU and memory (default: the process listening on --socket)")
	metricsURL := fs.String("metrics-url", "", "airlockd's metrics endpoint, e.g. http://127.0.0.1:9464/metrics, for a phase breakdown")
	workDir := fs.String("work-dir", "", "directory for the baselines' bundles (default: the system temp dir)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	growth := fs.Bool("growth", false, "check that N sequential jobs leave no growth in airlockd or on the host, instead of timing them")
	pprofURL := fs.String("pprof-url", "", "with --growth: airlockd's --pprof server, e.g. http://127.0.0.1:6060, to force a GC before each heap sample")
	settle := fs.Duration("settle", bench.DefaultSettle, "with --growth: longest wait before each sample for airlockd's goroutines and descriptors to stop dropping")
	instructions := fs.String("instructions", "", "with --task agent: what each job asks the model (default: a fixed question)")
	var contents, params multi
	fs.Var(&contents, "content", "content file (repeatable; default: a small built-in HTML page)")
	fs.Var(&params, "param", "task parameter key=value (repeatable)")
	_ = fs.Parse(args)
	if fs.NArg() > 0 {
		return fmt.Errorf("bench takes no arguments, got %q", fs.Args())
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *growth {
		if set["c"] && *c != 1 || set["rounds"] && *rounds != 1 {
			return errors.New("--growth runs jobs one at a time: -c and --rounds do not apply")
		}
		if !set["n"] {
			*n = growthJobs
		}
		if !set["warmup"] {
			*warmup = growthWarmup
		}
	}

	if *interval < 0 {
		return errors.New("--interval must not be negative")
	}
	o := bench.Options{N: *n, Concurrency: *c, Profile: *profile, Task: *task, Schema: bench.DefaultSchema, Interval: *interval}
	if *schema != "" {
		b, err := os.ReadFile(*schema)
		if err != nil {
			return err
		}
		o.Schema = string(b)
	} else if *task != bench.DefaultTask {
		// The built-in schema fits extract_text only; another task gets
		// the profile's default (the agent benchmark its own).
		o.Schema = ""
	}
	for _, p := range params {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return fmt.Errorf("--param %q: want key=value", p)
		}
		if o.Params == nil {
			o.Params = map[string]string{}
		}
		o.Params[k] = v
	}
	for _, f := range contents {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		mt := *mediaType
		if mt == "" {
			mt = mediaTypeOf(f)
		}
		o.Content = append(o.Content, &airlockv1.Content{Data: data, MediaType: mt, Source: "file:" + f})
	}

	if *target != "" && (!*noBaselines || *growth) {
		// The baselines and --growth measure the local host's containerd
		// and airlockd; a target is a deployment of several.
		return errors.New("--target measures a deployment: add --no-baselines, and leave out --growth")
	}
	sock := client.Socket(*socket)
	conn, err := client.Endpoint{Socket: sock, Addr: *addr, Target: *target, TLSCA: *tlsCA, TokenFile: client.TokenFile(*tokenFile)}.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	if *task == bench.AgentTask {
		if *growth {
			return errors.New("--growth does not take --task agent")
		}
		return benchAgent(conn.Broker, o, *instructions, *warmup, *rounds, *timeout, *asJSON)
	}
	if *growth {
		return benchGrowth(conn.Broker, growthFlags{
			options: o, warmup: *warmup, metricsURL: *metricsURL, pprofURL: *pprofURL,
			stateDir: *stateDir, pid: *pid, socket: sock, tcp: *addr != "", settle: *settle,
			timeout: *timeout, json: *asJSON,
		})
	}
	if *pid == 0 && *addr == "" && *target == "" {
		if *pid, err = bench.ListenerPID(sock); err != nil {
			fmt.Fprintf(os.Stderr, "airlock bench: airlockd's CPU and memory will not be measured: %v (set --airlockd-pid)\n", err)
		}
	}
	cfg := bench.Config{
		Broker: conn.Broker, Options: o, Warmup: *warmup, Rounds: *rounds, Baselines: !*noBaselines,
		WorkDir: *workDir, BrokerPID: *pid, MetricsURL: *metricsURL, Progress: os.Stderr,
	}
	if cfg.Baselines {
		switch {
		case *ctdAddr != "":
			cfg.ContainerdAddress = *ctdAddr
		case *stateDir != "":
			cfg.ContainerdAddress = bench.EmbeddedContainerd(*stateDir)
		case *pid != 0:
			if cfg.ContainerdAddress, err = bench.ContainerdAddressOf(*pid); err != nil {
				return err
			}
		default:
			cfg.ContainerdAddress = bench.EmbeddedContainerd(bench.DefaultStateDir)
		}
	}

	// Interrupting the benchmark still tears down the sandbox in flight.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteTable(os.Stdout)
}

// benchAgent runs the agent benchmark and prints its report.
func benchAgent(b airlockv1.BrokerClient, o bench.Options, instructions string, warmup, rounds int, timeout time.Duration, asJSON bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rep, err := bench.RunAgent(ctx, bench.AgentConfig{Broker: b, Options: o, Instructions: instructions, Warmup: warmup, Rounds: rounds, Progress: os.Stderr})
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteTable(os.Stdout)
}

//go:build integration

// Package integration runs Airlock end to end on a real containerd: a
// private containerd and the shipped daemon package (cmd/airlockd/server)
// started by TestMain, with the real images, listener, token auth, audit log
// and metrics; and, for crashes and signals, the airlockd binary itself.
package integration

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/cmd/airlockd/server"
	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/egress"
	"github.com/airlock/airlock/sandbox/embedded"
	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/job"
)

// env is the suite's shared world: one containerd, one broker.
var env struct {
	stateDir string
	// taskDir is where the suite's containerd keeps its tasks' bundles,
	// whose root filesystems a lost shim leaves mounted.
	taskDir     string
	address     string
	bin         string
	profileFile string
	canary      string
	ctrd        *containerd.Client
	server      *server.Server
	conn        *client.Conn
	brokerOf    airlockv1.BrokerClient
}

// hostileTasks are served by the test-only hostile image instead of reader.
var hostileTasks = map[string]bool{
	"sleep": true, "env": true, "write_rootfs": true, "echo": true,
	"exit": true, "big_output": true, "symlink_result": true,
	"proc_status": true, "syscalls": true, "alloc": true, "forkbomb": true,
	"attack": true, "escape_checklist": true,
}

// hostileRunner routes the hostile image's tasks to it. Production brokers
// pick the image from the policy only.
type hostileRunner struct{ job.Runner }

func (h hostileRunner) Run(ctx context.Context, j *job.Job) (*job.Outcome, error) {
	if hostileTasks[j.Task] {
		j.Image = "hostile"
	}
	return h.Runner.Run(ctx, j)
}

func TestMain(m *testing.M) {
	if os.Getenv(crashHelperEnv) != "" {
		os.Exit(crashHelper())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// A strict operator umask must not change what the sandbox can read.
	syscall.Umask(0o077)
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration: must run as root (make test does)")
		return 1
	}
	dir, err := os.MkdirTemp("", "airlock-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := footprint.MkdirTraversable(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := setup(dir); err != nil {
		fmt.Fprintln(os.Stderr, "integration setup:", err)
		teardown()
		return 1
	}
	deadBefore, cgroupsBefore := deadShimSockets(), airlockCgroups()
	code := m.Run()
	if err := teardown(); err != nil {
		fmt.Fprintln(os.Stderr, "integration teardown:", err)
		if code == 0 {
			code = 1
		}
	}
	// A shim that was killed leaves its socket; the brokers that killed
	// their shims must have removed them.
	for _, s := range deadShimSockets() {
		if !slices.Contains(deadBefore, s) {
			fmt.Fprintln(os.Stderr, "integration: left behind the socket of a dead shim:", s)
			code = cmp.Or(code, 1)
		}
	}
	// Every broker the suite started has stopped: none may leave a cgroup
	// directory of Airlock's.
	for _, d := range airlockCgroups() {
		if !slices.Contains(cgroupsBefore, d) {
			fmt.Fprintln(os.Stderr, "integration: left behind a cgroup directory:", d)
			code = cmp.Or(code, 1)
		}
	}
	return code
}

// airlockCgroups lists the cgroup directories named for Airlock, brokers'
// and benchmarks', in every hierarchy.
func airlockCgroups() []string {
	var out []string
	for _, pattern := range []string{"/sys/fs/cgroup/*/airlock*", "/sys/fs/cgroup/airlock*"} {
		dirs, _ := filepath.Glob(pattern)
		out = append(out, dirs...)
	}
	return out
}

// deadShimSockets lists the runc shim sockets that nothing listens on.
func deadShimSockets() []string {
	var dead []string
	entries, _ := os.ReadDir("/run/containerd/s")
	for _, e := range entries {
		p := filepath.Join("/run/containerd/s", e.Name())
		c, err := net.DialTimeout("unix", p, time.Second)
		if err == nil {
			c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			dead = append(dead, p)
		}
	}
	return dead
}

var stops []func() error

func teardown() error {
	var first error
	for i := len(stops) - 1; i >= 0; i-- {
		if err := stops[i](); err != nil && first == nil {
			first = err
		}
	}
	stops = nil
	return first
}

func setup(dir string) error {
	ctx := context.Background()
	bin := filepath.Join(dir, "bin")
	env.bin = bin
	for name, pkg := range map[string]string{"airlock-agent": "../cmd/airlock-agent", "hostile": "./hostile", "airlockd": "../cmd/airlockd", "airlock": "../cmd/airlock"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bin, name), pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", name, err, out)
		}
	}
	// The canary sits in the broker's own environment: a sandbox that
	// inherited anything would show it.
	env.canary = "canary-" + randHex(16)
	os.Setenv("AIRLOCK_TEST_CANARY", env.canary)

	env.taskDir = filepath.Join(dir, "containerd", "state", "io.containerd.runtime.v2.task")
	d, err := embedded.Start(ctx, filepath.Join(dir, "containerd"))
	if err != nil {
		return err
	}
	stops = append(stops, func() error { return d.Stop(ctx) })
	// Whatever a failed test left is reaped before containerd stops, so a
	// red run does not leave sandboxes running on the machine.
	stops = append(stops, func() error {
		r, err := sandbox.New(ctx, sandbox.Config{Address: d.Address(), StateDir: filepath.Join(dir, "state")})
		if err != nil {
			return err
		}
		return r.Close()
	})

	profileFile, err := startServers(dir)
	env.profileFile = profileFile
	stops = append(stops, func() error { stopServers(); return nil })
	if err != nil {
		return err
	}
	env.address = d.Address()
	egressProfile, err := os.ReadFile(profileFile)
	if err != nil {
		return err
	}
	srv, conn, err := startServer(dir, map[string]string{filepath.Base(profileFile): string(egressProfile)}, func(o *server.Options) {
		o.MetricsListen = "127.0.0.1:0"
		// Dev mode only for the test profile's plain-http service upstream.
		o.Dev = true
		o.Egress = egress.Config{Resolver: testResolver{}}
		o.ExtraImages = []images.Spec{images.Hostile(filepath.Join(bin, "hostile"))}
		o.WrapRunner = func(r job.Runner) job.Runner { return hostileRunner{r} }
		for name := range hostileTasks {
			o.ExtraTasks = append(o.ExtraTasks, job.TaskSpec{Name: name, AnyParams: true})
		}
	})
	if err != nil {
		return err
	}
	env.server, env.conn, env.brokerOf = srv, conn, conn.Broker
	env.stateDir = srv.Options().StateDir

	env.ctrd, err = containerd.New(d.Address(), containerd.WithDefaultNamespace(footprint.Namespace))
	if err != nil {
		return err
	}
	stops = append(stops, env.ctrd.Close)
	return nil
}

// startServer starts an airlockd of the shipped package in dir on the
// suite's containerd, as an operator would: a token file, and a policy dir
// with the shipped profiles and extra (file name to YAML). edit changes
// the options before the start. TestMain's teardown stops it.
func startServer(dir string, extra map[string]string, edit func(*server.Options)) (*server.Server, *client.Conn, error) {
	policyDir := filepath.Join(dir, "policies")
	if err := os.CopyFS(policyDir, policies.FS); err != nil {
		return nil, nil, err
	}
	for name, body := range extra {
		if err := os.WriteFile(filepath.Join(policyDir, name), []byte(body), 0o600); err != nil {
			return nil, nil, err
		}
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(randHex(32)), 0o600); err != nil {
		return nil, nil, err
	}
	o := server.Options{
		Socket:            filepath.Join(dir, "airlock.sock"),
		TokenFile:         tokenFile,
		StateDir:          filepath.Join(dir, "state"),
		ContainerdAddress: env.address,
		AgentBinary:       filepath.Join(env.bin, "airlock-agent"),
		Busybox:           "/bin/busybox",
		PolicyDir:         policyDir,
		DefaultProfile:    "secureclaw",
		MaxConcurrent:     8,
		MaxQueue:          16,
		JobRetention:      time.Hour,
		RetainJobs:        broker.DefaultRetainJobs,
		ApprovalTimeout:   broker.DefaultApprovalTimeout,
		DrainGrace:        30 * time.Second,
		ProxyPort:         sandbox.DefaultProxyPort,
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	edit(&o)
	ctx := context.Background()
	srv, err := server.Start(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, func() error { return srv.Shutdown(ctx) })
	conn, err := client.Dial(srv.Addr().String(), "", tokenFile)
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, conn.Close)
	return srv, conn, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

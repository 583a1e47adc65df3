//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airlock/airlock/broker/client"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// daemon is a real airlockd process, started from its binary with the
// hostile agent as its agent binary, so every image it builds carries the
// hostile sub-agent. The corpus runs against it over its real socket.
type daemonProc struct {
	dir, sock, tokenFile, auditLog string
	canary, canaryFile             string
	token                          string
	metricsPort                    int
	// args are extra airlockd flags, for the next start.
	args []string
	// listen, when set, is the loopback host:port airlockd serves on
	// instead of its socket.
	listen string
	// reference runs the reference airlock-agent, as shipped, instead of
	// the hostile one.
	reference bool
	cmd       *exec.Cmd
	exited    chan struct{}
	log       *bytes.Buffer
	conn      *client.Conn
}

// sharedDaemon is an airlockd the suite starts on first use and stops at
// its end.
type sharedDaemon struct {
	once sync.Once
	d    *daemonProc
	err  error
}

func (s *sharedDaemon) get(t *testing.T, what string, start func() (*daemonProc, error)) *daemonProc {
	t.Helper()
	s.once.Do(func() {
		s.d, s.err = start()
		if s.d != nil {
			stops = append(stops, s.d.stop)
		}
	})
	if s.err != nil {
		t.Fatalf("%s: %v", what, s.err)
	}
	return s.d
}

var theDaemon, theRunsc sharedDaemon

// airlockd returns the suite's airlockd, starting it on first use.
func airlockd(t *testing.T) *daemonProc {
	t.Helper()
	return theDaemon.get(t, "airlockd", func() (*daemonProc, error) { return startDaemon() })
}

// runscDaemon returns the suite's airlockd whose profiles all run on
// runsc, egresstest included, starting it on first use.
func runscDaemon(t *testing.T) *daemonProc {
	t.Helper()
	return theRunsc.get(t, "airlockd on runsc", func() (*daemonProc, error) {
		return startDaemonOn("runsc", "--egress-pool", "10.216.0.0/16")
	})
}

func startDaemon(args ...string) (*daemonProc, error) { return startDaemonOn("", args...) }

// startDaemonOn starts an airlockd whose shipped profiles run on the OCI
// runtime named, or on what they say when it is "".
func startDaemonOn(runtime string, args ...string) (*daemonProc, error) {
	d, err := newDaemon(runtime, args...)
	if err != nil {
		return nil, err
	}
	if err := d.start(); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// newDaemon prepares an airlockd's dir (token, canary, policies) and its
// metrics port, without starting it: a caller may change it first.
func newDaemon(runtime string, args ...string) (_ *daemonProc, retErr error) {
	dir, err := os.MkdirTemp("", "airlockd-it-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	d := &daemonProc{args: args, dir: dir, sock: filepath.Join(dir, "airlock.sock"), tokenFile: filepath.Join(dir, "token"),
		auditLog: filepath.Join(dir, "audit.jsonl"), canaryFile: filepath.Join(dir, "canary.txt")}
	d.token = randHex(32)
	d.canary = "canary-" + randHex(16)
	if err := os.WriteFile(d.tokenFile, []byte(d.token), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(d.canaryFile, []byte(d.canary), 0o600); err != nil {
		return nil, err
	}
	policyDir := filepath.Join(dir, "policies")
	if err := os.MkdirAll(policyDir, 0o755); err != nil {
		return nil, err
	}
	for _, name := range []string{"vanilla.yaml", "secureclaw.yaml", "ironclaw.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "policies", name))
		if err != nil {
			return nil, err
		}
		if runtime != "" {
			b = regexp.MustCompile(`(?m)^(\s+runtime:) \w+`).ReplaceAll(b, []byte("${1} "+runtime))
		}
		if runtime == "runsc" {
			// gVisor applies only the strict filter (docs/runtimes.md).
			b = regexp.MustCompile(`(?m)^(\s+seccomp:) \w+`).ReplaceAll(b, []byte("${1} strict"))
		}
		if err := os.WriteFile(filepath.Join(policyDir, name), b, 0o600); err != nil {
			return nil, err
		}
	}
	if err := copyFile(env.profileFile, filepath.Join(policyDir, "egresstest.yaml")); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d.metricsPort = l.Addr().(*net.TCPAddr).Port
	l.Close()
	return d, nil
}

// start starts (or restarts) airlockd on the daemon's dir.
func (d *daemonProc) start() error {
	d.log = &bytes.Buffer{}
	d.cmd = exec.Command(filepath.Join(env.bin, "airlockd"), append(d.flags(), d.args...)...)
	// The canary sits in airlockd's own environment.
	d.cmd.Env = append(os.Environ(), "AIRLOCK_CANARY="+d.canary, "AIRLOCK_TEST_SERVICE_KEY="+world.serviceKey)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		return err
	}
	d.exited = make(chan struct{})
	go func(exited chan struct{}) { d.cmd.Wait(); close(exited) }(d.exited)
	if err := d.waitReady(); err != nil {
		return fmt.Errorf("%w\n%s", err, d.log.String())
	}
	return nil
}

// flags are the airlockd flags every start of the daemon uses.
func (d *daemonProc) flags() []string {
	f := []string{
		"--state-dir", filepath.Join(d.dir, "state"),
		"--socket", d.sock,
		"--token-file", d.tokenFile,
	}
	if d.listen != "" {
		f = append(f, "--listen", d.listen)
	}
	if !d.reference {
		f = append(f, "--agent-binary", filepath.Join(env.bin, "hostile"),
			"--agent-tasks", strings.Join(slices.Sorted(maps.Keys(hostileTasks)), ","))
	}
	return append(f,
		"--policy-dir", filepath.Join(d.dir, "policies"),
		"--audit-log", d.auditLog,
		"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", d.metricsPort),
		"--egress-pool", "10.214.0.0/16",
		"--max-concurrent", "24", "--max-queue", "64",
		"--dev", // the test profile's service upstream is plain http
	)
}

// kill9 kills airlockd the hard way: no cleanup runs.
func (d *daemonProc) kill9() {
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}

func (d *daemonProc) waitReady() error {
	exited := false
	answered := waitFor(60*time.Second, func() bool {
		select {
		case <-d.exited:
			exited = true
			return true
		default:
		}
		if _, err := os.Stat(d.sock); err != nil && d.listen == "" {
			return false
		}
		conn, err := client.Dial(d.sock, d.listen, d.tokenFile)
		if err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := conn.Broker.ListProfiles(ctx, &airlockv1.ListProfilesRequest{}); err != nil {
			conn.Close()
			return false
		}
		d.conn = conn
		return true
	})
	switch {
	case exited:
		return fmt.Errorf("airlockd exited")
	case !answered:
		return fmt.Errorf("airlockd did not answer within 60s")
	}
	return nil
}

// stop ends airlockd with SIGTERM, as an operator would.
func (d *daemonProc) stop() error {
	if d.conn != nil {
		d.conn.Close()
	}
	if d.exited != nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(60 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
	}
	return os.RemoveAll(d.dir)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

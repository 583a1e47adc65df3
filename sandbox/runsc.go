package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock/airlock/policies/policy"
)

// runscFlags are the flags every runsc command of p's sandboxes takes:
//   - the network: the sentry never uses the host's. A job without network
//     gets none, and an allowlist job gets gVisor's own network stack on
//     the interfaces of the job's network namespace, where the egress
//     rules are;
//   - the platform;
//   - the profile's seccomp filter, which gVisor applies to the agent
//     inside the sandbox only when told to;
//   - host Unix sockets: none, but for a job with a tool gateway, whose
//     socket the broker binds into the sandbox, those the agent opens.
func runscFlags(p *policy.Profile, platform string) []string {
	net := "none"
	if p.Network.Mode == policy.NetworkAllowlist {
		net = "sandbox"
	}
	uds := "none"
	if p.ToolGateway() {
		uds = "open"
	}
	return []string{"--network=" + net, "--platform=" + platform, "--oci-seccomp", "--host-uds=" + uds}
}

// sentryPids is how many tasks gVisor's own processes take in the job's
// pids cgroup: the sentry's and the gofer's threads count there beside the
// agent's (under ptrace, each of the agent's threads is a host thread of
// the sentry's), so a runsc sandbox's limit is the profile's plus these.
const sentryPids = 128

// withPidsHeadroom raises the pids limit by n.
func withPidsHeadroom(n int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if s.Linux != nil && s.Linux.Resources != nil && s.Linux.Resources.Pids != nil && s.Linux.Resources.Pids.Limit > 0 {
			s.Linux.Resources.Pids.Limit += n
		}
		return nil
	}
}

// kvmDevice is where the host serves KVM; tests point it elsewhere.
var kvmDevice = "/dev/kvm"

// platforms caches what runscPlatform found for the empty platform.
var platforms struct {
	once sync.Once
	kvm  bool
	why  string
}

// runscPlatform returns the platform a runsc sandbox runs on: the one the
// profile names, or, when it names none, kvm where a probe finds it
// works and ptrace elsewhere. A profile that names kvm on a host without
// it is refused; picking ptrace for a profile that names none is said once
// in the log, and is no weaker a boundary.
func runscPlatform(named, runsc string, log *slog.Logger) (string, error) {
	switch named {
	case policy.PlatformPtrace:
		return named, nil
	case policy.PlatformKVM:
		if err := probeKVM(runsc); err != nil {
			return "", fmt.Errorf("runtime runsc: isolation.platform kvm: %w", err)
		}
		return named, nil
	}
	platforms.once.Do(func() {
		if err := probeKVM(runsc); err != nil {
			platforms.why = err.Error()
			log.Info("runsc sandboxes run on the ptrace platform", "kvm", platforms.why)
			return
		}
		platforms.kvm = true
	})
	if platforms.kvm {
		return policy.PlatformKVM, nil
	}
	return policy.PlatformPtrace, nil
}

// kvmProbeTimeout bounds the probe: on a host that is itself a virtual
// machine whose /dev/kvm does not serve nested guests, a kvm sandbox
// hangs. One that works runs /bin/true in well under a second; a probe cut
// short on a loaded host costs speed, not safety, since ptrace is no
// weaker a boundary. Every airlockd start with a runsc profile that names
// no platform waits this long on such a host.
var kvmProbeTimeout = 5 * time.Second

// probeKVM runs a sandbox that does nothing on the kvm platform.
func probeKVM(runsc string) error {
	if _, err := os.Stat(kvmDevice); err != nil {
		return fmt.Errorf("%s is absent: this host does not serve KVM", kvmDevice)
	}
	ctx, cancel := context.WithTimeout(context.Background(), kvmProbeTimeout)
	defer cancel()
	root, err := os.MkdirTemp("", "airlock-kvm-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	// runsc do makes its bundle in TMPDIR, and a killed one leaves it
	// there: it goes in the probe's own directory, removed above.
	tmp := filepath.Join(root, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, runsc, "--root", filepath.Join(root, "state"), "--network=none", "--platform=kvm", "do", "/bin/true")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	// A broker killed mid-probe takes the probe with it: runsc do's
	// sandbox is attached to runsc do, which dies with the thread that
	// started it, held for the probe.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("a sandbox on kvm did not finish within %s (a virtual machine without nested virtualization?)", kvmProbeTimeout)
	}
	if err != nil {
		return fmt.Errorf("a sandbox on kvm failed: %v: %.200s", err, out)
	}
	return nil
}

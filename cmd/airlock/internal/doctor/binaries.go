package doctor

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies/policy"
)

// commandTimeout bounds a --version call: a wedged binary must not wedge
// the doctor.
const commandTimeout = 5 * time.Second

// minContainerd is the oldest containerd Airlock is tested against.
var minContainerd = [2]int{1, 6}

// checkContainerd finds containerd and its runc shim, which airlockd starts
// as its private daemon, and reports the version; or, with
// --containerd-address, checks that the containerd there answers.
func checkContainerd(ctx context.Context, e *env) result {
	if e.cfg.ContainerdAddress != "" {
		return checkContainerdAddress(e.cfg.ContainerdAddress)
	}
	var f findings
	const fix = "install containerd 1.6 or later (Debian: apt-get install containerd)"
	if _, err := exec.LookPath("containerd"); err != nil {
		f.add(Fail, "containerd is not on PATH", fix)
		return f.result("")
	}
	if _, err := exec.LookPath("containerd-shim-runc-v2"); err != nil {
		f.add(Fail, "containerd-shim-runc-v2 is not on PATH, so no task can start", fix)
	}
	out, err := command(ctx, "containerd", "--version")
	if err != nil {
		f.add(Fail, fmt.Sprintf("containerd --version: %v", err), fix)
		return f.result("")
	}
	// "containerd github.com/containerd/containerd 1.6.20~ds1 <revision>"
	fields := strings.Fields(firstLine(out))
	version := "unknown"
	if len(fields) >= 3 {
		version = strings.TrimPrefix(fields[2], "v")
	}
	if mm, ok := majorMinor(version); !ok {
		f.add(Warn, "cannot parse containerd version from "+strconv.Quote(firstLine(out)), "check that containerd on PATH is containerd 1.6 or later")
	} else if mm[0] < minContainerd[0] || mm[0] == minContainerd[0] && mm[1] < minContainerd[1] {
		f.add(Fail, fmt.Sprintf("containerd %s is older than %d.%d", version, minContainerd[0], minContainerd[1]), fix)
	}
	return f.result("containerd " + version)
}

// checkContainerdAddress checks the containerd airlockd is told to use
// instead of its own: a socket that accepts a connection. Only a connect:
// the doctor speaks no containerd API, so as not to link its client.
func checkContainerdAddress(addr string) result {
	var f findings
	path := strings.TrimPrefix(addr, "unix://")
	st, err := os.Stat(path)
	switch {
	case err != nil:
		f.add(Fail, fmt.Sprintf("--containerd-address %s: %v", addr, err), "start that containerd, or leave --containerd-address unset for airlockd's own")
	case st.Mode()&os.ModeSocket == 0:
		f.add(Fail, fmt.Sprintf("--containerd-address %s is not a socket (mode %v)", addr, st.Mode()), "give containerd's socket, such as /run/containerd/containerd.sock")
	default:
		c, err := net.DialTimeout("unix", path, commandTimeout)
		if err != nil {
			f.add(Fail, fmt.Sprintf("--containerd-address %s does not answer: %v", addr, err), "start that containerd, or run airlock doctor as root")
		} else {
			c.Close()
		}
	}
	return f.result("containerd at " + addr + " answers; airlockd uses it rather than starting its own")
}

// checkRunc finds runc and reports its version. A runc built without
// libseccomp cannot apply the profiles' seccomp filters.
func checkRunc(ctx context.Context, _ *env) result {
	var f findings
	const fix = "install runc (Debian: apt-get install runc)"
	if _, err := exec.LookPath("runc"); err != nil {
		f.add(Fail, "runc is not on PATH", fix)
		return f.result("")
	}
	out, err := command(ctx, "runc", "--version")
	if err != nil {
		f.add(Fail, fmt.Sprintf("runc --version: %v", err), fix)
		return f.result("")
	}
	// "runc version 1.1.5+ds1\ncommit: ...\nspec: 1.0.2-dev\ngo: ...\nlibseccomp: 2.5.4"
	version := strings.TrimPrefix(firstLine(out), "runc version ")
	detail := "runc " + version
	seccomp := ""
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "libseccomp:"); ok {
			seccomp = strings.TrimSpace(v)
		}
	}
	if seccomp == "" {
		f.add(Warn, detail+" reports no libseccomp, so it may not apply the profiles' seccomp filters", "install a runc built with seccomp support (the distribution's package is)")
	} else {
		detail += ", libseccomp " + seccomp
	}
	return f.result(detail)
}

// checkRuntimes checks that the OCI runtime of every profile is
// installed: airlockd refuses to start without it, and never runs a
// profile on a weaker one.
func checkRuntimes(_ context.Context, e *env) result {
	var f findings
	if e.profiles == nil {
		return result{ok: true, detail: "the profiles did not load; profiles.invariants says why"}
	}
	used := map[string][]string{}
	var gvisorNet []string
	for _, p := range e.profiles.All() {
		rt := cmp.Or(p.Isolation.Runtime, policy.RuntimeRunc)
		used[rt] = append(used[rt], p.Name)
		if rt == policy.RuntimeRunsc && p.Network.Mode == policy.NetworkAllowlist {
			gvisorNet = append(gvisorNet, p.Name)
		}
	}
	// runsc starts an allowlist job's sandbox in a mount namespace of its
	// own (docs/runtimes.md), which util-linux's unshare and mount make.
	if len(gvisorNet) > 0 {
		for _, b := range []string{"unshare", "mount"} {
			if _, err := exec.LookPath(b); err != nil {
				f.add(Fail, fmt.Sprintf("profiles %s give gVisor a network, which needs %s, not on PATH", strings.Join(gvisorNet, ", "), b), "apt-get install util-linux mount")
			}
		}
	}
	var names []string
	for _, rt := range slices.Sorted(maps.Keys(used)) {
		need := policy.RuntimeNeeds[rt]
		names = append(names, rt)
		if _, err := exec.LookPath(need.Binary); err != nil {
			f.add(Fail, fmt.Sprintf("profiles %s run on %s, but %s is not on PATH, so airlockd will not start", strings.Join(used[rt], ", "), rt, need.Binary), need.Install)
		}
	}
	return f.result("installed: " + strings.Join(names, ", "))
}

// checkBusybox checks the busybox that goes into each tools image: it runs
// alone in the image, so it must be static.
func checkBusybox(_ context.Context, e *env) result {
	var f findings
	users, known := e.needsTools()
	if known && len(users) == 0 {
		return result{ok: true, detail: "not needed: no profile allows exec"}
	}
	// Unknown profiles only warn: profiles.invariants already fails them.
	sev, why := Warn, "the profiles did not load; it matters if one allows exec"
	if known {
		sev, why = Fail, "profiles "+strings.Join(users, ", ")+" allow exec and need it for their tools image"
	}
	if err := images.CheckStatic(e.cfg.Busybox); err != nil {
		f.add(sev, fmt.Sprintf("%v; %s", err, why), "apt-get install busybox-static, or pass --busybox with a static busybox")
	}
	return f.result(e.cfg.Busybox + " is static; " + why)
}

// checkAgent checks the agent binary that runs in every sandbox: it must
// be static for the same reason as busybox.
func checkAgent(_ context.Context, e *env) result {
	var f findings
	path := e.cfg.AgentBinary
	if path == "" {
		path = findAgent()
	}
	if path == "" {
		f.add(Warn, "airlock-agent not found next to this command or on PATH; airlockd looks next to itself", "pass --agent-binary with the path airlockd uses")
		return f.result("")
	}
	if err := images.CheckStatic(path); err != nil {
		f.add(Fail, err.Error(), "build it with CGO_ENABLED=0 go build ./cmd/airlock-agent, and pass --agent-binary")
	}
	return f.result(path + " is static")
}

// findAgent looks where an installation usually puts the agent: next to
// the airlock command (airlockd's own default is next to airlockd), then
// on PATH.
func findAgent() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "airlock-agent")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	if p, err := exec.LookPath("airlock-agent"); err == nil {
		return p
	}
	return ""
}

// command runs name with args and returns its output, bounded in time.
func command(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(firstLine(out.String())))
	}
	return out.String(), nil
}

// majorMinor parses the leading "X.Y" of a version such as "1.6.20~ds1".
func majorMinor(v string) ([2]int, bool) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return [2]int{}, false
	}
	maj, err1 := strconv.Atoi(parts[0])
	minor := parts[1]
	if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = minor[:i]
	}
	mn, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return [2]int{}, false
	}
	return [2]int{maj, mn}, true
}

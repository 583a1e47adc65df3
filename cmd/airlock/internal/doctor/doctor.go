// Package doctor checks a host and an airlockd configuration before (or
// while) the broker runs: kernel features, containerd and runc, the state
// dir and socket permissions, the bind policy, token strength and storage,
// the profiles' invariants, the egress pool, and resources a broker that
// no longer runs left behind. It tells those from a running broker's by
// the state-dir lock each airlockd holds and the instance ID its
// resources are named with.
//
// Every check has a stable id (IDs lists them) so that scripts and
// monitoring can key on it, a severity, and a fix hint a person can act
// on. Checks only read: the doctor never changes the host, so it is safe
// to run against a live broker.
package doctor

import (
	"context"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/airlock/airlock/broker/client"
	airlockresult "github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
)

// Severity says how much a check that did not pass matters.
type Severity string

// Severities, from harmless to blocking. Only Fail makes Summary count a
// check, and so makes `airlock doctor` exit non-zero.
const (
	// Info is worth knowing and needs no action.
	Info Severity = "info"
	// Warn weakens the deployment or will bite later, but airlockd runs.
	Warn Severity = "warn"
	// Fail means airlockd refuses to start, a job cannot be confined as
	// its profile says, or a secret is exposed.
	Fail Severity = "fail"
)

// rank orders severities so that a check with several findings reports
// the worst.
func (s Severity) rank() int {
	switch s {
	case Fail:
		return 2
	case Warn:
		return 1
	}
	return 0
}

// Check is the outcome of one check.
type Check struct {
	// ID is stable across releases: scripts match on it.
	ID string `json:"id"`
	// Title says what was checked, in a few words.
	Title string `json:"title"`
	// Severity is how much a failure matters; on a check that passed it is
	// Info.
	Severity Severity `json:"severity"`
	// OK is true when nothing needs attention.
	OK bool `json:"ok"`
	// Detail says what was found. It never holds a secret.
	Detail string `json:"detail"`
	// Fix says what to do about it; empty when OK.
	Fix string `json:"fix,omitempty"`
}

// DefaultStateDir is airlockd's --state-dir default.
const DefaultStateDir = "/var/lib/airlock"

// DefaultBusybox is airlockd's --busybox default.
const DefaultBusybox = "/bin/busybox"

// Config is the airlockd configuration to check, field for field the
// flags airlockd is (or will be) started with. Empty fields mean
// airlockd's defaults, except the token files: those the caller resolves
// ($AIRLOCK_TOKEN_FILE), since an unset one means "not configured".
type Config struct {
	// StateDir is airlockd's --state-dir; empty means DefaultStateDir.
	StateDir string
	// Socket is the unix socket airlockd serves on; empty means
	// client.Socket("").
	Socket string
	// Listen is airlockd's --listen host:port; empty means the socket.
	Listen string
	// AllowRemote is airlockd's --allow-remote.
	AllowRemote bool
	// TLSCert, TLSKey and TLSClientCA are airlockd's --tls-* files.
	TLSCert, TLSKey, TLSClientCA string
	// TokenFile is airlockd's --token-file.
	TokenFile string
	// TokensFile is airlockd's --tokens file of named token references.
	TokensFile string
	// WebhookTokenFile holds the token the agent side (OpenClaw's hooks)
	// authenticates webhooks with, if there is one; it must not be the
	// gateway's token.
	WebhookTokenFile string
	// PolicyDir is airlockd's --policy-dir; empty means the shipped
	// profiles.
	PolicyDir string
	// DefaultProfile is airlockd's --default-profile; empty means
	// secureclaw.
	DefaultProfile string
	// Dev is airlockd's --dev, which lets development-only settings load.
	Dev bool
	// Busybox is airlockd's --busybox; empty means DefaultBusybox.
	Busybox string
	// AgentBinary is airlockd's --agent-binary; empty means airlock-agent
	// next to this executable or on PATH.
	AgentBinary string
	// ContainerdAddress is airlockd's --containerd-address; empty means
	// airlockd starts a private containerd under the state dir.
	ContainerdAddress string
	// EgressPool is airlockd's --egress-pool; the zero prefix means
	// netns.DefaultPrefix.
	EgressPool netip.Prefix
	// Pools is airlockd's --pool: warm pool sizes by profile name.
	Pools map[string]int
	// MetricsListen and PprofListen are airlockd's --metrics-listen and
	// --pprof; empty serves none.
	MetricsListen, PprofListen string
	// UpstreamCA is airlockd's --upstream-ca.
	UpstreamCA string

	// owner is the uid that must own the state dir and socket. It is
	// root, as airlockd runs as root; tests running unprivileged set their
	// own uid.
	owner int
}

func (c Config) withDefaults() Config {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Socket == "" {
		c.Socket = client.Socket("")
	}
	if c.Busybox == "" {
		c.Busybox = DefaultBusybox
	}
	return c
}

// env is what several checks need, worked out once before they run.
type env struct {
	cfg Config
	// profiles is nil when they did not load.
	profiles *policy.Set
	// profilesErr is why they did not load.
	profilesErr error
	// tokens are the gateway tokens the configuration names, and
	// tokensErr why the tokens file could not be read.
	tokens    []tokenSource
	tokensErr error
	// owners tells a running broker's resources from a dead one's.
	owners *owners
}

// needsUserNS reports which profiles map users into a user namespace;
// known is false when the profiles did not load, and callers then warn
// rather than fail, since the fixed profiles may not need one.
func (e *env) needsUserNS() (names []string, known bool) {
	if e.profiles == nil {
		return nil, false
	}
	for _, p := range e.profiles.All() {
		if p.ReachesAsNobody() {
			names = append(names, p.Name)
		}
	}
	return names, true
}

// needsTools reports which profiles allow exec, and so need busybox for a
// tools image; known is as for needsUserNS.
func (e *env) needsTools() (names []string, known bool) {
	if e.profiles == nil {
		return nil, false
	}
	for _, p := range e.profiles.All() {
		if p.Image() != policy.ImageReader {
			names = append(names, p.Name)
		}
	}
	return names, true
}

// check is one entry of the catalog.
type check struct {
	id, title string
	run       func(context.Context, *env) result
}

// result is what a check function found; Run adds the id and title.
type result struct {
	sev    Severity
	ok     bool
	detail string
	fix    string
}

// catalog is every check, in report order. The ids are a public contract:
// add new ones, never rename.
var catalog = []check{
	{"kernel.namespaces", "kernel namespaces", checkNamespaces},
	{"kernel.userns", "user namespaces", checkUserNS},
	{"kernel.cgroups", "cgroup controllers", checkCgroups},
	{"kernel.seccomp", "seccomp filters", checkSeccomp},
	{"kernel.nftables", "nftables", checkNftables},
	{"bin.containerd", "containerd", checkContainerd},
	{"bin.runc", "runc", checkRunc},
	{"bin.runtimes", "the profiles' OCI runtimes", checkRuntimes},
	{"bin.busybox-static", "static busybox for tools images", checkBusybox},
	{"bin.airlock-agent", "static airlock-agent", checkAgent},
	{"statedir.perms", "state dir permissions", checkStateDir},
	{"statedir.lock", "broker on the state dir", checkStateDirLock},
	{"socket.mode", "broker socket mode", checkSocket},
	{"bind.listen", "bind address", checkBind},
	{"bind.metrics", "metrics and pprof listeners", checkDebugListeners},
	{"tls.files", "TLS certificate and key", checkTLS},
	{"tls.upstream-ca", "CAs for https service upstreams", checkUpstreamCA},
	{"token.strength", "token strength", checkTokenStrength},
	{"token.file-mode", "token file permissions", checkTokenFileMode},
	{"tokens.literal", "literal tokens in config", checkLiteralTokens},
	{"token.webhook-distinct", "webhook token distinct from gateway token", checkWebhookDistinct},
	{"profiles.invariants", "profile invariants", checkProfiles},
	{"net.egress-pool", "egress address pool", checkEgressPool},
	{"leftovers.netns", "leftover network namespaces", checkLeftoverNetns},
	{"leftovers.veth", "leftover veth links", checkLeftoverVeth},
	{"leftovers.mounts", "leftover job mounts", checkLeftoverMounts},
	{"leftovers.cgroups", "leftover cgroups", checkLeftoverCgroups},
}

// IDs returns every check id in report order.
func IDs() []string {
	out := make([]string, len(catalog))
	for i, c := range catalog {
		out[i] = c.id
	}
	return out
}

// Run runs every check against cfg and the host, concurrently since most
// wait on files or child processes, and returns them in IDs order. It
// only reads; ctx bounds the child processes and netlink calls.
func Run(ctx context.Context, cfg Config) []Check {
	e := &env{cfg: cfg.withDefaults()}
	var pfs fs.FS = policies.FS
	if e.cfg.PolicyDir != "" {
		pfs = os.DirFS(e.cfg.PolicyDir)
	}
	e.profiles, e.profilesErr = policy.Load(pfs, policy.WithDevMode(e.cfg.Dev), policy.WithSchemaCheck(airlockresult.CheckSchema))
	if e.profilesErr != nil {
		e.profiles = nil
	}
	e.tokens, e.tokensErr = gatewayTokens(e.cfg)
	e.owners = readOwners(e.cfg.StateDir)

	out := make([]Check, len(catalog))
	var wg sync.WaitGroup
	for i, c := range catalog {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := c.run(ctx, e)
			if r.ok {
				r.sev, r.fix = Info, ""
			}
			out[i] = Check{ID: c.id, Title: c.title, Severity: r.sev, OK: r.ok, Detail: r.detail, Fix: r.fix}
		}()
	}
	wg.Wait()
	return out
}

// Summary returns how many checks failed with severity Fail.
func Summary(checks []Check) (failed int) {
	for _, c := range checks {
		if !c.OK && c.Severity == Fail {
			failed++
		}
	}
	return failed
}

// findings collects the problems of one check, so that it reports all of
// them at once with the worst severity.
type findings struct {
	sev    Severity
	detail []string
	fix    []string
}

// add records a problem; an empty fix adds none.
func (f *findings) add(sev Severity, detail, fix string) {
	if sev.rank() > f.sev.rank() || f.sev == "" {
		f.sev = sev
	}
	f.detail = append(f.detail, detail)
	if fix != "" {
		if !slices.Contains(f.fix, fix) {
			f.fix = append(f.fix, fix)
		}
	}
}

// result returns a failing result of the problems found, or a passing one
// saying okDetail when there were none.
func (f *findings) result(okDetail string) result {
	if len(f.detail) == 0 {
		return result{sev: Info, ok: true, detail: okDetail}
	}
	return result{sev: f.sev, detail: strings.Join(f.detail, "; "), fix: strings.Join(f.fix, "; ")}
}

// absPath is filepath.Abs that keeps the input when it cannot resolve.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// Package policy loads, validates and resolves the per-profile sandbox
// policies that ops tune in policies/*.yaml.
package policy

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/airlock/airlock/images/imageref"
)

// Image names the sandbox images a profile can select.
const (
	// ImageReader is the agent alone, with no shell: for profiles without exec.
	ImageReader = "reader"
	// ImageTools adds busybox applets, so it is chosen only when exec is allowed.
	ImageTools = "tools"
)

// Profile is one resolved, validated policy. The broker treats a *Profile as
// immutable once Load returns it: jobs share it, and the hash in every
// response must describe exactly what was enforced. Change a copy made by
// Clone or Tighten instead.
//
// Some guarantees are not fields, so that no profile can lift them:
//   - no credentials in the sandbox: there is no field for environment,
//     mounts or secrets, and a Service's secret reaches only the egress
//     proxy, which adds it on the way out;
//   - no host network, host PID or host IPC namespace, and never privileged
//     mode: the YAML keys isolation.hostNetwork, hostPID, hostIPC and
//     privileged exist only to be refused when true;
//   - allowInsecureAuth is always false, and a profile saying otherwise does
//     not load;
//   - uid and gid 0 are refused, and exec.security full and
//     isolation.noNewPrivileges false load only in development mode.
type Profile struct {
	// Name is the file name without .yaml.
	Name string `json:"name"`
	// Extends is the profile this one inherits from, if any.
	Extends string `json:"extends,omitempty"`
	// Description is free text for operators.
	Description string    `json:"description,omitempty"`
	Tools       Tools     `json:"tools"`
	Exec        Exec      `json:"exec"`
	Network     Network   `json:"network"`
	Limits      Limits    `json:"limits"`
	Isolation   Isolation `json:"isolation"`
	Result      Result    `json:"result"`
	// Model is the model a model-driven task (the agent task) talks to;
	// nil when the profile has none, and then no job may run that task.
	Model *Model `json:"model,omitempty"`
	// Agent is an operator's own agent image, imported with `airlock image
	// import`; nil runs Airlock's reference agent.
	Agent *Agent `json:"agent,omitempty"`
}

// Agent names an imported agent image by name and manifest digest, and
// optionally the command to run in it. The image's own configuration
// (USER, ENV, VOLUME, EXPOSE, HEALTHCHECK, STOPSIGNAL, labels) never
// reaches the sandbox: only its entrypoint and cmd, and only when Command
// is empty.
type Agent struct {
	// Image is NAME@sha256:HEX; a name without its digest does not load,
	// so a profile always runs exactly the image its author meant.
	Image string `json:"image"`
	// Command replaces the image's entrypoint and cmd; its first word is an
	// absolute path in the image.
	Command []string `json:"command,omitempty"`
}

// agent returns p.Agent, made on first use.
func (p *Profile) agent() *Agent {
	if p.Agent == nil {
		p.Agent = &Agent{}
	}
	return p.Agent
}

// ImageName and ImageDigest split Image; both are empty unless Image is
// valid, which Load has checked.
func (a *Agent) ImageName() string {
	name, _, _ := imageref.Parse(a.Image)
	return name
}

// Key names the agent among the runner's images: "agent:NAME@DIGEST",
// and, when Command is set, a hash of it after '#'. Profiles that run one
// image with different commands run different agents, which are loaded,
// and pooled, apart.
func (a *Agent) Key() string {
	key := ImageAgentPrefix + a.Image
	if len(a.Command) > 0 {
		h := sha256.New()
		for _, w := range a.Command {
			// Length-prefixed, so that no two commands hash alike.
			fmt.Fprintf(h, "%d:%s", len(w), w)
		}
		key += "#" + hex.EncodeToString(h.Sum(nil)[:8])
	}
	return key
}

// ImageDigest is the sha256:HEX part of Image.
func (a *Agent) ImageDigest() string {
	_, d, _ := imageref.Parse(a.Image)
	return d
}

// Model APIs a profile may name.
const (
	// APIOpenAI is Chat Completions, as OpenAI, vLLM, Ollama, llama.cpp's
	// server, LiteLLM and OpenRouter speak it.
	APIOpenAI = "openai"
	// APIAnthropic is Anthropic's Messages API.
	APIAnthropic = "anthropic"
)

// Model is the model a model-driven task reaches, only ever through one of
// the profile's service aliases, so that its key stays in the egress
// proxy. Every limit holds at the proxy or the broker as well as in the
// agent: a hijacked agent cannot lift it.
type Model struct {
	// Service is the alias in network.services that leads to the model.
	Service string `json:"service"`
	// API is openai or anthropic.
	API string `json:"api"`
	// Name is the model a job gets unless its request picks another.
	Name string `json:"name"`
	// Allowed are the other model names a request may pick.
	Allowed []string `json:"allowed,omitempty"`
	// Stream asks the model for server-sent events instead of one reply.
	Stream bool `json:"stream,omitempty"`
	// MaxTurns caps the job's model requests, a repair attempt included.
	MaxTurns int `json:"maxTurns"`
	// MaxToolCalls caps the tool calls the model may make in one job.
	MaxToolCalls int `json:"maxToolCalls"`
	// MaxInputTokens caps the input tokens summed over the job's turns: no
	// turn starts once they are spent.
	MaxInputTokens int64 `json:"maxInputTokens"`
	// MaxOutputTokens caps each reply (the request's max_tokens).
	MaxOutputTokens int64 `json:"maxOutputTokens"`
	// MaxReplyBytes caps the bytes of one reply read from the model.
	MaxReplyBytes int64 `json:"maxReplyBytes"`
}

// Tools is OpenClaw's tool policy: deny wins, names are case-insensitive,
// and group: names expand.
type Tools struct {
	// Policy is allowlist (only Allowed) or denylist (all but Denied).
	Policy string `json:"policy"` // allowlist | denylist
	// Allowed lists tool or group names; with denylist it must be empty.
	Allowed []string `json:"allowed,omitempty"`
	// Denied lists tool or group names that no other setting can allow.
	Denied []string `json:"denied,omitempty"`
}

// Exec is OpenClaw's exec approval policy.
type Exec struct {
	// Security is deny, allowlist (only AllowedPatterns) or full.
	Security string `json:"security"` // deny | allowlist | full
	// AllowedPatterns are the command patterns that run without approval.
	AllowedPatterns []string `json:"allowedPatterns,omitempty"`
	// Ask says when a command needs approval.
	Ask string `json:"ask"` // off | on-miss | always
	// AskFallback is what happens when nobody answers: always deny.
	AskFallback string `json:"askFallback,omitempty"` // deny
}

// Network is the job's network: none, or egress through the broker's proxy.
type Network struct {
	// Mode none leaves the job loopback only; allowlist routes it to the
	// proxy, which lets through only Egress and Services.
	Mode string `json:"mode"` // none | allowlist
	// Egress holds canonical host:port entries; *.suffix matches subdomains
	// only. Empty means nothing is reachable.
	Egress []string `json:"egress,omitempty"`
	// Services maps an alias (http://<alias>.airlock.internal) to its upstream.
	Services map[string]Service `json:"services,omitempty"`
}

// Service is an egress alias whose credential the proxy injects.
type Service struct {
	// Upstream is the https URL the alias forwards to.
	Upstream string `json:"upstream"`
	// Inject is the credential header, when the upstream needs one.
	Inject Inject `json:"inject,omitempty"`
	// Headers are fixed, non-secret headers set on every request, such as
	// Anthropic's anthropic-version.
	Headers map[string]string `json:"headers,omitempty"`
}

// Inject names a header and a secret reference (env:NAME or file:/path),
// never a literal secret.
type Inject struct {
	// Header is the HTTP header the proxy sets.
	Header string `json:"header"`
	// SecretRef is env:NAME or file:/abs/path, resolved by the broker.
	SecretRef string `json:"secretRef"`
	// Prefix goes before the secret in the header's value, such as
	// "Bearer " for OpenAI's Authorization header.
	Prefix string `json:"prefix,omitempty"`
}

// Limits bound what one job may consume.
type Limits struct {
	// MemoryBytes is YAML limits.memory, such as 256Mi.
	MemoryBytes int64 `json:"memoryBytes"`
	// Pids caps processes and threads.
	Pids int64 `json:"pids"`
	// CPU is in cores; 0.5 is half a core.
	CPU float64 `json:"cpu"` // cores
	// Timeout is the wall-clock deadline, YAML limits.timeout such as 30s.
	Timeout time.Duration `json:"timeout"`
	// OutputBytes caps result.json, YAML limits.output.
	OutputBytes int64 `json:"outputBytes"`
	// ScratchBytes sizes the writable tmpfs, YAML limits.scratch.
	ScratchBytes int64 `json:"scratchBytes"`
}

// Isolation is the OCI hardening of the sandbox.
type Isolation struct {
	// ReadOnlyRoot mounts the image read-only.
	ReadOnlyRoot bool `json:"readOnlyRoot"`
	// Capabilities are the few low-risk CAP_ names a profile may grant.
	Capabilities []string `json:"capabilities,omitempty"`
	// NoNewPrivileges stops setuid binaries from gaining privileges.
	NoNewPrivileges bool `json:"noNewPrivileges"`
	// UID is the agent's user; never 0.
	UID uint32 `json:"uid"`
	// GID is the agent's group; never 0.
	GID uint32 `json:"gid"`
	// Seccomp is default (runtime default) or strict (a narrower list).
	Seccomp string `json:"seccomp"` // default | strict
	// UserNamespace maps the sandbox's users to unprivileged host users.
	UserNamespace bool `json:"userNamespace"`
	// MaskedPaths always include DefaultMaskedPaths; a profile only adds.
	MaskedPaths []string `json:"maskedPaths,omitempty"`
	// Runtime is runc, crun, or runsc (gVisor), each where installed.
	Runtime string `json:"runtime"` // runc
	// Platform is how gVisor's sentry traps the agent's system calls:
	// ptrace, or kvm where the host serves it. Empty picks kvm where a
	// probe finds it works, else ptrace. Only for runtime runsc.
	Platform string `json:"platform,omitempty"`
}

// Result is how the broker treats the job's output.
type Result struct {
	// MaxStringLength caps every string in the sanitized result.
	MaxStringLength int `json:"maxStringLength"`
	// KeepLinks leaves links to hosts off the egress allowlist clickable;
	// data: and javascript: URLs are neutralized regardless.
	KeepLinks bool `json:"keepLinks,omitempty"`
	// DefaultSchema is the JSON Schema for jobs that send none. Empty means
	// every job must send its own.
	DefaultSchema string `json:"defaultSchema,omitempty"`
	// RedactPatterns are extra regular expressions (RE2) whose matches are
	// redacted from the result.
	RedactPatterns []string `json:"redactPatterns,omitempty"`
}

// Model defaults, for the limits a profile's model section leaves out.
const (
	DefaultMaxTurns        = 8
	DefaultMaxToolCalls    = 16
	DefaultMaxInputTokens  = 200_000
	DefaultMaxOutputTokens = 4096
	DefaultMaxReplyBytes   = 4 * Mi
)

// model returns p.Model, made with the default limits on first use, so
// that a profile setting any model field gets bounded limits for the rest.
func (p *Profile) model() *Model {
	if p.Model == nil {
		p.Model = &Model{
			MaxTurns: DefaultMaxTurns, MaxToolCalls: DefaultMaxToolCalls, MaxInputTokens: DefaultMaxInputTokens,
			MaxOutputTokens: DefaultMaxOutputTokens, MaxReplyBytes: DefaultMaxReplyBytes,
		}
	}
	return p.Model
}

// ModelNames are the model names a request may pick: Name first, then
// Allowed.
func (m *Model) ModelNames() []string {
	return append([]string{m.Name}, m.Allowed...)
}

// DefaultMaskedPaths returns the paths every sandbox masks, as containerd's
// default spec does, because they leak host details or kernel interfaces.
func DefaultMaskedPaths() []string {
	return []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/interrupts",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/sys/devices/virtual/powercap",
		"/sys/firmware",
	}
}

// Clone returns a deep copy, which the caller may change freely.
func (p *Profile) Clone() *Profile {
	c := *p
	c.Tools.Allowed = slices.Clone(p.Tools.Allowed)
	c.Tools.Denied = slices.Clone(p.Tools.Denied)
	c.Exec.AllowedPatterns = slices.Clone(p.Exec.AllowedPatterns)
	c.Network.Egress = slices.Clone(p.Network.Egress)
	c.Network.Services = maps.Clone(p.Network.Services)
	c.Isolation.Capabilities = slices.Clone(p.Isolation.Capabilities)
	c.Isolation.MaskedPaths = slices.Clone(p.Isolation.MaskedPaths)
	c.Result.RedactPatterns = slices.Clone(p.Result.RedactPatterns)
	for alias, svc := range c.Network.Services {
		svc.Headers = maps.Clone(svc.Headers)
		c.Network.Services[alias] = svc
	}
	if p.Model != nil {
		m := *p.Model
		m.Allowed = slices.Clone(p.Model.Allowed)
		c.Model = &m
	}
	if p.Agent != nil {
		a := *p.Agent
		a.Command = slices.Clone(p.Agent.Command)
		c.Agent = &a
	}
	return &c
}

// Hash is the hex sha256 of the profile's canonical JSON. Load sorts every
// list and encoding/json sorts map keys, so equal policies hash equally.
func (p *Profile) Hash() string {
	b, err := json.Marshal(p)
	if err != nil {
		// Only a NaN or infinite CPU can fail, and validation refuses both;
		// hash the error so that a broken profile never shares a hash.
		b = []byte("unencodable profile: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Summary is one short line for responses and logs, such as
// "network=none exec=allowlist seccomp=default runtime=runc mem=512Mi pids=128 cpu=1 timeout=60s".
func (p *Profile) Summary() string {
	network := p.Network.Mode
	if network == NetworkAllowlist {
		network = fmt.Sprintf("%s(%d)", network, len(p.Network.Egress)+len(p.Network.Services))
	}
	return fmt.Sprintf("network=%s exec=%s seccomp=%s runtime=%s mem=%s pids=%d cpu=%g timeout=%s",
		network, p.Exec.Security, p.Isolation.Seccomp, cmp.Or(p.Isolation.Runtime, RuntimeRunc), FormatBytes(p.Limits.MemoryBytes),
		p.Limits.Pids, p.Limits.CPU, formatDuration(p.Limits.Timeout))
}

// ReachesAsNobody reports whether the profile's sandboxes reach their root
// filesystem and mounts below the broker's state dir as an unprivileged host
// user: a user-namespaced sandbox's root is one, and gVisor's sentry runs as
// the host's nobody. Every directory above the state dir must then be
// searchable by other users.
func (p *Profile) ReachesAsNobody() bool {
	return p.Isolation.UserNamespace || p.Isolation.Runtime == RuntimeRunsc
}

// ExecAllowed reports whether the agent may run commands at all: exec
// security is not deny and the tool policy allows the exec tool.
func (p *Profile) ExecAllowed() bool {
	return p.Exec.Security != ExecDeny && p.toolAllowed("exec")
}

// GatewayTools are the tools whose calls go through the job's tool
// gateway, besides exec.
var GatewayTools = []string{"read", "write", "edit", "fetch"}

// ToolGateway reports whether a job needs a tool gateway: the profile
// allows exec or a tool the broker decides call by call.
func (p *Profile) ToolGateway() bool {
	if p.ExecAllowed() {
		return true
	}
	for _, t := range GatewayTools {
		if p.toolAllowed(t) {
			return true
		}
	}
	return false
}

// ImageAgentPrefix starts the Image of a profile that runs an imported
// agent image: "agent:NAME@sha256:HEX". No built image's name has a colon.
const ImageAgentPrefix = "agent:"

// Image is the image the profile runs: an imported agent image when the
// profile names one (Agent.Key), else the reader image, or, when
// exec is allowed, a tools image of the profile's own that carries only the
// commands its allowlist names ("tools-<profile>").
func (p *Profile) Image() string {
	if p.Agent != nil {
		return p.Agent.Key()
	}
	if p.ExecAllowed() {
		return ImageTools + "-" + p.Name
	}
	return ImageReader
}

// ExecCommands are the base names of the commands exec.allowedPatterns
// name (the first word of each pattern), sorted. With exec.security full
// there is no list, and the caller decides what the image carries.
func (p *Profile) ExecCommands() []string {
	var out []string
	for _, pat := range p.Exec.AllowedPatterns {
		cmd, _, _ := strings.Cut(strings.TrimSpace(pat), " ")
		name := path.Base(cmd)
		if name != "" && name != "." && name != "/" && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// formatDuration prints whole seconds as "60s" rather than "1m0s", to match
// how profiles are written.
func formatDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

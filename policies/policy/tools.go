package policy

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
)

// groupPrefix marks a tool name that stands for a set of tools.
const groupPrefix = "group:"

// toolGroups follows OpenClaw's groups; agent is Airlock's own, naming the
// deterministic tasks of the reference sub-agent.
var toolGroups = map[string][]string{
	"group:agent":   {"classify", "extract_links", "extract_text", "summarize"},
	"group:fs":      {"apply_patch", "edit", "read", "write"},
	"group:runtime": {"exec", "process"},
	"group:web":     {"web_fetch", "web_search", "fetch"},
}

// execTools are meaningless without exec, so EffectiveTools drops them when
// exec.security is deny rather than report a tool that cannot run.
var execTools = toolGroups["group:runtime"]

// ToolGroups returns the group names a profile may use, sorted.
func ToolGroups() []string {
	names := make([]string, 0, len(toolGroups))
	for g := range toolGroups {
		names = append(names, g)
	}
	slices.Sort(names)
	return names
}

// EffectiveTools returns the lowercase, sorted tool names the agent may use.
// With an allowlist it is the expanded allowed names; with a denylist it is
// known minus the denied ones, so known matters only there. Denied names
// always win, and exec tools are dropped when exec.security is deny.
func (p *Profile) EffectiveTools(known []string) []string {
	var out []string
	candidates := p.Tools.Allowed
	if p.Tools.Policy == ToolsDenylist {
		candidates = known
	}
	for t := range expandTools(candidates) {
		if p.toolAllowed(t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// toolAllowed applies the policy to one tool name. Anything but an explicit
// denylist is treated as an allowlist, so a malformed policy allows less.
func (p *Profile) toolAllowed(name string) bool {
	name = strings.ToLower(name)
	if expandTools(p.Tools.Denied)[name] {
		return false
	}
	if p.Exec.Security == ExecDeny && slices.Contains(execTools, name) {
		return false
	}
	if p.Tools.Policy == ToolsDenylist {
		return true
	}
	return expandTools(p.Tools.Allowed)[name]
}

// expandTools lowercases names and replaces groups by their members. An
// unknown group expands to nothing, since validation has refused it.
func expandTools(names []string) map[string]bool {
	set := make(map[string]bool, len(names))
	for _, n := range names {
		n = strings.ToLower(n)
		if !strings.HasPrefix(n, groupPrefix) {
			set[n] = true
			continue
		}
		for _, t := range toolGroups[n] {
			set[t] = true
		}
	}
	return set
}

// validToolName accepts OpenClaw-style tool names and known groups.
func validToolName(n string) bool {
	n = strings.ToLower(n)
	if strings.HasPrefix(n, groupPrefix) {
		_, ok := toolGroups[n]
		return ok
	}
	if n == "" || len(n) > 64 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || (i > 0 && (c == '-' || c == '.'))) {
			return false
		}
	}
	return true
}

// KnownTools are the tools the reference agent implements, from which a
// profile's effective tools are taken.
var KnownTools = []string{"extract_text", "extract_links", "summarize", "classify", "fetch", "exec", "read", "write", "edit"}

// Tools the agent carries out itself once the broker has allowed a call
// through the job's tool gateway; exec is the one the broker runs.
const (
	ToolRead  = "read"
	ToolWrite = "write"
	ToolEdit  = "edit"
	ToolFetch = "fetch"
)

// Bounds on a tool call's target. A path is no longer than a real one in a
// sandbox ever needs, and a URL no longer than the agent's fetch takes.
const (
	MaxToolPathBytes = 1024
	MaxToolURLBytes  = 2048
)

// toolRoots are the directories below which each file tool reaches without
// asking: writes only where the sandbox has writable mounts, reads also in
// the job's read-only input.
var toolRoots = map[string][]string{
	ToolRead:  {"/input", "/tmp", "/output"},
	ToolWrite: {"/tmp", "/output"},
	ToolEdit:  {"/tmp", "/output"},
}

// ToolCheck is what the profile alone says about one tool call.
type ToolCheck int

const (
	// ToolRefused: the call can never be allowed, so nobody is asked: the
	// tool is not the job's, or its target is malformed.
	ToolRefused ToolCheck = iota
	// ToolMiss: well-formed but outside the tool's bounds; exec.ask decides.
	ToolMiss
	// ToolWithin: within the tool's bounds.
	ToolWithin
)

// CheckToolCall checks a call of a file tool or fetch against the job's
// effective tools (EffectiveTools) and the profile, and says why. It is
// only the broker's decision: the sandbox confines the agent's writes in
// the kernel whatever is decided here.
func (p *Profile) CheckToolCall(effective []string, tool, target string) (ToolCheck, string) {
	tool = strings.ToLower(tool)
	if tool != ToolFetch && toolRoots[tool] == nil {
		// The name is the job's and not repeated: a reason reaches the
		// caller and the audit log.
		return ToolRefused, "the call names no tool the broker decides (read, write, edit, fetch)"
	}
	if !slices.Contains(effective, tool) {
		return ToolRefused, fmt.Sprintf("the profile does not allow the %s tool", tool)
	}
	if tool == ToolFetch {
		return p.checkFetch(target)
	}
	if err := checkToolPath(target); err != nil {
		return ToolRefused, fmt.Sprintf("%s: %v", tool, err)
	}
	roots := toolRoots[tool]
	for _, root := range roots {
		if strings.HasPrefix(target, root+"/") {
			return ToolWithin, fmt.Sprintf("%s within %s", tool, root)
		}
	}
	return ToolMiss, fmt.Sprintf("%s outside %s", tool, strings.Join(roots, ", "))
}

// checkToolPath accepts an absolute path in canonical form only: with no
// "..", ".", empty or trailing component, nothing Clean would change, so
// that the prefix test on it means what it says.
func checkToolPath(p string) error {
	switch {
	case p == "":
		return errors.New("a path is required")
	case len(p) > MaxToolPathBytes:
		return fmt.Errorf("the path is over %d bytes", MaxToolPathBytes)
	case strings.ContainsRune(p, 0):
		return errors.New("the path holds a NUL byte")
	case !path.IsAbs(p):
		return errors.New("the path is not absolute")
	case path.Clean(p) != p:
		return errors.New("the path is not clean (it has a .., . or empty component, or a trailing slash)")
	}
	return nil
}

// checkFetch accepts an absolute http or https URL without credentials in
// a job with egress; which hosts it reaches is the egress proxy's to say,
// and every attempt lands in the job's egress log.
func (p *Profile) checkFetch(raw string) (ToolCheck, string) {
	if p.Network.Mode != NetworkAllowlist {
		return ToolRefused, "fetch: the profile's network mode is " + p.Network.Mode + ": the job has no egress"
	}
	if len(raw) > MaxToolURLBytes {
		return ToolRefused, fmt.Sprintf("fetch: the URL is over %d bytes", MaxToolURLBytes)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		return ToolRefused, "fetch: not an absolute http or https URL"
	case u.User != nil:
		return ToolRefused, "fetch: the URL carries credentials"
	}
	return ToolWithin, "fetch through the egress proxy, which checks the host against the allowlist"
}

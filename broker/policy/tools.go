package policy

import (
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

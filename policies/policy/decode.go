package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The YAML surface is a fixed set of leaf paths. Walking yaml.Node trees
// against it, rather than unmarshalling into structs, is what lets every
// error name its file, line and field, and lets extends tell a field that a
// file set from one it left alone.

// leaf is one settable YAML path.
type leaf struct {
	decode func(d *decoder, n *yaml.Node, path string, lines map[string]int) (any, bool)
	apply  func(p *Profile, v any)
	// perFile values describe one file and are not inherited through extends.
	perFile bool
}

// setting is a value one file set, with the lines of the value and its parts.
type setting struct {
	val   any
	file  string
	lines map[string]int
}

// source is one decoded file.
type source struct {
	file     string
	name     string
	settings map[string]setting
	errs     []error
}

// leafOf adapts a typed decoder and setter to a leaf.
func leafOf[T any](dec func(*decoder, *yaml.Node, string, map[string]int) (T, bool), apply func(*Profile, T)) leaf {
	return leaf{
		decode: func(d *decoder, n *yaml.Node, path string, lines map[string]int) (any, bool) {
			return dec(d, n, path, lines)
		},
		apply: func(p *Profile, v any) { apply(p, v.(T)) },
	}
}

// leaves maps every YAML path a profile may set. The invariant keys decode
// only so that a true value is refused with a reason, not as unknown.
var leaves = map[string]leaf{
	"name":              {decode: untyped(decString), perFile: true},
	"extends":           {decode: untyped(decString), perFile: true},
	"description":       {decode: untyped(decString), perFile: true},
	"allowInsecureAuth": {decode: mustBeFalse("it would let callers in without a valid token; no profile can enable it")},

	"tools.policy":  leafOf(decString, func(p *Profile, v string) { p.Tools.Policy = v }),
	"tools.allowed": leafOf(decStrings, func(p *Profile, v []string) { p.Tools.Allowed = v }),
	"tools.denied":  leafOf(decStrings, func(p *Profile, v []string) { p.Tools.Denied = v }),

	"exec.security":        leafOf(decString, func(p *Profile, v string) { p.Exec.Security = v }),
	"exec.allowedPatterns": leafOf(decStrings, func(p *Profile, v []string) { p.Exec.AllowedPatterns = v }),
	"exec.ask":             leafOf(decString, func(p *Profile, v string) { p.Exec.Ask = v }),
	"exec.askFallback":     leafOf(decString, func(p *Profile, v string) { p.Exec.AskFallback = v }),

	"network.mode":     leafOf(decString, func(p *Profile, v string) { p.Network.Mode = v }),
	"network.egress":   leafOf(decStrings, func(p *Profile, v []string) { p.Network.Egress = v }),
	"network.services": leafOf(decServices, func(p *Profile, v map[string]Service) { p.Network.Services = v }),

	"limits.memory":  leafOf(decBytes, func(p *Profile, v int64) { p.Limits.MemoryBytes = v }),
	"limits.pids":    leafOf(decInt, func(p *Profile, v int64) { p.Limits.Pids = v }),
	"limits.cpu":     leafOf(decFloat, func(p *Profile, v float64) { p.Limits.CPU = v }),
	"limits.timeout": leafOf(decDuration, func(p *Profile, v time.Duration) { p.Limits.Timeout = v }),
	"limits.output":  leafOf(decBytes, func(p *Profile, v int64) { p.Limits.OutputBytes = v }),
	"limits.scratch": leafOf(decBytes, func(p *Profile, v int64) { p.Limits.ScratchBytes = v }),

	"isolation.readOnlyRoot":    leafOf(decBool, func(p *Profile, v bool) { p.Isolation.ReadOnlyRoot = v }),
	"isolation.capabilities":    leafOf(decStrings, func(p *Profile, v []string) { p.Isolation.Capabilities = v }),
	"isolation.noNewPrivileges": leafOf(decBool, func(p *Profile, v bool) { p.Isolation.NoNewPrivileges = v }),
	"isolation.uid":             leafOf(decUint32, func(p *Profile, v uint32) { p.Isolation.UID = v }),
	"isolation.gid":             leafOf(decUint32, func(p *Profile, v uint32) { p.Isolation.GID = v }),
	"isolation.seccomp":         leafOf(decString, func(p *Profile, v string) { p.Isolation.Seccomp = v }),
	"isolation.userNamespace":   leafOf(decBool, func(p *Profile, v bool) { p.Isolation.UserNamespace = v }),
	"isolation.maskedPaths":     leafOf(decStrings, func(p *Profile, v []string) { p.Isolation.MaskedPaths = withDefaultMasks(v) }),
	"isolation.runtime":         leafOf(decString, func(p *Profile, v string) { p.Isolation.Runtime = v }),
	"isolation.platform":        leafOf(decString, func(p *Profile, v string) { p.Isolation.Platform = v }),
	"isolation.privileged":      {decode: mustBeFalse("privileged mode would hand the agent the host; no profile can enable it")},
	"isolation.hostNetwork":     {decode: mustBeFalse("the host network would bypass the egress proxy; no profile can enable it")},
	"isolation.hostPID":         {decode: mustBeFalse("the host PID namespace would expose host processes; no profile can enable it")},
	"isolation.hostIPC":         {decode: mustBeFalse("the host IPC namespace would expose host memory; no profile can enable it")},

	"model.service":         leafOf(decString, func(p *Profile, v string) { p.model().Service = v }),
	"model.api":             leafOf(decString, func(p *Profile, v string) { p.model().API = v }),
	"model.name":            leafOf(decString, func(p *Profile, v string) { p.model().Name = v }),
	"model.allowed":         leafOf(decStrings, func(p *Profile, v []string) { p.model().Allowed = v }),
	"model.stream":          leafOf(decBool, func(p *Profile, v bool) { p.model().Stream = v }),
	"model.maxTurns":        leafOf(decInt, func(p *Profile, v int64) { p.model().MaxTurns = clampInt(v) }),
	"model.maxToolCalls":    leafOf(decInt, func(p *Profile, v int64) { p.model().MaxToolCalls = clampInt(v) }),
	"model.maxInputTokens":  leafOf(decInt, func(p *Profile, v int64) { p.model().MaxInputTokens = v }),
	"model.maxOutputTokens": leafOf(decInt, func(p *Profile, v int64) { p.model().MaxOutputTokens = v }),
	"model.maxReplyBytes":   leafOf(decBytes, func(p *Profile, v int64) { p.model().MaxReplyBytes = v }),

	"agent.image":   leafOf(decString, func(p *Profile, v string) { p.agent().Image = v }),
	"agent.command": leafOf(decStrings, func(p *Profile, v []string) { p.agent().Command = v }),

	"result.maxStringLength": leafOf(decInt, func(p *Profile, v int64) { p.Result.MaxStringLength = int(v) }),
	"result.keepLinks":       leafOf(decBool, func(p *Profile, v bool) { p.Result.KeepLinks = v }),
	"result.defaultSchema":   leafOf(decString, func(p *Profile, v string) { p.Result.DefaultSchema = v }),
	"result.redactPatterns":  leafOf(decStrings, func(p *Profile, v []string) { p.Result.RedactPatterns = v }),
}

// children lists the keys allowed under each mapping path ("" is the top),
// derived from leaves so that the two cannot disagree.
var children = func() map[string][]string {
	kids := map[string][]string{}
	for path := range leaves {
		parent, key := "", path
		if i := strings.LastIndexByte(path, '.'); i >= 0 {
			parent, key = path[:i], path[i+1:]
			if !slices.Contains(kids[""], parent) {
				kids[""] = append(kids[""], parent)
			}
		}
		kids[parent] = append(kids[parent], key)
	}
	for _, k := range kids {
		slices.Sort(k)
	}
	return kids
}()

// withDefaultMasks keeps the profile's paths first, so that error indices
// match the file, and appends the defaults it left out.
func withDefaultMasks(paths []string) []string {
	out := slices.Clone(paths)
	for _, m := range DefaultMaskedPaths() {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// maxFileSize bounds a profile file; real ones are a few hundred bytes.
const maxFileSize = 1 << 20

// decoder walks one file's YAML tree.
type decoder struct {
	src *source
}

func (d *decoder) fail(line int, field, format string, args ...any) {
	d.src.errs = append(d.src.errs, &FieldError{File: d.src.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decodeFile parses one profile file. Problems are in src.errs; the
// settings that did decode are kept, but Load uses none of them then.
func decodeFile(file, name string, data []byte) (src *source) {
	src = &source{file: file, name: name, settings: map[string]setting{}}
	d := &decoder{src: src}
	defer func() {
		// The parser is third-party code; a malformed file must be an
		// error, never a broker crash.
		if r := recover(); r != nil {
			d.fail(0, "", "cannot parse YAML")
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			d.yamlError(err)
		}
		return src
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		d.fail(more.Line, "", "a profile file holds exactly one YAML document")
		return src
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return src // an empty document sets nothing
	}
	d.section(root, "")
	return src
}

// yamlError keeps the parser's line, which for some errors is where the
// enclosing block or flow begins rather than the offending token.
func (d *decoder) yamlError(err error) {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		d.fail(line, "", "invalid YAML: %s", m[2])
		return
	}
	d.fail(0, "", "invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
}

// section decodes a mapping whose keys are leaves or nested sections.
func (d *decoder) section(n *yaml.Node, parent string) {
	d.mapping(n, parent, func(key string, k, v *yaml.Node) {
		path := join(parent, key)
		if key == "" || strings.Contains(key, ".") {
			// Otherwise "limits.memory: 1Gi" at the top would pass as a
			// path, and "" would nest the top level inside itself.
			d.fail(k.Line, join(parent, strconv.Quote(key)), "unknown field (want %s)", strings.Join(children[parent], "|"))
			return
		}
		if l, ok := leaves[path]; ok {
			lines := map[string]int{path: k.Line}
			if val, ok := l.decode(d, v, path, lines); ok {
				d.src.settings[path] = setting{val: val, file: d.src.file, lines: lines}
			}
			return
		}
		if _, ok := children[path]; ok {
			d.section(v, path)
			return
		}
		d.fail(k.Line, path, "unknown field (want %s)", strings.Join(children[parent], "|"))
	})
}

// mapping calls each for every key of n, after refusing what strict
// decoding refuses: non-mappings, non-string keys, merge keys, duplicates.
func (d *decoder) mapping(n *yaml.Node, path string, each func(key string, k, v *yaml.Node)) bool {
	if n.Kind != yaml.MappingNode || n.ShortTag() != "!!map" {
		d.wrongType(n, path, "a mapping")
		return false
	}
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			if k.ShortTag() == "!!merge" {
				d.fail(k.Line, path, "merge keys (<<) are not supported in profiles")
			} else {
				d.fail(k.Line, path, "keys must be strings, got %s", describe(k))
			}
			continue
		}
		if line, dup := first[k.Value]; dup {
			d.fail(k.Line, join(path, k.Value), "duplicate key (first set on line %d)", line)
			continue
		}
		first[k.Value] = k.Line
		each(k.Value, k, v)
	}
	return true
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func (d *decoder) wrongType(n *yaml.Node, path, want string) {
	if n.Kind == yaml.AliasNode {
		d.fail(n.Line, path, "anchors and aliases are not supported in profiles")
		return
	}
	d.fail(n.Line, path, "want %s, got %s", want, describe(n))
}

// describe names a node's type for an error without quoting its value,
// which may be a secret written in the wrong place.
func describe(n *yaml.Node) string {
	if n.Kind == yaml.AliasNode {
		return "an alias"
	}
	switch t := n.ShortTag(); t {
	case "!!map":
		return "a mapping"
	case "!!seq":
		return "a list"
	case "!!str":
		return "a string"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "null"
	default:
		return "a value tagged " + strconv.Quote(t)
	}
}

// scalar reports whether n is a plain value with one of tags.
func (d *decoder) scalar(n *yaml.Node, path, want string, tags ...string) bool {
	if n.Kind == yaml.ScalarNode && slices.Contains(tags, n.ShortTag()) {
		return true
	}
	d.wrongType(n, path, want)
	return false
}

// untyped adapts a typed decoder for a leaf that Load reads itself.
func untyped[T any](dec func(*decoder, *yaml.Node, string, map[string]int) (T, bool)) func(*decoder, *yaml.Node, string, map[string]int) (any, bool) {
	return func(d *decoder, n *yaml.Node, path string, lines map[string]int) (any, bool) {
		return dec(d, n, path, lines)
	}
}

func decString(d *decoder, n *yaml.Node, path string, _ map[string]int) (string, bool) {
	if !d.scalar(n, path, "a string", "!!str") {
		return "", false
	}
	return n.Value, true
}

func decBool(d *decoder, n *yaml.Node, path string, _ map[string]int) (bool, bool) {
	var b bool
	if !d.scalar(n, path, "true or false", "!!bool") || n.Decode(&b) != nil {
		return false, false
	}
	return b, true
}

func decInt(d *decoder, n *yaml.Node, path string, _ map[string]int) (int64, bool) {
	if !d.scalar(n, path, "an integer", "!!int") {
		return 0, false
	}
	var i int64
	if err := n.Decode(&i); err != nil {
		d.fail(n.Line, path, "integer out of range")
		return 0, false
	}
	return i, true
}

func decUint32(d *decoder, n *yaml.Node, path string, lines map[string]int) (uint32, bool) {
	i, ok := decInt(d, n, path, lines)
	if ok && (i < 0 || i > math.MaxUint32) {
		d.fail(n.Line, path, "want an integer in 1-%d", uint32(math.MaxUint32))
		return 0, false
	}
	return uint32(i), ok
}

func decFloat(d *decoder, n *yaml.Node, path string, _ map[string]int) (float64, bool) {
	var f float64
	if !d.scalar(n, path, "a number", "!!int", "!!float") || n.Decode(&f) != nil {
		return 0, false
	}
	return f, true
}

func decDuration(d *decoder, n *yaml.Node, path string, _ map[string]int) (time.Duration, bool) {
	if !d.scalar(n, path, "a duration such as 30s", "!!str") {
		return 0, false
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.fail(n.Line, path, "%q is not a duration (want a number with a unit, such as 30s or 2m)", n.Value)
		return 0, false
	}
	return v, true
}

// decBytes takes a plain integer as bytes, or a string such as 256Mi.
func decBytes(d *decoder, n *yaml.Node, path string, lines map[string]int) (int64, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		return decInt(d, n, path, lines)
	}
	if !d.scalar(n, path, "a size such as 256Mi", "!!str") {
		return 0, false
	}
	v, err := ParseBytes(n.Value)
	if err != nil {
		d.fail(n.Line, path, "%v", err)
		return 0, false
	}
	return v, true
}

// decStrings decodes a list of strings; a null is refused rather than read
// as empty, so that a half-written key is not mistaken for "nothing".
func decStrings(d *decoder, n *yaml.Node, path string, lines map[string]int) ([]string, bool) {
	if n.Kind != yaml.SequenceNode || n.ShortTag() != "!!seq" {
		d.wrongType(n, path, "a list")
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for i, item := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		lines[p] = item.Line
		s, good := decString(d, item, p, lines)
		ok = ok && good
		out = append(out, s)
	}
	return out, ok
}

// decServices decodes network.services: alias -> {upstream, inject}.
func decServices(d *decoder, n *yaml.Node, path string, lines map[string]int) (map[string]Service, bool) {
	out := map[string]Service{}
	ok := d.mapping(n, path, func(alias string, k, v *yaml.Node) {
		sp := join(path, alias)
		lines[sp] = k.Line
		var svc Service
		good := d.mapping(v, sp, func(key string, k, v *yaml.Node) {
			fp := join(sp, key)
			lines[fp] = k.Line
			switch key {
			case "upstream":
				svc.Upstream, _ = decString(d, v, fp, lines)
			case "inject":
				d.mapping(v, fp, func(key string, k, v *yaml.Node) {
					ip := join(fp, key)
					lines[ip] = k.Line
					switch key {
					case "header":
						svc.Inject.Header, _ = decString(d, v, ip, lines)
					case "secretRef":
						svc.Inject.SecretRef, _ = decString(d, v, ip, lines)
					case "prefix":
						svc.Inject.Prefix, _ = decString(d, v, ip, lines)
					default:
						d.fail(k.Line, ip, "unknown field (want header|prefix|secretRef)")
					}
				})
			case "headers":
				svc.Headers = map[string]string{}
				d.mapping(v, fp, func(key string, k, v *yaml.Node) {
					hp := join(fp, key)
					lines[hp] = k.Line
					svc.Headers[key], _ = decString(d, v, hp, lines)
				})
			default:
				d.fail(k.Line, fp, "unknown field (want headers|inject|upstream)")
			}
		})
		if good {
			out[alias] = svc
		}
	})
	// Errors inside the map are already recorded; the file fails on them.
	return out, ok
}

// clampInt keeps an out-of-range count out of range after the conversion,
// so that validation refuses it rather than seeing a wrapped value.
func clampInt(v int64) int {
	return int(max(min(v, math.MaxInt32), math.MinInt32))
}

// mustBeFalse decodes a key that exists only to be refused when true.
func mustBeFalse(why string) func(*decoder, *yaml.Node, string, map[string]int) (any, bool) {
	return func(d *decoder, n *yaml.Node, path string, lines map[string]int) (any, bool) {
		if b, ok := decBool(d, n, path, lines); ok && b {
			d.fail(n.Line, path, "cannot be true: %s", why)
		}
		return nil, false
	}
}

package policy

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/textproto"
	"slices"
	"strings"
	"time"
)

// Option changes how Load validates.
type Option func(*config)

// WithDevMode lets profiles use what only a developer's machine should:
// exec.security full, isolation.noNewPrivileges false and http upstreams.
func WithDevMode(on bool) Option {
	return func(c *config) { c.devMode = on }
}

// WithSchemaCheck gives Load the compiler for result.defaultSchema, such as
// the result package's. Without it a profile that sets a default schema
// does not load.
func WithSchemaCheck(check func(schema string) error) Option {
	return func(c *config) { c.checkSchema = check }
}

// Set is the loaded profiles, by name. It is immutable and safe for
// concurrent use.
type Set struct {
	byName map[string]*Profile
	names  []string
}

// Get returns the named profile, shared and not to be changed, or an error
// wrapping ErrUnknownProfile.
func (s *Set) Get(name string) (*Profile, error) {
	p, ok := s.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (have %s)", ErrUnknownProfile, name, strings.Join(s.names, ", "))
	}
	return p, nil
}

// Names returns the profile names, sorted.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// All returns the profiles sorted by name, shared and not to be changed.
func (s *Set) All() []*Profile {
	out := make([]*Profile, len(s.names))
	for i, n := range s.names {
		out[i] = s.byName[n]
	}
	return out
}

// defaults is what a profile without extends starts from. Every value is
// the closed one: no tools, no exec, no network, a non-root user and modest
// limits, so that a field left out never opens anything.
func defaults() *Profile {
	return &Profile{
		Tools:   Tools{Policy: ToolsAllowlist},
		Exec:    Exec{Security: ExecDeny, Ask: AskOff, AskFallback: AskFallbackDeny},
		Network: Network{Mode: NetworkNone},
		Limits: Limits{
			MemoryBytes:  256 * Mi,
			Pids:         64,
			CPU:          1,
			Timeout:      30 * time.Second,
			OutputBytes:  Mi,
			ScratchBytes: 16 * Mi,
		},
		Isolation: Isolation{
			ReadOnlyRoot:    true,
			NoNewPrivileges: true,
			UID:             65534,
			GID:             65534,
			Seccomp:         SeccompDefault,
			MaskedPaths:     DefaultMaskedPaths(),
			Runtime:         RuntimeRunc,
		},
		Result: Result{MaxStringLength: 4096},
	}
}

// Load reads every *.yaml file at the top of fsys as one profile named
// after the file, resolves extends, and validates each. It returns all
// problems at once, each a *FieldError joined into one error that wraps
// ErrInvalid.
func Load(fsys fs.FS, opts ...Option) (*Set, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("%w: reading profiles: %v", ErrInvalid, err)
	}
	srcs := map[string]*source{}
	var errs []error
	for _, e := range entries {
		file := e.Name()
		switch {
		case e.IsDir() || !strings.HasSuffix(file, ".yaml") && !strings.HasSuffix(file, ".yml"):
			continue
		case strings.HasSuffix(file, ".yml"):
			// A silently skipped file is a policy nobody enforces.
			errs = append(errs, &FieldError{File: file, Msg: "profile files must end in .yaml"})
			continue
		}
		name := strings.TrimSuffix(file, ".yaml")
		data, err := readFile(fsys, file)
		if err != nil {
			errs = append(errs, &FieldError{File: file, Msg: err.Error()})
			continue
		}
		src := decodeFile(file, name, data)
		if !ValidLabel(name) {
			src.errs = append(src.errs, &FieldError{File: file, Msg: fmt.Sprintf("%q is not a valid profile name (want lowercase letters, digits and inner hyphens before .yaml)", name)})
		}
		if s, ok := src.settings["name"]; ok && s.val != name {
			src.errs = append(src.errs, &FieldError{File: file, Line: s.lines["name"], Field: "name", Msg: fmt.Sprintf("%q does not match the file name; the name is the file's", s.val)})
		}
		srcs[name] = src
	}
	if len(srcs) == 0 && len(errs) == 0 {
		return nil, fmt.Errorf("%w: no *.yaml profiles found", ErrInvalid)
	}

	r := &resolver{srcs: srcs, chains: map[string]*chain{}}
	set := &Set{byName: map[string]*Profile{}}
	for _, name := range sortedKeys(srcs) {
		c := r.resolve(name, nil)
		if !c.ok {
			continue
		}
		p, perrs := build(srcs[name], c.merged, cfg)
		if len(perrs) > 0 {
			errs = append(errs, perrs...)
			continue
		}
		set.byName[name] = p
		set.names = append(set.names, name)
	}
	errs = append(errs, productionInvariants(set, srcs)...)
	for _, name := range sortedKeys(srcs) {
		errs = append(errs, srcs[name].errs...)
	}
	if len(errs) > 0 {
		return nil, joinSorted(errs)
	}
	return set, nil
}

// readFile reads at most maxFileSize bytes, refusing larger files rather
// than truncating them.
func readFile(fsys fs.FS, file string) ([]byte, error) {
	f, err := fsys.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("larger than %s; a profile is a few hundred bytes", FormatBytes(maxFileSize))
	}
	return data, nil
}

// chain is a profile's inheritable settings merged down its extends chain.
type chain struct {
	merged map[string]setting
	ok     bool
}

// resolver memoizes chains; a nil entry marks one being resolved, which is
// how a cycle shows itself.
type resolver struct {
	srcs   map[string]*source
	chains map[string]*chain
}

func (r *resolver) resolve(name string, stack []string) *chain {
	if c, done := r.chains[name]; done {
		return c
	}
	src := r.srcs[name]
	r.chains[name] = nil
	stack = append(stack, name)
	c := &chain{merged: map[string]setting{}, ok: len(src.errs) == 0}
	if ext, has := src.settings["extends"]; has {
		parent, line := ext.val.(string), ext.lines["extends"]
		pc, seen := r.chains[parent]
		switch _, known := r.srcs[parent]; {
		case !known:
			src.errs = append(src.errs, &FieldError{File: src.file, Line: line, Field: "extends", Msg: fmt.Sprintf("unknown profile %q (have %s)", parent, strings.Join(sortedKeys(r.srcs), ", "))})
			c.ok = false
		case seen && pc == nil:
			cycle := slices.Concat(stack[slices.Index(stack, parent):], []string{parent})
			src.errs = append(src.errs, &FieldError{File: src.file, Line: line, Field: "extends", Msg: "profiles extend each other in a cycle: " + strings.Join(cycle, " -> ")})
			c.ok = false
		default:
			pc = r.resolve(parent, stack)
			if pc == nil || !pc.ok {
				// The parent's own errors are reported against the parent.
				c.ok = false
			} else {
				maps.Copy(c.merged, pc.merged)
			}
		}
	}
	for path, s := range src.settings {
		if !leaves[path].perFile {
			c.merged[path] = s
		}
	}
	r.chains[name] = c
	return c
}

// build applies merged settings over the defaults, validates the result
// with source positions, and normalizes it.
func build(src *source, merged map[string]setting, cfg config) (*Profile, []error) {
	p := defaults()
	p.Name = src.name
	if s, ok := src.settings["extends"]; ok {
		p.Extends = s.val.(string)
	}
	if s, ok := src.settings["description"]; ok {
		p.Description = s.val.(string)
	}
	where := map[string]pos{}
	for _, s := range src.settings {
		for f, line := range s.lines {
			where[f] = pos{s.file, line}
		}
	}
	for _, path := range sortedKeys(merged) {
		s := merged[path]
		leaves[path].apply(p, s.val)
		for f, line := range s.lines {
			where[f] = pos{s.file, line}
		}
	}
	at := func(field string) pos {
		for f := field; f != ""; f = parentField(f) {
			if p, ok := where[f]; ok {
				return p
			}
		}
		return pos{file: src.file}
	}
	if errs := validate(p, cfg, at); len(errs) > 0 {
		return nil, errs
	}
	normalize(p)
	return p, nil
}

// parentField strips the last [i] or .key from a field path.
func parentField(f string) string {
	if strings.HasSuffix(f, "]") {
		if i := strings.LastIndexByte(f, '['); i >= 0 {
			return f[:i]
		}
	}
	if i := strings.LastIndexByte(f, '.'); i >= 0 {
		return f[:i]
	}
	return ""
}

// normalize puts a valid profile in canonical form, so that equal policies
// hash equally however they were written: lists sorted and deduplicated,
// names in their canonical case, egress entries as host:port.
func normalize(p *Profile) {
	p.Tools.Allowed = sortedSet(lower(p.Tools.Allowed))
	p.Tools.Denied = sortedSet(lower(p.Tools.Denied))
	p.Exec.AllowedPatterns = sortedSet(p.Exec.AllowedPatterns)
	egress := make([]string, len(p.Network.Egress))
	for i, e := range p.Network.Egress {
		r, _ := ParseEgress(e) // validated
		egress[i] = r.String()
	}
	p.Network.Egress = sortedSet(egress)
	if len(p.Network.Services) == 0 {
		p.Network.Services = nil
	}
	for alias, svc := range p.Network.Services {
		if len(svc.Headers) == 0 {
			svc.Headers = nil
		} else {
			h := make(map[string]string, len(svc.Headers))
			for k, v := range svc.Headers {
				h[textproto.CanonicalMIMEHeaderKey(k)] = v
			}
			svc.Headers = h
		}
		p.Network.Services[alias] = svc
	}
	if m := p.Model; m != nil {
		m.Allowed = sortedSet(slices.DeleteFunc(slices.Clone(m.Allowed), func(n string) bool { return n == m.Name }))
	}
	caps := make([]string, len(p.Isolation.Capabilities))
	for i, c := range p.Isolation.Capabilities {
		caps[i] = canonicalCap(c)
	}
	p.Isolation.Capabilities = sortedSet(caps)
	p.Isolation.MaskedPaths = sortedSet(p.Isolation.MaskedPaths)
}

// sortedSet sorts and deduplicates, and turns empty into nil so that an
// explicit [] and an omitted list hash the same.
func sortedSet(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func lower(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.ToLower(n)
	}
	return out
}

// joinSorted orders errors by file and line and drops repeats, which arise
// when a child inherits a parent's bad value.
func joinSorted(errs []error) error {
	slices.SortStableFunc(errs, func(a, b error) int {
		fa, _ := a.(*FieldError)
		fb, _ := b.(*FieldError)
		if fa == nil || fb == nil {
			return 0
		}
		return cmp.Or(cmp.Compare(fa.File, fb.File), cmp.Compare(fa.Line, fb.Line), cmp.Compare(fa.Field, fb.Field))
	})
	errs = slices.CompactFunc(errs, func(a, b error) bool { return a.Error() == b.Error() })
	return errors.Join(errs...)
}

// productionProfiles may not be loosened into a writable rootfs, by their
// own file or by any profile that extends them: operators pick them for
// production on the strength of that promise.
var productionProfiles = []string{"secureclaw", "ironclaw"}

func productionInvariants(set *Set, srcs map[string]*source) []error {
	var errs []error
	for _, name := range set.names {
		p := set.byName[name]
		if p.Isolation.ReadOnlyRoot {
			continue
		}
		for anc := p; anc != nil; anc = set.byName[anc.Extends] {
			if !slices.Contains(productionProfiles, anc.Name) {
				if anc.Extends == "" {
					break
				}
				continue
			}
			file, line := name+".yaml", 0
			if st, ok := srcs[name].settings["isolation.readOnlyRoot"]; ok {
				file, line = st.file, st.lines["isolation.readOnlyRoot"]
			}
			errs = append(errs, &FieldError{File: file, Line: line, Field: "isolation.readOnlyRoot",
				Msg: fmt.Sprintf("false is not allowed in %s or a profile extending it: the rootfs must stay read-only", anc.Name)})
			break
		}
	}
	return errs
}

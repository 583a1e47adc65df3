package policy

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing/fstest"
)

// Lint loads files as profiles alongside base (so that extends can name a
// base profile), and returns every problem in them. A file named like a
// base profile replaces it.
func Lint(base fs.FS, files []string, opts ...Option) (*Set, error) {
	m := fstest.MapFS{}
	if base != nil {
		entries, err := fs.ReadDir(base, ".")
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			data, err := fs.ReadFile(base, e.Name())
			if err != nil {
				return nil, err
			}
			m[e.Name()] = &fstest.MapFile{Data: data, Mode: 0o644}
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		m[filepath.Base(f)] = &fstest.MapFile{Data: data, Mode: 0o644}
	}
	return Load(m, opts...)
}

// Diff lists, one line each, the settings in which b differs from a, by
// their JSON path: `limits.memoryBytes: 536870912 -> 134217728`.
func Diff(a, b *Profile) ([]string, error) {
	fa, err := flatten(a)
	if err != nil {
		return nil, err
	}
	fb, err := flatten(b)
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		if k == "name" || k == "description" {
			continue
		}
		va, oka := fa[k]
		vb, okb := fb[k]
		if oka && okb && reflect.DeepEqual(va, vb) {
			continue
		}
		out = append(out, fmt.Sprintf("%s: %s -> %s", k, show(va, oka), show(vb, okb)))
	}
	sort.Strings(out)
	return out, nil
}

func show(v any, ok bool) string {
	if !ok {
		return "(unset)"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// flatten maps a profile's JSON form to leaf paths. Lists stay whole: a
// changed allowlist is one difference, shown in full.
func flatten(p *Profile) (map[string]any, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	out := map[string]any{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, x := range m {
			path := k
			if prefix != "" {
				path = prefix + "." + k
			}
			if sub, ok := x.(map[string]any); ok && len(sub) > 0 {
				walk(path, sub)
				continue
			}
			out[path] = x
		}
	}
	walk("", v)
	return out, nil
}

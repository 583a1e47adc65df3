package doctor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/airlock/airlock/policies/policy"
)

// checkProfiles loads the profiles as airlockd does and reports every
// invariant they break, located by file, line and field. A policy dir
// others can write is as bad as a broken profile: they could loosen it.
func checkProfiles(_ context.Context, e *env) result {
	var f findings
	dir := e.cfg.PolicyDir
	source := "shipped profiles"
	if dir != "" {
		source = dir
		checkPolicyDirPerms(&f, dir, e.cfg.owner)
	}
	const fix = "fix each field named (airlock policy lint FILE shows the same), or leave --policy-dir unset for the shipped profiles"
	if e.profilesErr != nil {
		fes := fieldErrors(e.profilesErr)
		for _, fe := range fes {
			located := *fe
			if dir != "" && located.File != "" {
				located.File = filepath.Join(dir, located.File)
			}
			f.add(Fail, located.Error(), fix)
		}
		if len(fes) == 0 {
			f.add(Fail, e.profilesErr.Error(), fix)
		}
		return f.result("")
	}
	names := e.profiles.Names()
	def := e.cfg.DefaultProfile
	if def == "" {
		def = "secureclaw"
	}
	if _, err := e.profiles.Get(def); err != nil {
		f.add(Fail, fmt.Sprintf("default profile %q is not among %s (%s): airlockd refuses to start", def, source, strings.Join(names, ", ")),
			"add "+def+".yaml or pass --default-profile")
	}
	for _, name := range slices.Sorted(maps.Keys(e.cfg.Pools)) {
		if _, err := e.profiles.Get(name); err != nil {
			f.add(Fail, fmt.Sprintf("--pool %s=%d names a profile not among %s (%s): airlockd refuses to start", name, e.cfg.Pools[name], source, strings.Join(names, ", ")),
				"name a profile that exists in --pool, or add "+name+".yaml")
		}
	}
	return f.result(fmt.Sprintf("%d profiles from %s hold every invariant: %s", len(names), source, strings.Join(names, ", ")))
}

// checkPolicyDirPerms adds a finding for a policy dir or profile that
// someone other than root (or owner) can change.
func checkPolicyDirPerms(f *findings, dir string, uid int) {
	paths := []string{dir}
	if m, err := filepath.Glob(filepath.Join(dir, "*.yaml")); err == nil {
		paths = append(paths, m...)
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		if perm := st.Mode().Perm(); perm&0o022 != 0 {
			f.add(Fail, fmt.Sprintf("%s has mode %#o: other users can loosen the profiles", p, perm), "chmod go-w "+p)
		}
		if o := owner(st); o != 0 && o != uid {
			f.add(Fail, fmt.Sprintf("%s is owned by uid %d, who can loosen the profiles", p, o), "chown root "+p)
		}
	}
}

// fieldErrors flattens the joined errors policy.Load returns.
func fieldErrors(err error) []*policy.FieldError {
	var out []*policy.FieldError
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*policy.FieldError); ok {
			out = append(out, fe)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if u := errors.Unwrap(err); u != nil {
			walk(u)
		}
	}
	walk(err)
	return out
}

package policy

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies"
)

// fuzzBase is a valid parent that fuzzed files may extend.
const fuzzBase = `tools: {allowed: [group:agent, exec]}
exec: {security: allowlist, allowedPatterns: [/bin/cat], ask: on-miss}
network:
  mode: allowlist
  egress: [api.example.com]
limits: {memory: 128Mi, timeout: 20s}
`

// checkLoad loads data as fuzz.yaml beside fuzzBase and checks what must
// hold whatever the input: no panic, errors that wrap ErrInvalid and name
// their file, and profiles that pass validation and behave.
func checkLoad(t *testing.T, data []byte) error {
	t.Helper()
	fsys := fstest.MapFS{
		"base.yaml": {Data: []byte(fuzzBase)},
		"fuzz.yaml": {Data: data},
	}
	set, err := Load(fsys, checkSchema)
	devSet, devErr := Load(fsys, WithDevMode(true), checkSchema)
	if err == nil && devErr != nil {
		t.Fatalf("loads without dev mode but not with it: %v", devErr)
	}
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error does not wrap ErrInvalid: %v", err)
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, "fuzz.yaml") && !strings.HasPrefix(line, "base.yaml") {
				t.Fatalf("error line does not name its file: %q", line)
			}
		}
	}
	for _, s := range []struct {
		set *Set
		cfg config
	}{{set, config{checkSchema: result.CheckSchema}}, {devSet, config{devMode: true, checkSchema: result.CheckSchema}}} {
		if s.set == nil {
			continue
		}
		for _, p := range s.set.All() {
			checkProfile(t, p, s.cfg)
		}
	}
	return err
}

func checkProfile(t *testing.T, p *Profile, cfg config) {
	t.Helper()
	if errs := validate(p, cfg, nil); len(errs) > 0 {
		t.Fatalf("%s: loaded profile fails validation: %v", p.Name, errs)
	}
	n := p.Clone()
	normalize(n)
	if !reflect.DeepEqual(n, p) {
		t.Fatalf("%s: loaded profile is not in normal form:\n%+v\n%+v", p.Name, p, n)
	}
	if p.Clone().Hash() != p.Hash() {
		t.Fatalf("%s: clone hashes differently", p.Name)
	}
	if q, err := p.Tighten(Overrides{}); err != nil || q.Hash() != p.Hash() {
		t.Fatalf("%s: Tighten with no overrides = %v, %v", p.Name, q, err)
	}
	if p.Summary() == "" || (p.Image() != ImageReader && p.Image() != ImageTools+"-"+p.Name) {
		t.Fatalf("%s: Summary %q Image %q", p.Name, p.Summary(), p.Image())
	}
	tools := p.EffectiveTools([]string{"read", "EXEC", "web_fetch"})
	if !slices.IsSorted(tools) || slices.ContainsFunc(tools, func(s string) bool { return s != strings.ToLower(s) }) {
		t.Fatalf("%s: EffectiveTools = %v, want sorted lowercase", p.Name, tools)
	}
	if p.ExecAllowed() != (p.Image() == ImageTools+"-"+p.Name) {
		t.Fatalf("%s: ExecAllowed and Image disagree", p.Name)
	}
}

// corpus returns testdata/corpus/*.yaml with the expectation in each
// file's first line: "# want: ok" or "# want: <error substring>".
func corpus(t testing.TB) map[string][]byte {
	files, err := filepath.Glob("testdata/corpus/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = data
	}
	return out
}

func TestLoadProfile_Corpus(t *testing.T) {
	for name, data := range corpus(t) {
		t.Run(name, func(t *testing.T) {
			first, _, _ := bufio.NewReader(bytes.NewReader(data)).ReadLine()
			want, ok := strings.CutPrefix(string(first), "# want: ")
			if !ok {
				t.Fatal(`corpus file must start with "# want: "`)
			}
			err := checkLoad(t, data)
			switch {
			case want == "ok" && err != nil:
				t.Fatalf("Load: %v", err)
			case want != "ok" && (err == nil || !strings.Contains(err.Error(), want)):
				t.Fatalf("Load error = %v, want it to contain %q", err, want)
			}
		})
	}
}

func FuzzLoadProfile(f *testing.F) {
	for _, data := range corpus(f) {
		f.Add(data)
	}
	for _, name := range []string{"vanilla.yaml", "secureclaw.yaml", "ironclaw.yaml"} {
		data, err := policies.FS.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkLoad(t, data)
	})
}

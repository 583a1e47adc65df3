// Package docs holds the checks that keep docs/architecture.md and the
// README's layout table true: the layer rules as `go list -deps` sees them,
// and a layout table generated from the package docs; and the exit codes
// and fetch cap the docs quote, which must be sandbox/job's.
package docs

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/airlock/airlock/"

// pkg is one package of the module with everything it links, tests aside.
type pkg struct {
	path    string   // relative to the module, e.g. "sandbox/job"
	imports []string // direct imports, full paths
	deps    []string // transitive imports, full paths
}

// listPackages runs `go list -deps` over the whole module once.
func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	pkgs := map[string]pkg{}
	for _, line := range goList(t, "-f", "{{.ImportPath}}|{{join .Imports \" \"}}|{{join .Deps \" \"}}", "./...") {
		parts := strings.SplitN(line, "|", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[0], module) {
			continue
		}
		p := pkg{path: strings.TrimPrefix(parts[0], module), imports: strings.Fields(parts[1]), deps: strings.Fields(parts[2])}
		pkgs[p.path] = p
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages of the module; is the test running in docs/?", len(pkgs))
	}
	return pkgs
}

// goList runs `go list` with args at the module's root and returns its
// lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

// TestLayers_DependenciesPointOneWay proves the layer picture of
// docs/architecture.md: cmd → broker → domain ← sandbox. The broker never
// links containerd or the sandbox's machinery, only the job contract; the
// sandbox never links the broker's server, auth, audit, result checking or
// the API; the domain links neither side.
func TestLayers_DependenciesPointOneWay(t *testing.T) {
	pkgs := listPackages(t)
	rules := []struct {
		layer  string   // packages under this directory of the module...
		forbid []string // ...link nothing under these import paths...
		except []string // ...but these.
		why    string
	}{
		{
			layer:  "broker",
			forbid: []string{"github.com/containerd", module + "sandbox", "github.com/google/nftables", "github.com/vishvananda/netlink"},
			except: []string{module + "sandbox/job", module + "sandbox/job/panics"},
			why:    "the broker hands jobs to a Runner through sandbox/job (and logs a job's panic as the sandbox does) and never makes a sandbox itself",
		},
		{
			layer:  "sandbox",
			forbid: []string{module + "broker", module + "proto", module + "cmd", "github.com/santhosh-tekuri/jsonschema", "google.golang.org/grpc/reflection"},
			why:    "the sandbox runs jobs; serving, auth, audit, the API and result checking are the broker's",
		},
		{
			layer:  "policies",
			forbid: []string{module + "broker", module + "sandbox", module + "cmd", module + "proto", "google.golang.org/grpc", "github.com/containerd", "github.com/santhosh-tekuri/jsonschema"},
			why:    "policy is the domain both sides share; it depends on neither",
		},
		{
			layer:  "images",
			forbid: []string{module + "broker", module + "sandbox", module + "cmd", module + "proto", "github.com/containerd/containerd"},
			why:    "images are built from static binaries alone",
		},
	}
	for _, r := range rules {
		n := 0
		for _, p := range pkgs {
			if !under(p.path, r.layer) {
				continue
			}
			n++
			for _, d := range p.deps {
				if slices.Contains(r.except, d) {
					continue
				}
				for _, f := range r.forbid {
					if d == f || strings.HasPrefix(d, f+"/") {
						t.Errorf("%s links %s: %s", p.path, d, r.why)
					}
				}
			}
		}
		if n == 0 {
			t.Errorf("no package under %s/: the rule checks nothing", r.layer)
		}
	}
}

// TestLayers_JobContractIsALeaf keeps sandbox/job what both sides can
// import: it links nothing of the project but the policy it carries, which
// itself links nothing of the project but images/imageref, the rule for
// agent.image, which links nothing at all.
func TestLayers_JobContractIsALeaf(t *testing.T) {
	pkgs := listPackages(t)
	allowed := map[string][]string{
		"sandbox/job":         {"policies/policy", "images/imageref"},
		"sandbox/job/panics":  nil,
		"policies/policy":     {"images/imageref"},
		"policies/execpolicy": nil,
		"images/imageref":     nil,
	}
	for path, want := range allowed {
		p, ok := pkgs[path]
		if !ok {
			t.Errorf("package %s is gone; update this test and docs/architecture.md", path)
			continue
		}
		for _, d := range p.deps {
			if rel, ok := strings.CutPrefix(d, module); ok && !slices.Contains(want, rel) {
				t.Errorf("%s links %s; it may link only %v of the project", path, rel, want)
			}
		}
	}
}

// TestLayers_CLILinksContainerdOnlyWhereASubcommandNeedsIt: the airlock CLI
// talks to airlockd over gRPC. Two subcommands need containerd's code in
// the binary: bench, whose baseline drives containerd's Go client directly,
// and policy explain, which renders a profile's OCI spec with the runner's
// own SpecOpts (containerd's oci package). Nothing else may bring it in.
func TestLayers_CLILinksContainerdOnlyWhereASubcommandNeedsIt(t *testing.T) {
	pkgs := listPackages(t)
	need := map[string]string{
		module + "cmd/airlock/internal/bench": "airlock bench",
		module + "sandbox":                    "airlock policy explain",
	}
	linksContainerd := func(path string) bool {
		p, ok := pkgs[strings.TrimPrefix(path, module)]
		if !ok {
			return strings.HasPrefix(path, "github.com/containerd/containerd")
		}
		return slices.ContainsFunc(p.deps, func(d string) bool { return strings.HasPrefix(d, "github.com/containerd/containerd") })
	}
	cli, ok := pkgs["cmd/airlock"]
	if !ok {
		t.Fatal("cmd/airlock is gone")
	}
	for _, imp := range cli.imports {
		if !linksContainerd(imp) {
			continue
		}
		if _, ok := need[imp]; !ok {
			t.Errorf("cmd/airlock imports %s, which links containerd; only %v may", imp, need)
		}
	}
}

// TestLayers_AgentLinksNoBrokerOrContainerd: the reference agent runs
// inside the sandbox, as a static binary with the least code.
func TestLayers_AgentLinksNoBrokerOrContainerd(t *testing.T) {
	agent, ok := listPackages(t)["cmd/airlock-agent"]
	if !ok {
		t.Fatal("cmd/airlock-agent is gone")
	}
	for _, d := range agent.deps {
		for _, f := range []string{module + "broker", module + "proto", "github.com/containerd", "google.golang.org/grpc"} {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("cmd/airlock-agent links %s", d)
			}
		}
	}
}

//go:build agents

package agents_test

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/images/rootfs/rootfstest"
	"github.com/airlock/airlock/images/rootfs/runctest"
	"github.com/airlock/airlock/integration/modelserver"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox"
	"github.com/airlock/airlock/sandbox/agent"
	"github.com/airlock/airlock/sandbox/job"
)

var imagesDir = flag.String("images", "../../bin/agents", "where make agents put the images")

// images are the example agents and the entrypoints mkrootfs.sh gives them.
var images = []struct {
	name       string
	entrypoint []string
}{
	{"python-agent", []string{"/usr/bin/python3", "-I", "-B", "/app/agent.py"}},
	{"node-agent", []string{"/usr/bin/node", "/app/agent.mjs"}},
}

// TestImages_FollowTheImportRules: rootfstest.Check reads each image as
// airlockd's import does (package agentimage), mountpoints included.
func TestImages_FollowTheImportRules(t *testing.T) {
	for _, im := range images {
		t.Run(im.name, func(t *testing.T) {
			img, err := rootfstest.Check(filepath.Join(*imagesDir, im.name+".tar"))
			if err != nil {
				t.Fatalf("an import would refuse it: %v", err)
			}
			if !slices.Equal(img.Config.Config.Entrypoint, im.entrypoint) {
				t.Errorf("entrypoint = %q, want %q", img.Config.Config.Entrypoint, im.entrypoint)
			}
		})
	}
}

// profile is a shipped profile without a user namespace, so that the
// test's files need no mapped owner.
func profile(t *testing.T) *policy.Profile {
	t.Helper()
	set, err := policy.Load(policies.FS, policy.WithSchemaCheck(func(s string) error {
		if !json.Valid([]byte(s)) {
			return errors.New("not JSON")
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := set.Get("vanilla")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// run is one run of an image under runc with the spec the profile's jobs
// get, the image's entrypoint as its command, and job.json and content as
// the runner writes them.
type run struct {
	image string
	job   agent.Job
	// content is by name.
	content map[string][]byte
	// hostNetwork replaces the job's own network namespace with the
	// host's, for a model on the host's loopback; env adds to the spec's.
	hostNetwork bool
	env         []string
}

// outcome is how a run ended.
type outcome struct {
	exit   int
	stderr string
	result []byte
}

func (r run) do(t *testing.T) outcome {
	t.Helper()
	runctest.NeedRoot(t)
	dir := t.TempDir()
	rootfs, input, output, runDir := filepath.Join(dir, "rootfs"), filepath.Join(dir, "input"), filepath.Join(dir, "output"), filepath.Join(dir, "run")
	for _, d := range []string{rootfs, filepath.Join(input, "content"), output, runDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img, err := rootfstest.Unpack(filepath.Join(*imagesDir, r.image+".tar"), rootfs)
	if err != nil {
		t.Fatal(err)
	}
	r.job.ContractVersion = cmpOr(r.job.ContractVersion, agent.ContractVersion)
	for name, data := range r.content {
		if err := os.WriteFile(filepath.Join(input, "content", name), data, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	jb, err := json.Marshal(r.job)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(input, "job.json"), jb, 0o444); err != nil {
		t.Fatal(err)
	}
	p := profile(t)
	if err := os.Chown(output, int(p.Isolation.UID), int(p.Isolation.GID)); err != nil {
		t.Fatal(err)
	}

	spec, err := sandbox.Explain(p)
	if err != nil {
		t.Fatal(err)
	}
	spec.Root.Path = rootfs
	spec.Process.Args = img.Config.Config.Entrypoint
	spec.Process.Env = append(spec.Process.Env, r.env...)
	spec.Annotations = nil
	spec.Linux.CgroupsPath = ""
	for i, m := range spec.Mounts {
		switch m.Source {
		case sandbox.ExplainPaths.Input:
			spec.Mounts[i].Source = input
		case sandbox.ExplainPaths.Output:
			spec.Mounts[i].Source = output
		case sandbox.ExplainPaths.Run:
			spec.Mounts[i].Source = runDir
		}
	}
	if r.hostNetwork {
		spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
			return ns.Type == specs.NetworkNamespace
		})
	}
	res := runctest.Run(t, spec, p.Limits.Timeout)
	out := outcome{exit: res.Exit, stderr: res.Output}
	out.result, _ = os.ReadFile(filepath.Join(output, "result.json"))
	return out
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// process is what the broker does with result.json, with the example
// schema of the task.
func process(t *testing.T, raw []byte, schemaFile string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := result.CompileSchema(string(b))
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := result.Process(raw, s, 1<<20, result.SanitizeOptions{})
	if err != nil {
		t.Fatalf("the broker refuses result.json %s: %v", raw, err)
	}
	return st.AsMap()
}

func page(t *testing.T) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile("../page.html")
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{"0": b}
}

func TestImages_ExtractTextUnderAShippedProfile(t *testing.T) {
	for _, im := range images {
		t.Run(im.name, func(t *testing.T) {
			out := run{image: im.name, content: page(t), job: agent.Job{
				ID: "j1", Task: "extract_text", Tools: []string{}, Content: []agent.ContentFile{{Name: "0", MediaType: "text/html"}},
			}}.do(t)
			if out.exit != 0 {
				t.Fatalf("exit %d, stderr %q", out.exit, out.stderr)
			}
			got := process(t, out.result, "../schemas/extract_text.schema.json")
			if got["title"] != "Widget Co. quarterly update" || !strings.Contains(got["text"].(string), "Shipping costs fell") {
				t.Errorf("result = %v", got)
			}
			if strings.Contains(got["text"].(string), "<script") {
				t.Errorf("the text holds markup: %q", got["text"])
			}
		})
	}
}

func TestImages_RefuseAnotherContractVersion(t *testing.T) {
	for _, im := range images {
		t.Run(im.name, func(t *testing.T) {
			out := run{image: im.name, content: page(t), job: agent.Job{
				ContractVersion: agent.ContractVersion + 1, ID: "j1", Task: "extract_text", Tools: []string{},
				Content: []agent.ContentFile{{Name: "0", MediaType: "text/html"}},
			}}.do(t)
			if out.exit != job.ExitContract || out.result != nil {
				t.Errorf("exit %d with result %q, want exit %d and no result; stderr %q", out.exit, out.result, job.ExitContract, out.stderr)
			}
		})
	}
}

func TestImages_RefuseAnUnknownTask(t *testing.T) {
	for _, im := range images {
		t.Run(im.name, func(t *testing.T) {
			out := run{image: im.name, content: page(t), job: agent.Job{
				ID: "j1", Task: "rm -rf", Tools: []string{}, Content: []agent.ContentFile{{Name: "0"}},
			}}.do(t)
			if out.exit != job.ExitBadJob || out.result != nil {
				t.Errorf("exit %d with result %q, want exit %d and no result; stderr %q", out.exit, out.result, job.ExitBadJob, out.stderr)
			}
		})
	}
}

// TestImages_AgentTaskThroughTheModelAlias runs the agent task against the
// stand-in model on the host's loopback. The job then shares the host's
// network, and the stand-in is its HTTP_PROXY: it takes the absolute-form
// request for http://model.airlock.internal/... as the egress proxy would
// pass it on. The real proxy's part is the lead's end-to-end test.
func TestImages_AgentTaskThroughTheModelAlias(t *testing.T) {
	srv, err := modelserver.Start(modelserver.Options{Scripts: modelserver.Builtin(), MaxRecorded: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	schema, err := os.ReadFile("../schemas/answer.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range images {
		for _, api := range []string{"openai", "anthropic"} {
			t.Run(im.name+"/"+api, func(t *testing.T) {
				before := len(srv.Requests())
				out := run{image: im.name, content: page(t), hostNetwork: true, env: []string{"HTTP_PROXY=" + srv.URL()}, job: agent.Job{
					ID: "j1", Task: agent.TaskAgent, Tools: []string{}, Content: []agent.ContentFile{{Name: "0", MediaType: "text/html"}},
					Instructions: "Say what the page reports.", Schema: schema,
					Model: &agent.Model{URL: "http://model.airlock.internal", API: api, Name: "stand-in",
						MaxTurns: 2, MaxOutputTokens: 256, MaxReplyBytes: 1 << 16},
				}}.do(t)
				if out.exit != 0 {
					t.Fatalf("exit %d, stderr %q", out.exit, out.stderr)
				}
				got := process(t, out.result, "../schemas/answer.schema.json")
				if !strings.Contains(got["answer"].(string), "Widget Co.") {
					t.Errorf("answer = %q, want a quote of the page", got["answer"])
				}
				reqs := srv.Requests()[before:]
				if len(reqs) != 1 || reqs[0].API != api || reqs[0].Model != "stand-in" {
					t.Fatalf("the model saw %d requests (%+v), want one %s request", len(reqs), reqs, api)
				}
				body := string(reqs[0].Body)
				// The content reaches the model as visible text between a
				// boundary, never its markup.
				if !strings.Contains(body, "<<airlock-data-") || strings.Contains(body, "<script") {
					t.Errorf("the request does not fence the content's text: %.400s", body)
				}
			})
		}
	}
}

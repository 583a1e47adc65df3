package sandbox

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/job"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// hostileConfig asks for everything the sandbox must not give.
func hostileConfig() *v1.ConfigFile {
	return &v1.ConfigFile{OS: "linux", Architecture: "amd64", Config: v1.Config{
		User:         "root",
		Env:          []string{"AWS_SECRET_ACCESS_KEY=s3cr3t", "LD_PRELOAD=/evil.so", "PATH=/evil"},
		Volumes:      map[string]struct{}{"/data": {}},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		Healthcheck:  &v1.HealthConfig{Test: []string{"CMD", "true"}},
		StopSignal:   "SIGUSR1",
		WorkingDir:   "/app",
		Labels:       map[string]string{"a": "b"},
		Entrypoint:   []string{"/app/agent"},
		Cmd:          []string{"--serve"},
	}}
}

func agentProfile(command ...string) *policy.Profile {
	p := testProfile()
	p.Agent = &policy.Agent{Image: "my-agent@" + testDigest, Command: command}
	return p
}

// TestAgentImage_OnlyEntrypointAndCmdReachTheSpec: the image's USER, ENV,
// VOLUME and the rest change nothing of the spec; its entrypoint, cmd and
// clean WORKDIR are the agent's process.
func TestAgentImage_OnlyEntrypointAndCmdReachTheSpec(t *testing.T) {
	p := agentProfile()
	ag, err := agentOf(AgentImage{Profile: p.Name, Agent: p.Agent}, hostileConfig())
	if err != nil {
		t.Fatal(err)
	}
	s := generate(t, append(SpecFor("r", p, ExplainPaths), (&loadedImage{agent: ag}).process())...)
	if !slices.Equal(s.Process.Args, []string{"/app/agent", "--serve"}) || s.Process.Cwd != "/app" {
		t.Errorf("args %v cwd %q", s.Process.Args, s.Process.Cwd)
	}
	if s.Process.User.UID != 65534 || s.Process.User.GID != 65534 {
		t.Errorf("user %+v, want the profile's 65534", s.Process.User)
	}
	if want := append(Env("r"), ProxyEnv("")...); !slices.Equal(s.Process.Env, want) {
		t.Errorf("env %v, want %v", s.Process.Env, want)
	}
	for _, m := range s.Mounts {
		if m.Destination == "/data" {
			t.Errorf("the image's VOLUME is mounted: %+v", m)
		}
	}
	if !s.Root.Readonly {
		t.Error("root is writable")
	}
	// The same spec as the reference agent's, but for the process.
	ref := generate(t, SpecFor("r", p, ExplainPaths)...)
	s.Process.Args, s.Process.Cwd, s.Process.Env = ref.Process.Args, ref.Process.Cwd, ref.Process.Env
	sj, rj := mustJSON(t, s), mustJSON(t, ref)
	if sj != rj {
		t.Errorf("an imported image's spec differs from the reference agent's beyond its process:\n%s\n%s", sj, rj)
	}
}

func TestAgentImage_CommandReplacesEntrypoint(t *testing.T) {
	p := agentProfile("/app/other", "-x")
	ag, err := agentOf(AgentImage{Profile: p.Name, Agent: p.Agent}, hostileConfig())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ag.args, []string{"/app/other", "-x"}) {
		t.Errorf("args %v", ag.args)
	}
	if !slices.Contains(ag.overridden, "image ENTRYPOINT and CMD replaced by the profile's agent.command") {
		t.Errorf("overridden %v", ag.overridden)
	}
	// Neither an entrypoint nor a cmd nor a command: refused at start.
	if _, err := agentOf(AgentImage{Profile: "p", Agent: &policy.Agent{Image: "a@" + testDigest}}, &v1.ConfigFile{}); err == nil || !strings.Contains(err.Error(), "agent.command") {
		t.Errorf("no entrypoint: %v", err)
	}
}

// TestAgentImage_OverriddenNamesWhatIsIgnoredAndQuotesIt: explain says
// what of the image is ignored, never an ENV value, and quotes what the
// image wrote, escapes included.
func TestAgentImage_OverriddenNamesWhatIsIgnoredAndQuotesIt(t *testing.T) {
	cfg := hostileConfig()
	cfg.Config.Env = append(cfg.Config.Env, "\x1b]0;title\x07=x")
	cfg.Config.WorkingDir = "app/../x"
	p := agentProfile()
	got := overridden(AgentImage{Profile: "p", Agent: p.Agent}, cfg)
	text := strings.Join(got, "\n")
	for _, want := range []string{
		`image USER "root" -> the profile's uid and gid`,
		`image ENV "AWS_SECRET_ACCESS_KEY" dropped`,
		`image ENV "\x1b]0;title\a" dropped`,
		`image VOLUME "/data" ignored`,
		`image EXPOSE "8080/tcp" ignored`,
		"image HEALTHCHECK ignored",
		`image STOPSIGNAL "SIGUSR1" ignored`,
		"image LABELs ignored (1)",
		`image WORKDIR "app/../x" ignored`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("overridden lacks %s:\n%s", want, text)
		}
	}
	if strings.Contains(text, "s3cr3t") || strings.ContainsRune(text, 0x1b) {
		t.Errorf("overridden shows an ENV value or a raw escape:\n%q", text)
	}
	many := &v1.ConfigFile{}
	for i := range 100 {
		many.Config.Env = append(many.Config.Env, "K"+strings.Repeat("x", i)+"=v")
	}
	if got := overridden(AgentImage{Profile: "p", Agent: p.Agent}, many); len(got) != maxOverridden+1 || got[maxOverridden] != "and 68 more" {
		t.Errorf("%d lines, last %q", len(got), got[len(got)-1])
	}
}

// TestExplain_AgentProfileWithoutTheImage: explained away from airlockd,
// an agent profile shows its image and where to read its overrides.
func TestExplain_AgentProfileWithoutTheImage(t *testing.T) {
	s, err := explain(agentProfile(), nil, unreadAgent(agentProfile()))
	if err != nil {
		t.Fatal(err)
	}
	if s.Annotations[AnnotationImage] != "my-agent@"+testDigest || !strings.Contains(s.Annotations[AnnotationImageOverridden], "airlock explain test") {
		t.Errorf("annotations %v", s.Annotations)
	}
	if !strings.Contains(s.Process.Args[0], "ENTRYPOINT and CMD of my-agent@") {
		t.Errorf("args %v", s.Process.Args)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestNotImported_ADigestMismatchNamesBothAndNeverFallsBack: a profile
// pinning a digest that is not the imported one is an error naming the
// profile, the image, both digests and what to do.
func TestNotImported_ADigestMismatchNamesBothAndNeverFallsBack(t *testing.T) {
	other := "sha256:" + strings.Repeat("f", 64)
	have := []job.ImageInfo{{Name: "my-agent", Digest: other}, {Name: "else", Digest: testDigest}}
	err := notImported("prof", "my-agent", testDigest, have)
	for _, want := range []string{"profile prof", "agent.image my-agent@" + testDigest, "imported with digest " + other, "pin the imported digest"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("mismatch: %v\nwant %q", err, want)
		}
	}
	err = notImported("prof", "my-agent", testDigest, have[1:])
	if err == nil || !strings.Contains(err.Error(), "is not imported") || !strings.Contains(err.Error(), "airlock image import FILE --name my-agent") {
		t.Errorf("not imported: %v", err)
	}
}

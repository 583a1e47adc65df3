package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/airlock/airlock/images/imageref"
	"github.com/airlock/airlock/policies"
)

const agentDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// loadWithShipped loads body as my.yaml beside the shipped profiles, so
// that it can extend them.
func loadWithShipped(body string) (*Profile, error) {
	files := map[string]string{"my.yaml": body}
	for _, n := range []string{"vanilla.yaml", "secureclaw.yaml", "ironclaw.yaml"} {
		b, err := policies.FS.ReadFile(n)
		if err != nil {
			return nil, err
		}
		files[n] = string(b)
	}
	set, err := load(files)
	if err != nil {
		return nil, err
	}
	return set.Get("my")
}

func TestAgent_LoadsAPinnedImage(t *testing.T) {
	p, err := loadWithShipped("extends: vanilla\nexec: {security: deny, allowedPatterns: []}\nagent:\n  image: my-agent@" + agentDigest + "\n  command: [/app/agent, --fast]\n")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if p.Agent.ImageName() != "my-agent" || p.Agent.ImageDigest() != agentDigest || p.Image() != p.Agent.Key() || !strings.HasPrefix(p.Image(), ImageAgentPrefix+"my-agent@"+agentDigest+"#") {
		t.Errorf("agent %+v image %q", p.Agent, p.Image())
	}
	c := p.Clone()
	c.Agent.Command[0] = "/other"
	if p.Agent.Command[0] != "/app/agent" {
		t.Error("Clone shares agent.command")
	}
	other, err := loadWithShipped("extends: vanilla\nexec: {security: deny, allowedPatterns: []}\nagent:\n  image: my-agent@" + strings.Replace(agentDigest, "0123", "9999", 1) + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if other.Hash() == p.Hash() {
		t.Error("two digests of one image hash alike")
	}
}

// TestAgent_Refuses: a bare name, a malformed digest, a relative command
// and exec are each refused at load, naming the field.
func TestAgent_Refuses(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"bare name", "agent: {image: my-agent}", `agent.image: "my-agent" has no digest`},
		{"tag", "agent: {image: 'my-agent:latest'}", `is not NAME@sha256`},
		{"short digest", "agent: {image: my-agent@sha256:abc}", `is not NAME@sha256`},
		{"uppercase name", "agent: {image: My-Agent@" + agentDigest + "}", `is not NAME@sha256`},
		{"name over the limit", "agent: {image: " + strings.Repeat("a", imageref.MaxNameBytes+1) + "@" + agentDigest + "}", "is not " + imageref.RefRule},
		{"sha512", "agent: {image: my-agent@sha512:" + strings.Repeat("ab", 64) + "}", "is not " + imageref.RefRule},
		{"no image", "agent: {command: [/app/agent]}", `agent.image: is required`},
		{"relative command", "agent: {image: a@" + agentDigest + ", command: [agent]}", `agent.command[0]: "agent" must be a clean absolute path`},
		{"exec", "extends: vanilla\nagent: {image: a@" + agentDigest + "}", `cannot allow exec`},
		{"unknown field", "agent: {image: a@" + agentDigest + ", user: root}", `agent.user`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadWithShipped("exec: {security: deny, allowedPatterns: []}\n" + tt.body + "\n")
			if tt.name == "exec" {
				_, err = loadWithShipped(tt.body + "\n")
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load: %v\nwant ErrInvalid with %q", err, tt.want)
			}
		})
	}
}

// Profiles that run one image with different commands run different
// agents: their images' keys differ, so that one's command never runs
// another's jobs.
func TestAgentKey_DiffersByCommand(t *testing.T) {
	const img = "my-agent@sha256:0000000000000000000000000000000000000000000000000000000000000000"
	plain := (&Agent{Image: img}).Key()
	a := (&Agent{Image: img, Command: []string{"/app/a", "b"}}).Key()
	b := (&Agent{Image: img, Command: []string{"/app/a b"}}).Key()
	if plain != ImageAgentPrefix+img || a == plain || b == plain || a == b {
		t.Errorf("keys: no command %q, [/app/a b] %q, [/app/a\\ b] %q; want three, the first agent:%s", plain, a, b, img)
	}
	if again := (&Agent{Image: img, Command: []string{"/app/a", "b"}}).Key(); again != a {
		t.Errorf("the same command's key %q, then %q", a, again)
	}
}

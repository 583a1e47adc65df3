package imageref_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock/airlock/images/imageref"
)

var (
	hex64  = strings.Repeat("0123456789abcdef", 4)
	digest = "sha256:" + hex64
)

func TestValidName(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want bool
	}{
		{"one letter", "a", true},
		{"one digit", "0", true},
		{"hyphenated", "my-agent", true},
		{"every separator", "a.b_c-d", true},
		{"digits and letters", "agent2b", true},
		{"128 bytes", strings.Repeat("a", 128), true},

		{"empty", "", false},
		{"129 bytes", strings.Repeat("a", 129), false},
		{"uppercase", "My-agent", false},
		{"leading separator", "-agent", false},
		{"trailing separator", "agent.", false},
		{"double separator", "my--agent", false},
		{"two separators", "my._agent", false},
		{"slash", "team/agent", false},
		{"tag", "agent:latest", false},
		{"with a digest", "agent@" + digest, false},
		{"space", "my agent", false},
		{"leading space", " agent", false},
		{"trailing newline", "agent\n", false},
		{"tab", "my\tagent", false},
		{"NUL", "agent\x00", false},
		{"Cyrillic a", "\u0430gent", false},
		{"fullwidth letters", "\uff41\uff47\uff45\uff4e\uff54", false},
		{"dotless i", "\u0131mage", false},
		{"zero-width space", "my\u200bagent", false},
		{"non-breaking hyphen", "my\u2011agent", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := imageref.ValidName(tt.in); got != tt.want {
				t.Errorf("ValidName(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidDigest(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want bool
	}{
		{"sha256", digest, true},

		{"empty", "", false},
		{"bare hex", hex64, false},
		{"63 hex", "sha256:" + hex64[1:], false},
		{"65 hex", digest + "0", false},
		{"short", "sha256:abc", false},
		{"uppercase hex", "sha256:" + strings.ToUpper(hex64), false},
		{"uppercase algorithm", "SHA256:" + hex64, false},
		{"sha512", "sha512:" + hex64 + hex64, false},
		{"not hex", "sha256:" + strings.Replace(hex64, "a", "g", 1), false},
		{"leading space", " " + digest, false},
		{"trailing newline", digest + "\n", false},
		{"Cyrillic a", "sha256:" + strings.Replace(hex64, "a", "\u0430", 1), false},
		{"fullwidth digit", "sha256:" + strings.Replace(hex64, "0", "\uff10", 1), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := imageref.ValidDigest(tt.in); got != tt.want {
				t.Errorf("ValidDigest(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in      string
		wantErr error
	}{
		{"name and digest", "my-agent@" + digest, nil},
		{"128-byte name", strings.Repeat("a", 128) + "@" + digest, nil},

		{"a name alone", "my-agent", imageref.ErrNoDigest},

		{"empty", "", imageref.ErrInvalid},
		{"a digest alone", digest, imageref.ErrInvalid},
		{"no name", "@" + digest, imageref.ErrInvalid},
		{"no digest after the @", "my-agent@", imageref.ErrInvalid},
		{"129-byte name", strings.Repeat("a", 129) + "@" + digest, imageref.ErrInvalid},
		{"a 129-byte name alone", strings.Repeat("a", 129), imageref.ErrInvalid},
		{"uppercase name", "My-Agent@" + digest, imageref.ErrInvalid},
		{"leading separator", "_agent@" + digest, imageref.ErrInvalid},
		{"trailing separator", "agent-@" + digest, imageref.ErrInvalid},
		{"double separator", "my..agent@" + digest, imageref.ErrInvalid},
		{"tag instead of digest", "my-agent:latest", imageref.ErrInvalid},
		{"tag and digest", "my-agent:latest@" + digest, imageref.ErrInvalid},
		{"short digest", "my-agent@sha256:abc", imageref.ErrInvalid},
		{"uppercase hex", "my-agent@sha256:" + strings.ToUpper(hex64), imageref.ErrInvalid},
		{"sha512", "my-agent@sha512:" + hex64 + hex64, imageref.ErrInvalid},
		{"bare hex", "my-agent@" + hex64, imageref.ErrInvalid},
		{"two @", "my-agent@x@" + digest, imageref.ErrInvalid},
		{"space around the @", "my-agent @ " + digest, imageref.ErrInvalid},
		{"trailing newline", "my-agent@" + digest + "\n", imageref.ErrInvalid},
		{"leading space", " my-agent@" + digest, imageref.ErrInvalid},
		{"Cyrillic a in the name", "my-\u0430gent@" + digest, imageref.ErrInvalid},
		{"Cyrillic a in the digest", "my-agent@sha256:" + strings.Replace(hex64, "a", "\u0430", 1), imageref.ErrInvalid},
		{"fullwidth @", "my-agent\uff20" + digest, imageref.ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			name, d, err := imageref.Parse(tt.in)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Parse(%q) = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				if name != "" || d != "" {
					t.Errorf("Parse(%q) refused it but returned %q, %q", tt.in, name, d)
				}
				return
			}
			if imageref.Join(name, d) != tt.in {
				t.Errorf("Parse(%q) = %q, %q, which join to %q", tt.in, name, d, imageref.Join(name, d))
			}
		})
	}
}

// The wording states the limit the code holds, so that a refusal never
// tells the user a rule other than the one that refused them.
func TestNameRule_StatesTheLimit(t *testing.T) {
	if !strings.HasPrefix(imageref.NameRule, "1-"+strconv.Itoa(imageref.MaxNameBytes)+" ") {
		t.Errorf("NameRule %q does not start with 1-%d", imageref.NameRule, imageref.MaxNameBytes)
	}
	if !strings.HasPrefix(imageref.RefRule, "NAME@"+imageref.DigestRule) || !strings.HasSuffix(imageref.RefRule, imageref.NameRule) {
		t.Errorf("RefRule %q is not NAME@DigestRule with NameRule", imageref.RefRule)
	}
}

func TestSplit_ReadsANameWithOrWithoutItsDigest(t *testing.T) {
	for _, tt := range []struct{ in, name, digest string }{
		{"my-agent", "my-agent", ""},
		{"my-agent@" + digest, "my-agent", digest},
		{"my-agent@", "my-agent", ""},
		{"", "", ""},
	} {
		if name, d := imageref.Split(tt.in); name != tt.name || d != tt.digest {
			t.Errorf("Split(%q) = %q, %q, want %q, %q", tt.in, name, d, tt.name, tt.digest)
		}
	}
}

func TestContainerdName_ReadsBack(t *testing.T) {
	ref := imageref.ContainerdName("my-agent", digest)
	if ref != "airlock.local/agents/my-agent@"+digest {
		t.Errorf("ContainerdName = %q", ref)
	}
	if name, d, ok := imageref.FromContainerdName(ref); !ok || name != "my-agent" || d != digest {
		t.Errorf("FromContainerdName(%q) = %q, %q, %v", ref, name, d, ok)
	}
	// A built image's record, and another tenant's, are no agent image.
	for _, other := range []string{"airlock.local/reader:latest", "docker.io/library/alpine:latest", "airlock.local/agentsx/a@" + digest} {
		if _, _, ok := imageref.FromContainerdName(other); ok {
			t.Errorf("FromContainerdName(%q) took it for an agent image", other)
		}
	}
}

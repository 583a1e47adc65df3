package sandbox

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/userns"
)

// hostOf maps id through mappings, as the kernel does; ok is false for an
// id the mappings leave out.
func hostOf(m []specs.LinuxIDMapping, id uint32) (uint32, bool) {
	for _, e := range m {
		if id >= e.ContainerID && id < e.ContainerID+e.Size {
			return e.HostID + id - e.ContainerID, true
		}
	}
	return 0, false
}

// userNamespaced returns the shipped profile name with a user namespace,
// as a profile that extends it may ask for.
func userNamespaced(t *testing.T, name string) *policy.Profile {
	t.Helper()
	p, err := shippedProfiles(t).Get(name)
	if err != nil {
		t.Fatal(err)
	}
	q := *p
	q.Isolation.UserNamespace = true
	return &q
}

func TestSpecFor_UserNamespacedProfilesRunTheAgentAsNoHostUser(t *testing.T) {
	for _, name := range []string{"vanilla", "secureclaw", "ironclaw"} {
		p := userNamespaced(t, name)
		t.Run(name, func(t *testing.T) {
			ids := userns.Range{First: userns.Base + 7*userns.Size}
			s := generate(t, SpecFor("job-1", p, JobPaths{Input: "/j/in", Output: "/j/out", Run: "/j/run", IDs: ids})...)
			n := 0
			for _, ns := range s.Linux.Namespaces {
				if ns.Type == specs.UserNamespace && ns.Path == "" {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("namespaces %+v, want one new user namespace", s.Linux.Namespaces)
			}
			uid, ok := hostOf(s.Linux.UIDMappings, s.Process.User.UID)
			if !ok || uid != ids.HostID(p.Isolation.UID) {
				t.Errorf("the agent's uid %d is host uid %d (mapped %v), want %d in the job's range", s.Process.User.UID, uid, ok, ids.HostID(p.Isolation.UID))
			}
			gid, ok := hostOf(s.Linux.GIDMappings, s.Process.User.GID)
			if !ok || gid != ids.HostID(p.Isolation.GID) {
				t.Errorf("the agent's gid %d is host gid %d (mapped %v), want %d in the job's range", s.Process.User.GID, gid, ok, ids.HostID(p.Isolation.GID))
			}
			// Every id 0-65535 maps into the job's range, but the tools
			// group of a profile that allows exec.
			for kind, m := range map[string][]specs.LinuxIDMapping{"uid": s.Linux.UIDMappings, "gid": s.Linux.GIDMappings} {
				for id := uint32(0); id < userns.Size; id++ {
					h, ok := hostOf(m, id)
					tools := kind == "gid" && id == images.ToolsGID && p.ExecAllowed()
					switch {
					case !ok:
						t.Fatalf("%s %d is not mapped", kind, id)
					case tools && h != images.ToolsGID:
						t.Fatalf("the tools group maps to host gid %d, want the host's %d", h, images.ToolsGID)
					case !tools && h != ids.HostID(id):
						t.Fatalf("%s %d maps to host id %d, outside the job's range", kind, id, h)
					}
				}
			}
		})
	}
}

func TestSpecFor_TwoJobsShareNoHostUser(t *testing.T) {
	p := userNamespaced(t, "secureclaw")
	a := generate(t, SpecFor("a", p, JobPaths{Input: "/j/in", Output: "/j/out", Run: "/j/run", IDs: userns.Range{First: userns.Base + userns.Size}})...)
	b := generate(t, SpecFor("b", p, JobPaths{Input: "/j/in", Output: "/j/out", Run: "/j/run", IDs: userns.Range{First: userns.Base + 2*userns.Size}})...)
	for _, ma := range a.Linux.UIDMappings {
		for _, mb := range b.Linux.UIDMappings {
			if ma.HostID < mb.HostID+mb.Size && mb.HostID < ma.HostID+ma.Size {
				t.Errorf("uid mappings %+v and %+v overlap", ma, mb)
			}
		}
	}
}

func TestExplain_SaysWhenTheHostCannotGiveAUserNamespace(t *testing.T) {
	set := shippedProfiles(t)
	for _, tt := range []struct {
		profile   string
		hostErr   error
		want, not string
	}{
		{"ironclaw", nil, "a host range of its own", "CANNOT"},
		{"ironclaw", userns.ErrUnsupported, "THIS HOST CANNOT", "supports it"},
		{"ironclaw", userns.ErrUnsupported, "jobs of this profile are refused", "supports it"},
		{"vanilla", nil, "none: the agent is host uid 65534", "range"},
		{"vanilla", userns.ErrUnsupported, "none: the agent is host uid 65534", "CANNOT"},
	} {
		t.Run(tt.profile, func(t *testing.T) {
			p, err := set.Get(tt.profile)
			if err != nil {
				t.Fatal(err)
			}
			s, err := explain(p, tt.hostErr, nil)
			if err != nil {
				t.Fatal(err)
			}
			note := s.Annotations[AnnotationUserNS]
			if !strings.Contains(note, tt.want) || strings.Contains(note, tt.not) {
				t.Errorf("%s = %q, want %q and no %q", AnnotationUserNS, note, tt.want, tt.not)
			}
		})
	}
}

func TestNewBox_RefusesAUserNamespacedProfileOnAHostWithout(t *testing.T) {
	proc := t.TempDir() // no self/ns/user: a kernel without user namespaces
	claimsDir := t.TempDir()
	claims, err := userns.NewClaims(claimsDir, "test")
	if err != nil {
		t.Fatal(err)
	}
	jobs := t.TempDir()
	r := &Runner{images: map[string]*loadedImage{"reader": {}}, jobsDir: jobs, proc: proc, claims: claims, log: slog.New(slog.DiscardHandler)}
	p := testProfile()
	p.Isolation.UserNamespace = true
	if _, err := r.newBox(context.Background(), "reader", p, "job-1"); !errors.Is(err, userns.ErrUnsupported) {
		t.Fatalf("newBox = %v, want a refusal wrapping ErrUnsupported", err)
	}
	for _, dir := range []string{jobs, claimsDir} {
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("a refused box left %s", filepath.Join(dir, entries[0].Name()))
		}
	}
}

func TestHostID_SharedRangeForToolsOutsideTheBroker(t *testing.T) {
	p := testProfile()
	if got := HostID(p, 65534); got != 65534 {
		t.Errorf("without a user namespace HostID = %d, want 65534", got)
	}
	p.Isolation.UserNamespace = true
	if got := HostID(p, 65534); got != userns.Shared.HostID(65534) {
		t.Errorf("HostID = %d, want %d in the shared range", got, userns.Shared.HostID(65534))
	}
}

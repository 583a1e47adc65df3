package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/userns"
)

// ExplainPaths are the placeholder host paths an explained spec shows.
var ExplainPaths = JobPaths{
	Input:  "/var/lib/airlock/jobs/<random>/input",
	Output: "/var/lib/airlock/jobs/<random>/output",
	Run:    "/var/lib/airlock/jobs/<random>/run",
}

// Annotations of an explained spec: what the spec alone does not say.
// A job's own spec carries none of them.
const (
	// AnnotationSeccompDenied lists the syscalls the profile's seccomp
	// filter takes out of containerd's default one.
	AnnotationSeccompDenied = "airlock.seccomp.denied"
	// AnnotationUserNS says whom the agent is on the host, and whether
	// this host can give the profile the user namespace it asks for.
	AnnotationUserNS = "airlock.userns"
	// AnnotationImage names the imported image a profile's agent runs in,
	// NAME@DIGEST.
	AnnotationImage = "airlock.image"
	// AnnotationImageOverridden lists, one per line, what of the imported
	// image's configuration the sandbox ignores, and what applies instead.
	AnnotationImageOverridden = "airlock.image.overridden"
)

// Explain returns the OCI spec a job under p runs with on this host, apart
// from the per-run paths, IDs and host ID range. It is what `airlock
// policy explain` and the ExplainProfile RPC show.
//
// Without the image at hand, a profile's imported image shows the
// profile's agent.command, or a placeholder for the image's entrypoint
// and cmd; the broker's Runner.ExplainJSON reads the image.
func Explain(p *policy.Profile) (*specs.Spec, error) {
	return explain(p, userns.Check(procRoot), unreadAgent(p))
}

// unreadAgent stands for a profile's imported image that explain has not
// read; nil for any other profile.
func unreadAgent(p *policy.Profile) *agentImage {
	if p.Agent == nil {
		return nil
	}
	args := p.Agent.Command
	if len(args) == 0 {
		args = []string{"<the ENTRYPOINT and CMD of " + p.Agent.Image + ">"}
	}
	return &agentImage{ref: p.Agent.Image, args: args, cwd: "<the image's WORKDIR, or />",
		overridden: []string{"the image's configuration is read by airlockd: `airlock explain " + p.Name + "` shows what of it is overridden"}}
}

// explain is Explain on a host whose user namespace support is as
// usernsErr says (nil: supported), with the profile's imported image, if
// any, as ag describes it; the golden tests pin it.
func explain(p *policy.Profile, usernsErr error, ag *agentImage) (*specs.Spec, error) {
	ctx := namespaces.WithNamespace(context.Background(), footprint.Namespace)
	opts := append(SpecFor("<run>", p, ExplainPaths), (&loadedImage{agent: ag}).process(), withExplanation(p, usernsErr, ag))
	return oci.GenerateSpecWithPlatform(ctx, nil, "linux/amd64", &containers.Container{ID: "<run>"}, opts...)
}

// ExplainJSON is Explain as indented JSON, with the profile's imported
// image read: its process, and what of its configuration the sandbox
// overrides. For the broker's ExplainProfile.
func (r *Runner) ExplainJSON(p *policy.Profile) ([]byte, error) {
	ag := unreadAgent(p)
	if img, ok := r.images[p.Image()]; ok && img.agent != nil {
		ag = img.agent
	}
	s, err := explain(p, userns.Check(procRoot), ag)
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(s, "", "  ")
}

// withExplanation annotates an explained spec.
func withExplanation(p *policy.Profile, usernsErr error, ag *agentImage) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		denied := DeniedEverywhere
		if p.Isolation.Seccomp == policy.SeccompStrict {
			denied = StrictDenied
		}
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[AnnotationSeccompDenied] = strings.Join(denied, ",") + " (EPERM)"
		s.Annotations[AnnotationUserNS] = explainUserNS(p, usernsErr)
		if ag != nil {
			s.Annotations[AnnotationImage] = ag.ref
			s.Annotations[AnnotationImageOverridden] = strings.Join(ag.overridden, "\n")
		}
		return nil
	}
}

func explainUserNS(p *policy.Profile, usernsErr error) string {
	iso := p.Isolation
	if !iso.UserNamespace {
		return fmt.Sprintf("none: the agent is host uid %d, gid %d, as any process of those ids on the host", iso.UID, iso.GID)
	}
	first, last := userns.Block()
	s := fmt.Sprintf("each sandbox maps its ids 0-%d onto a host range of its own, claimed from %d-%d and released at teardown (the mappings above show the shared range from %d, which no job gets); the agent is its range's uid %d, gid %d, no one else's on the host",
		userns.Size-1, first, last, userns.Shared.First, iso.UID, iso.GID)
	if p.ExecAllowed() {
		s += fmt.Sprintf("; gid %d, the tools group, is the host's own %d, so that the gateway's commands can execute busybox", images.ToolsGID, images.ToolsGID)
	}
	if usernsErr != nil {
		return s + fmt.Sprintf("; THIS HOST CANNOT: %v, so jobs of this profile are refused", usernsErr)
	}
	return s + "; this host supports it"
}

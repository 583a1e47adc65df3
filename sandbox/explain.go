package sandbox

import (
	"context"
	"encoding/json"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/sandbox/footprint"
)

// ExplainPaths are the placeholder host paths an explained spec shows.
var ExplainPaths = JobPaths{
	Input:  "/var/lib/airlock/jobs/<run>/input",
	Output: "/var/lib/airlock/jobs/<run>/output",
	Run:    "/var/lib/airlock/jobs/<run>/run",
}

// Explain returns the OCI spec a job under p runs with, apart from the
// per-run paths and IDs. It is what `airlock policy explain` and the
// ExplainProfile RPC show, and what the golden tests pin.
func Explain(p *policy.Profile) (*specs.Spec, error) {
	ctx := namespaces.WithNamespace(context.Background(), footprint.Namespace)
	return oci.GenerateSpecWithPlatform(ctx, nil, "linux/amd64", &containers.Container{ID: "<run>"},
		SpecFor("<run>", p, ExplainPaths)...)
}

// ExplainJSON is Explain as indented JSON.
func ExplainJSON(p *policy.Profile) ([]byte, error) {
	s, err := Explain(p)
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(s, "", "  ")
}

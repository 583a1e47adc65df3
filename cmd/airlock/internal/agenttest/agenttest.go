// Package agenttest checks an imported agent image against the sandbox
// agent contract (docs/agent-contract.md): it runs jobs of the contract's
// conformance task, contract_echo, through a broker, under a profile that
// names the image, so that the image meets the walls it will run in.
package agenttest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/airlock/airlock/images/imageref"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// EchoTask is the conformance task every agent serves.
const EchoTask = "contract_echo"

// echoSchema is the schema of contract_echo's result, exactly.
const echoSchema = `{
  "type": "object",
  "additionalProperties": false,
  "required": ["jobId", "params", "content"],
  "properties": {
    "jobId": {"type": "string"},
    "params": {"type": "object", "additionalProperties": {"type": "string"}},
    "content": {
      "type": "array",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["bytes", "sha256"],
        "properties": {
          "bytes": {"type": "integer", "minimum": 0},
          "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}
        }
      }
    }
  }
}`

// Check is one conformance check and how it went.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// Target resolves ref (NAME or NAME@DIGEST) to an imported image and the
// loaded profile to run it under: profile when given, which must name the
// image, else the one profile that does.
func Target(ctx context.Context, b airlockv1.BrokerClient, ref, profile string) (*airlockv1.Image, string, error) {
	name, digest := imageref.Split(ref)
	list, err := b.ListImages(ctx, &airlockv1.ListImagesRequest{})
	if err != nil {
		return nil, "", err
	}
	var found []*airlockv1.Image
	for _, img := range list.GetImages() {
		if img.GetName() == name && (digest == "" || img.GetDigest() == digest) {
			found = append(found, img)
		}
	}
	switch {
	case len(found) == 0:
		return nil, "", fmt.Errorf("no image %s is imported: import it with airlock image import", ref)
	case len(found) > 1:
		return nil, "", fmt.Errorf("%d digests of %s are imported: name one, NAME@DIGEST", len(found), name)
	}
	img := found[0]
	pinned := imageref.Join(img.GetName(), img.GetDigest())
	profiles := img.GetProfiles()
	switch {
	case profile != "" && !slices.Contains(profiles, profile):
		return nil, "", fmt.Errorf("profile %s does not run %s (agent.image); profiles that do: %s", profile, pinned, listOrNone(profiles))
	case profile != "":
		return img, profile, nil
	case len(profiles) == 0:
		return nil, "", fmt.Errorf("no loaded profile runs %s: name it as agent.image in a profile (docs/images.md) and restart airlockd", pinned)
	case len(profiles) > 1:
		return nil, "", fmt.Errorf("profiles %s all run %s: choose one with --profile", strings.Join(profiles, ", "), pinned)
	}
	return img, profiles[0], nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// Run runs the conformance checks of docs/agent-contract.md under profile
// and returns each; an error means the broker could not be asked.
func Run(ctx context.Context, b airlockv1.BrokerClient, profile string) ([]Check, error) {
	nonce := randHex(16)
	// Text the agent must read to the byte: ASCII, multibyte UTF-8, and a
	// nonce, so that no answer could be known in advance.
	content := [][]byte{
		[]byte("airlock contract check " + nonce + "\n"),
		[]byte("naïve café — ✓ " + randHex(32) + "\n\ttabs, \"quotes\" and <angles>\n"),
	}
	req := &airlockv1.SpawnRequest{
		JobId:        uuid.NewString(),
		Profile:      profile,
		Task:         &airlockv1.Task{Name: EchoTask, Params: map[string]string{"nonce": nonce}},
		ResultSchema: echoSchema,
	}
	for _, c := range content {
		req.Content = append(req.Content, &airlockv1.Content{Data: c, MediaType: "text/plain"})
	}
	var checks []Check
	resp, err := b.Spawn(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("spawn %s: %w", EchoTask, err)
	}
	checks = append(checks, echoChecks(req, content, resp)...)

	// A task the agent does not serve must end without a result: a made-up
	// answer would be the caller's to believe.
	unknown := "contract_unknown_" + randHex(4)
	resp, err = b.Spawn(ctx, &airlockv1.SpawnRequest{
		JobId: uuid.NewString(), Profile: profile, Task: &airlockv1.Task{Name: unknown},
		Content: req.Content[:1], ResultSchema: echoSchema,
	})
	if err != nil {
		return nil, fmt.Errorf("spawn %s: %w", unknown, err)
	}
	c := Check{Name: "refuses a task it does not serve", OK: resp.GetVerdict() != airlockv1.Verdict_VERDICT_OK && resp.GetResult() == nil}
	c.Detail = fmt.Sprintf("%s: %s", resp.GetVerdict(), resp.GetMessage())
	if c.OK {
		c.Detail = resp.GetVerdict().String()
	}
	checks = append(checks, c)
	return checks, nil
}

// echoChecks judges the contract_echo job's response against what was sent.
func echoChecks(req *airlockv1.SpawnRequest, content [][]byte, resp *airlockv1.SpawnResponse) []Check {
	clean := Check{Name: "exits cleanly with a result that fits the job's schema", OK: resp.GetVerdict() == airlockv1.Verdict_VERDICT_OK}
	read := Check{Name: "reads job.json and every content file"}
	if !clean.OK {
		clean.Detail = fmt.Sprintf("%s: %s", resp.GetVerdict(), resp.GetMessage())
		read.Detail = "no result to check"
		return []Check{clean, read}
	}
	clean.Detail = "VERDICT_OK"
	err := echoMatches(req, content, resp.GetResult().AsMap())
	read.OK = err == nil
	if err != nil {
		read.Detail = err.Error()
	} else {
		read.Detail = fmt.Sprintf("job ID, nonce and %d files' lengths and SHA-256 as sent", len(content))
	}
	return []Check{clean, read}
}

func echoMatches(req *airlockv1.SpawnRequest, content [][]byte, got map[string]any) error {
	var errs []error
	if got["jobId"] != req.GetJobId() {
		errs = append(errs, errors.New("jobId is not the job's ID"))
	}
	params, _ := got["params"].(map[string]any)
	if params["nonce"] != req.GetTask().GetParams()["nonce"] {
		errs = append(errs, errors.New("params.nonce is not the job's"))
	}
	items, _ := got["content"].([]any)
	if len(items) != len(content) {
		errs = append(errs, fmt.Errorf("content has %d entries, want %d", len(items), len(content)))
		return errors.Join(errs...)
	}
	for i, c := range content {
		item, _ := items[i].(map[string]any)
		sum := sha256.Sum256(c)
		if n, _ := item["bytes"].(float64); int(n) != len(c) {
			errs = append(errs, fmt.Errorf("content[%d].bytes is not the file's length", i))
		}
		if item["sha256"] != hex.EncodeToString(sum[:]) {
			errs = append(errs, fmt.Errorf("content[%d].sha256 is not the file's", i))
		}
	}
	return errors.Join(errs...)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock/airlock/cmd/airlockd/server"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// exampleAgents are the tarballs make agents builds, by the name each is
// imported under.
var exampleAgents = map[string]string{
	"example-python": "../bin/agents/python-agent.tar",
	"example-node":   "../bin/agents/node-agent.tar",
}

// TestAgentImages_ExamplesPassTheContractTest imports the example agents
// (make agents) through the CLI, names each in a profile by digest, and
// runs `airlock agent test` on each through a real broker: both pass every
// check. The same Python image told to run a command that writes no
// result fails the test, and the CLI says so with its exit code.
func TestAgentImages_ExamplesPassTheContractTest(t *testing.T) {
	ctx := testContext(t)
	digests := map[string]string{}
	for name, tarball := range exampleAgents {
		if _, err := os.Stat(tarball); err != nil {
			t.Fatalf("example agent %s: %v (make agents builds it)", name, err)
		}
		if out, err := airlockCLI(t, "image", "import", tarball, "--name", name); err != nil {
			t.Fatalf("airlock image import %s: %s %v", tarball, out, err)
		}
		t.Cleanup(func() {
			_, _ = env.brokerOf.RemoveImage(context.Background(), &airlockv1.RemoveImageRequest{Name: name})
		})
	}
	list, err := env.brokerOf.ListImages(ctx, &airlockv1.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range list.GetImages() {
		if _, ok := exampleAgents[img.GetName()]; ok {
			digests[img.GetName()] = img.GetName() + "@" + img.GetDigest()
		}
	}
	if len(digests) != len(exampleAgents) {
		t.Fatalf("imported %v, want both example agents", digests)
	}
	srv, _, err := startServer(serverDir(t), map[string]string{
		"python.yaml": byoProfile("vanilla", digests["example-python"]),
		"node.yaml":   byoProfile("vanilla", digests["example-node"]),
		// The Python image, told to run a command that reads nothing and
		// writes no result, and exits 0.
		"mute.yaml": byoProfile("vanilla", digests["example-python"]) + "  command: [/usr/bin/python3, -I, -c, pass]\n",
	}, func(*server.Options) {})
	if err != nil {
		t.Fatalf("airlockd with the example agents' profiles: %v", err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	cli := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(filepath.Join(env.bin, "airlock"), append([]string{"--socket", srv.Addr().String(), "--token-file", srv.Options().TokenFile}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		return out.String(), cmd.ProcessState.ExitCode()
	}
	for name, profile := range map[string]string{"example-python": "python", "example-node": "node"} {
		out, code := cli("agent", "test", digests[name], "--profile", profile)
		if code != 0 || strings.Count(out, "\nPASS  ") != 3 || strings.Contains(out, "FAIL") {
			t.Errorf("airlock agent test %s: exit %d\n%s", name, code, out)
		}
	}
	out, code := cli("agent", "test", digests["example-python"], "--profile", "mute")
	if code != 3 || !strings.Contains(out, "FAIL  exits cleanly with a result") || !strings.Contains(out, "FAIL  reads job.json") {
		t.Errorf("airlock agent test of an agent that writes no result: exit %d, want 3 and the checks failed\n%s", code, out)
	}
	// Several profiles run the image: the CLI asks which.
	if out, code := cli("agent", "test", digests["example-python"]); code == 0 || !strings.Contains(out, "choose one with --profile") {
		t.Errorf("airlock agent test without --profile for an image two profiles run: exit %d\n%s", code, out)
	}
}

package images

import (
	"fmt"
	"io/fs"
	"slices"
)

// AgentPath is where every Airlock image carries its sub-agent binary.
const AgentPath = "/airlock-agent"

// NobodyUser is the uid:gid every image runs as unless a Spec says otherwise.
const NobodyUser = "65534:65534"

// Spec describes one single-layer image.
//
// Spec holds host paths, not file contents, so the same Spec can be built
// again later; Build reads each HostPath once and the digest pins what it read.
type Spec struct {
	// Name is the image's short name, such as "reader"; ImageRef(Name) is the
	// name containerd imports it under.
	Name string
	// Files are copied into the layer on top of the skeleton.
	Files []File
	// Entrypoint must name a file in Files by absolute path: there is no shell
	// and no PATH search to fall back on.
	Entrypoint []string
	// Symlinks are added after Files and must point at one of them.
	Symlinks []Symlink
	// Env defaults to ["PATH=/"] when empty.
	Env []string
	// User defaults to NobodyUser when empty.
	User string
	// WaitsForStart says the entrypoint, once confined and before it
	// reads its input, waits for the broker's start line, as airlock-agent
	// does when told (sandbox/agent.StartEnv): its sandboxes are then
	// started ahead of their jobs' input. It is not part of the image.
	WaitsForStart bool
}

// File is one regular file copied from the host into the image.
type File struct {
	// Path is the absolute, clean path inside the image.
	Path string
	// HostPath is the file to read on the build host.
	HostPath string
	// Mode holds permission bits only; zero means 0444.
	Mode fs.FileMode
	// GID is the file's group; zero is root's.
	GID int
}

// Symlink is one symbolic link inside the image.
type Symlink struct {
	Path   string
	Target string
}

// BusyboxPath is where the tools image carries busybox.
const BusyboxPath = "/bin/busybox"

// ToolsGID is the group that alone may execute the tools image's busybox.
// Busybox runs any applet when called by its own name, so an agent that
// could execute it would have a shell whatever the applet links say. The
// agent never holds this group; only the commands the broker runs for it
// through the tool gateway do. The file is execute-only, which also makes
// those processes non-dumpable, so the agent cannot ptrace or read them.
const ToolsGID = 65533

// busyboxMode is execute for ToolsGID only.
const busyboxMode fs.FileMode = 0o010

// ToolApplets are the busybox applets a tools image may carry: read-only
// text tools. No shell, nothing that fetches or spawns others, whatever a
// profile's allowlist says. Two can write a file, sort (-o FILE) and uniq
// (IN OUT); they stay for their reading forms, and the exec matcher refuses
// the writing ones (policies/execpolicy, CheckWrites, which audits each
// applet here; a test keeps the two lists together).
var ToolApplets = []string{"cat", "cut", "grep", "head", "sort", "tail", "tr", "uniq", "wc"}

// Tools is the spec of a tools image named name, for a profile that allows
// exec: the reader image plus a static busybox with links for exactly the
// given applets. An applet outside ToolApplets is refused.
func Tools(name, agentBinary, busybox string, applets []string) (Spec, error) {
	s := agentSpec(name, agentBinary)
	s.Files = append(s.Files, File{Path: BusyboxPath, HostPath: busybox, Mode: busyboxMode, GID: ToolsGID})
	for _, a := range applets {
		if !slices.Contains(ToolApplets, a) {
			return Spec{}, fmt.Errorf("%w: image %s: command %q is not one the tools image may carry (%v)", ErrInvalidSpec, name, a, ToolApplets)
		}
		s.Symlinks = append(s.Symlinks, Symlink{Path: "/bin/" + a, Target: "busybox"})
	}
	return s, nil
}

// Reader is the spec of the production `reader` image: the reference
// sub-agent and nothing else, not even a shell.
func Reader(agentBinary string) Spec {
	return agentSpec("reader", agentBinary)
}

// Hostile is the spec of the test-only `hostile` image. Its binary sits where
// the real agent would, so the sandbox cannot tell the two apart.
func Hostile(binary string) Spec {
	return agentSpec("hostile", binary)
}

func agentSpec(name, binary string) Spec {
	return Spec{
		Name:       name,
		Files:      []File{{Path: AgentPath, HostPath: binary, Mode: 0o555}},
		Entrypoint: []string{AgentPath},
	}
}

package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"

	"github.com/airlock/airlock/policies/policy"
)

// runWrapper runs the wrapper script made of binary, flags, hideNet and
// runAhead with args, where the runtime and unshare are stand-ins that
// write their command lines to a log, and returns that log.
func runWrapper(t *testing.T, flags []string, hideNet, runAhead bool, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	runtime := filepath.Join(dir, "runtime")
	stub := "#!/bin/sh\necho \"$0 $*\" >> " + log + "\n"
	if err := os.WriteFile(runtime, []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	// unshare only logs: what it would run mounts over /proc/sys/net.
	unshare := "#!/bin/sh\necho \"unshare $*\" >> " + log + "\n"
	if err := os.WriteFile(filepath.Join(dir, "unshare"), []byte(unshare), 0o755); err != nil {
		t.Fatal(err)
	}
	script, err := wrapperScript(runtime, flags, hideNet, runAhead)
	if err != nil {
		t.Fatal(err)
	}
	wrapper, err := writeWrapper(filepath.Join(dir, "bin"), "w", script)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(wrapper, args...)
	cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wrapper %v: %v: %s", args, err, out)
	}
	b, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(strings.TrimSpace(string(b)), dir+"/", "")
}

// The shim's command lines, as go-runc writes them, reach the runtime as
// they are, but for a sandbox run ahead: there create runs the container,
// start runs nothing, and a delete is forced. Global flags' values that
// spell a command are not taken for one.
func TestWrapperScript_RunAhead(t *testing.T) {
	globals := []string{"--root", "/run/r", "--log", "/b/log.json", "--log-format", "json"}
	for _, tc := range []struct {
		name     string
		runAhead bool
		args     []string
		want     string
	}{
		{"create", false, append(globals, "create", "--bundle", "/b", "--pid-file", "/b/init.pid", "id1"),
			"runtime --root /run/r --log /b/log.json --log-format json create --bundle /b --pid-file /b/init.pid id1"},
		{"create ahead", true, append(globals, "create", "--bundle", "/b", "--pid-file", "/b/init.pid", "id1"),
			"runtime --root /run/r --log /b/log.json --log-format json run --detach --bundle /b --pid-file /b/init.pid id1"},
		{"start", false, append(globals, "start", "id1"), "runtime --root /run/r --log /b/log.json --log-format json start id1"},
		{"start ahead", true, append(globals, "start", "id1"), ""},
		{"delete ahead", true, append(globals, "delete", "id1"), "runtime --root /run/r --log /b/log.json --log-format json delete --force id1"},
		{"kill ahead", true, append(globals, "kill", "id1", "9"), "runtime --root /run/r --log /b/log.json --log-format json kill id1 9"},
		{"exec ahead", true, append(globals, "exec", "--process", "/p.json", "--detach", "id1"),
			"runtime --root /run/r --log /b/log.json --log-format json exec --process /p.json --detach id1"},
		{"values that spell commands", true, []string{"--root", "start", "--log", "create", "--log-format", "delete", "state", "start"},
			"runtime --root start --log create --log-format delete state start"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := runWrapper(t, nil, false, tc.runAhead, tc.args...); got != tc.want {
				t.Errorf("wrapper ran %q, want %q", got, tc.want)
			}
		})
	}
}

// Under gVisor with a network, the command that starts the sandbox, and
// only it, runs with /proc/sys/net hidden: start, or create when the
// sandbox runs ahead. The runtime's flags come first.
func TestWrapperScript_HidesNetForTheStartingCommand(t *testing.T) {
	flags := []string{"--network=sandbox", "--platform=ptrace"}
	for _, tc := range []struct {
		runAhead bool
		command  string
		hidden   bool
	}{
		{false, "start", true},
		{false, "create", false},
		{true, "create", true},
		{true, "state", false},
	} {
		got := runWrapper(t, flags, true, tc.runAhead, "--root", "/r", tc.command, "id1")
		if hidden := strings.HasPrefix(got, "unshare --mount --propagation private"); hidden != tc.hidden {
			t.Errorf("runAhead=%v %s ran %q; /proc/sys/net hidden: %v, want %v", tc.runAhead, tc.command, got, hidden, tc.hidden)
		}
		if !strings.Contains(got, "runtime --network=sandbox --platform=ptrace --root /r ") {
			t.Errorf("runAhead=%v %s ran %q, want the runtime's flags before the shim's command line", tc.runAhead, tc.command, got)
		}
	}
}

// Every runtime has a wrapper that runs a sandbox ahead, with the
// runtime's own flags, and runsc's state where its plain wrapper keeps it.
func TestForProfile_RunAheadWrapperForEveryRuntime(t *testing.T) {
	bin := t.TempDir()
	for _, name := range []string{"runc", "crun", "runsc"} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	defer func(d string) { kvmDevice = d }(kvmDevice)
	kvmDevice = filepath.Join(t.TempDir(), "kvm") // absent
	defer func(u string) { hybridUnified = u }(hybridUnified)
	hybridUnified = t.TempDir() // no controllers
	dir := t.TempDir()
	for _, name := range []string{"runc", "crun", "runsc"} {
		p := &policy.Profile{Isolation: policy.Isolation{Runtime: name, Platform: "ptrace", Seccomp: "strict"}, Network: policy.Network{Mode: policy.NetworkNone}}
		rt, err := ForProfile(dir, p)
		if err != nil {
			t.Fatal(err)
		}
		o, ok := rt.RunAhead.(*runcoptions.Options)
		if !ok || filepath.Dir(o.BinaryName) != filepath.Join(dir, "bin") {
			t.Fatalf("%s: RunAhead = %+v, want a wrapper in %s/bin", name, rt.RunAhead, dir)
		}
		if plain, _ := rt.Options.(*runcoptions.Options); plain != nil && plain.Root != o.Root {
			t.Errorf("%s: run-ahead root %q, plain root %q; want the same state", name, o.Root, plain.Root)
		}
		b, err := os.ReadFile(o.BinaryName)
		if err != nil {
			t.Fatal(err)
		}
		script := string(b)
		if !strings.Contains(script, "run --detach") || !strings.Contains(script, "'"+filepath.Join(bin, name)+"'") ||
			(name == "runsc") != strings.Contains(script, "--network=none") {
			t.Errorf("%s: run-ahead wrapper %q, want it to run %s ahead with the profile's flags", name, script, name)
		}
	}
}

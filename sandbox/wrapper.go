package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The runc v2 shim runs one binary, the task options' BinaryName, with
// runc's command line. A wrapper script in the broker's state stands in
// for it where the runtime needs more than that command line: runsc's
// flags, and a sandbox run ahead.
//
// A sandbox run ahead is started by the runtime's create: the shim runs
// `create`, the wrapper runs `run --detach` instead, and the shim's later
// `start` has nothing left to do. This is for an agent that waits, once
// confined and before it reads anything of /input, for the broker's start
// line (agent.StartEnv): every limit of the sandbox holds from create on,
// as it does for a pool's sandbox started ahead of its job, and the job
// saves the runtime's second process (a Go binary of 24 MB under gVisor).
// containerd shows the task as created until the shim's start, though its
// agent already waits; a delete of it, which a created task gets, is a
// forced one, which ends what runs.

// wrapperScript is the wrapper that runs binary with flags before the
// shim's command line. hideNet runs the command that starts the sandbox
// with /proc/sys/net hidden (see runscFlags); runAhead runs the sandbox
// ahead, as above.
func wrapperScript(binary string, flags []string, hideNet, runAhead bool) (string, error) {
	for _, f := range append([]string{binary}, flags...) {
		if strings.ContainsAny(f, "'\n\x00") {
			return "", fmt.Errorf("runtime wrapper: %q cannot be quoted", f)
		}
	}
	command := "'" + binary + "'"
	if len(flags) > 0 {
		command += " '" + strings.Join(flags, "' '") + "'"
	}
	command += " \"$@\""
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	// The command is the first word that is neither a global flag nor
	// the value of one (go-runc's --root, --log, --log-format, --criu).
	// The words are put back in order, rewritten where run ahead.
	b.WriteString("cmd= value=\n" +
		"for a do\n" +
		"\tshift\n" +
		"\tif [ -n \"$cmd$value\" ]; then\n" +
		"\t\tvalue=\n" +
		"\telse\n" +
		"\t\tcase $a in\n" +
		"\t\t--root|--log|--log-format|--criu) value=1 ;;\n" +
		"\t\t-*) ;;\n")
	start := "start"
	if runAhead {
		start = "create"
		b.WriteString("\t\tcreate) cmd=create; set -- \"$@\" run --detach; continue ;;\n" +
			"\t\tstart) exit 0 ;;\n" +
			"\t\tdelete) cmd=delete; set -- \"$@\" delete --force; continue ;;\n")
	}
	b.WriteString("\t\t*) cmd=$a ;;\n" +
		"\t\tesac\n" +
		"\tfi\n" +
		"\tset -- \"$@\" \"$a\"\n" +
		"done\n")
	if hideNet {
		// runsc 2022 refuses to give a sandbox the interfaces of its
		// network namespace when it finds /proc/sys/net/core/rmem_default
		// there, which it takes to mean the host's namespace; recent
		// kernels have it in every namespace. The command that starts the
		// sandbox, which reads the namespace's interfaces, runs with
		// /proc/sys/net empty, in a mount namespace of its own. (The file
		// is looked up in the namespace runsc joins, so only a mount above
		// the per-namespace directories hides it.) The namespace is never
		// the host's: the broker makes it for the job.
		fmt.Fprintf(&b, "if [ \"$cmd\" = %s ]; then\n"+
			"\texec unshare --mount --propagation private sh -c 'mount -t tmpfs -o size=4k,mode=0555 none /proc/sys/net && exec \"$@\"' runtime %s\n"+
			"fi\n", start, command)
	}
	b.WriteString("exec " + command + "\n")
	return b.String(), nil
}

// writeWrapper writes script, under a name made of prefix and a hash of
// the script, in dir, and returns its path: it is written once, and a
// changed one is written beside it.
func writeWrapper(dir, prefix, script string) (string, error) {
	sum := sha256.Sum256([]byte(script))
	path := filepath.Join(dir, prefix+"-"+hex.EncodeToString(sum[:8]))
	if b, err := os.ReadFile(path); err == nil && string(b) == script {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "."+prefix+"-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(script); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o700); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}

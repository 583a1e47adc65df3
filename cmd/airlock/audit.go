package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/airlock/airlock/broker/audit"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/cmd/airlock/internal/bench"
)

const auditUsage = `usage: airlock audit [--file PATH | --state-dir DIR] COMMAND

  tail [-n N]   print the last N records (default 10)
  show JOB      print the record of one job

The audit log is read locally: --file; else STATE_DIR/audit.jsonl with
--state-dir; else the log of the airlockd serving --socket or $AIRLOCK_SOCKET (default
` + client.DefaultSocket + `), where its --audit-log and --state-dir
put it; else airlockd's default, ` + bench.DefaultStateDir + `/audit.jsonl.
`

// auditFileName is the audit log's name in airlockd's state directory when
// it runs without --audit-log (cmd/airlockd/server, not imported: it links
// the whole daemon).
const auditFileName = "audit.jsonl"

// auditCmd reads the audit log file; it needs no broker.
func auditCmd(socket string, args []string) error {
	return runAudit(args, os.Stdout, client.Socket(socket))
}

// runAudit is auditCmd writing to w, finding airlockd by socket.
func runAudit(args []string, w io.Writer, socket string) error {
	fset := flag.NewFlagSet("audit", flag.ExitOnError)
	fset.Usage = func() { fmt.Fprint(os.Stderr, auditUsage) }
	file := fset.String("file", "", "audit log (default: the running airlockd's, else airlockd's default)")
	stateDir := fset.String("state-dir", "", "airlockd's --state-dir: read STATE_DIR/"+auditFileName)
	_ = fset.Parse(args)
	if fset.NArg() == 0 {
		fset.Usage()
		os.Exit(2)
	}
	src := findAuditLog(*file, *stateDir, socket)
	f, err := os.Open(src.path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no audit log at %s (%s); airlockd writes it to its --audit-log, default STATE_DIR/%s: pass --file PATH or --state-dir DIR", src.path, src.why, auditFileName)
	}
	if err != nil {
		return fmt.Errorf("audit log %s (%s): %w", src.path, src.why, err)
	}
	defer f.Close()
	recs, err := audit.Read(f)
	if err != nil {
		return fmt.Errorf("audit log %s: %w", src.path, err)
	}
	enc := json.NewEncoder(w)
	switch fset.Arg(0) {
	case "tail":
		tf := flag.NewFlagSet("tail", flag.ExitOnError)
		n := tf.Int("n", 10, "records")
		_ = tf.Parse(fset.Args()[1:])
		if *n < len(recs) {
			recs = recs[len(recs)-max(*n, 0):]
		}
		for _, r := range recs {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	case "show":
		if fset.NArg() != 2 {
			return fmt.Errorf("audit show needs one job id")
		}
		for i := len(recs) - 1; i >= 0; i-- {
			if recs[i].JobID == fset.Arg(1) {
				enc.SetIndent("", "  ")
				return enc.Encode(recs[i])
			}
		}
		return fmt.Errorf("job %q is not in %s", fset.Arg(1), src.path)
	}
	fset.Usage()
	os.Exit(2)
	return nil
}

// auditSource is the audit log to read and how it was found, so that a
// missing file can be explained.
type auditSource struct {
	path string
	why  string
}

// findAuditLog picks the audit log: --file, else --state-dir's, else that
// of the airlockd serving socket, read from its command line, else
// airlockd's default. The running airlockd comes before the default
// because a broker started with another --state-dir (as `make demo` does)
// writes nothing to the default.
func findAuditLog(file, stateDir, socket string) auditSource {
	switch {
	case file != "":
		return auditSource{file, "--file"}
	case stateDir != "":
		return auditSource{filepath.Join(stateDir, auditFileName), "--state-dir"}
	}
	if pid, err := bench.ListenerPID(socket); err == nil {
		if path, err := auditLogOf(pid); err == nil {
			return auditSource{path, fmt.Sprintf("the audit log of airlockd pid %d, which serves %s", pid, socket)}
		}
	}
	return auditSource{
		filepath.Join(bench.DefaultStateDir, auditFileName),
		fmt.Sprintf("airlockd's default; no airlockd found serving %s", socket),
	}
}

// auditLogOf is the audit log of the airlockd process pid.
func auditLogOf(pid int) (string, error) {
	args, err := bench.Cmdline(pid)
	if err != nil {
		return "", err
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return "", err
	}
	if len(args) > 0 {
		args = args[1:]
	}
	return auditLogFrom(args, cwd), nil
}

// auditLogFrom is the audit log airlockd writes when started with args in
// directory cwd: its --audit-log, else STATE_DIR/audit.jsonl, a relative
// path taken from cwd as airlockd took it.
func auditLogFrom(args []string, cwd string) string {
	path, ok := bench.FlagValue(args, "audit-log")
	if !ok || path == "" {
		dir, ok := bench.FlagValue(args, "state-dir")
		if !ok || dir == "" {
			dir = bench.DefaultStateDir
		}
		path = filepath.Join(dir, auditFileName)
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(cwd, path)
	}
	return path
}

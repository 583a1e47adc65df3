package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/airlock/airlock/broker/audit"
)

const auditUsage = `usage: airlock audit [--file PATH] COMMAND

  tail [-n N]   print the last N records (default 10)
  show JOB      print the record of one job

The audit log is read locally (default /var/lib/airlock/audit.jsonl).
`

// auditCmd reads the audit log file; it needs no broker.
func auditCmd(args []string) error {
	fset := flag.NewFlagSet("audit", flag.ExitOnError)
	fset.Usage = func() { fmt.Fprint(os.Stderr, auditUsage) }
	file := fset.String("file", "/var/lib/airlock/audit.jsonl", "audit log")
	_ = fset.Parse(args)
	if fset.NArg() == 0 {
		fset.Usage()
		os.Exit(2)
	}
	f, err := os.Open(*file)
	if err != nil {
		return err
	}
	defer f.Close()
	recs, err := audit.Read(f)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	switch fset.Arg(0) {
	case "tail":
		tf := flag.NewFlagSet("tail", flag.ExitOnError)
		n := tf.Int("n", 10, "records")
		_ = tf.Parse(fset.Args()[1:])
		if *n < len(recs) {
			recs = recs[len(recs)-*n:]
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
		return fmt.Errorf("job %q is not in %s", fset.Arg(1), *file)
	}
	fset.Usage()
	os.Exit(2)
	return nil
}

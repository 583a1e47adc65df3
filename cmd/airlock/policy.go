package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
	"github.com/airlock/airlock/policies/prompt"
	"github.com/airlock/airlock/sandbox"
)

const policyUsage = `usage: airlock policy [--policy-dir DIR] [--dev] COMMAND

  lint FILE...   validate profile files (they may extend the shipped profiles),
                 and warn on egress that names loopback, private, link-local
                 or cloud metadata destinations
  explain NAME   print the resolved profile, the OCI spec it produces and, with a
                 model, the agent task's system prompt
  diff A B       print the settings in which profile B differs from A

Profiles come from --policy-dir, or the shipped ones.
`

// policyCmd works on profile files locally; it needs no broker.
func policyCmd(args []string) error {
	fset := flag.NewFlagSet("policy", flag.ExitOnError)
	fset.Usage = func() { fmt.Fprint(os.Stderr, policyUsage) }
	dir := fset.String("policy-dir", "", "directory of profiles (default: the shipped ones)")
	dev := fset.Bool("dev", false, "load as airlockd --dev does")
	_ = fset.Parse(args)
	if fset.NArg() == 0 {
		fset.Usage()
		os.Exit(2)
	}
	var base fs.FS = policies.FS
	if *dir != "" {
		base = os.DirFS(*dir)
	}
	opts := []policy.Option{policy.WithDevMode(*dev), policy.WithSchemaCheck(result.CheckSchema)}
	rest := fset.Args()[1:]
	if slices.ContainsFunc(rest, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" }) {
		fmt.Fprint(os.Stdout, policyUsage)
		return nil
	}
	switch fset.Arg(0) {
	case "lint":
		if len(rest) == 0 {
			return fmt.Errorf("policy lint needs at least one file")
		}
		set, err := policy.Lint(base, rest, opts...)
		if err != nil {
			return err
		}
		for _, f := range rest {
			name := strings.TrimSuffix(strings.TrimSuffix(baseName(f), ".yaml"), ".yml")
			p, err := set.Get(name)
			if err != nil {
				return err
			}
			fmt.Printf("%s: ok: %s (hash %s)\n", f, p.Summary(), p.Hash()[:12])
			for _, w := range policy.Warnings(p) {
				fmt.Printf("%s: warning: %s\n", f, w)
			}
		}
		return nil
	case "explain":
		if len(rest) != 1 {
			return fmt.Errorf("policy explain needs one profile name")
		}
		set, err := policy.Load(base, opts...)
		if err != nil {
			return err
		}
		p, err := set.Get(rest[0])
		if err != nil {
			return err
		}
		spec, err := sandbox.Explain(p)
		if err != nil {
			return err
		}
		out := map[string]any{"profile": p.Name, "hash": p.Hash(), "summary": p.Summary(), "policy": p, "ociSpec": spec}
		if p.Model != nil {
			// What the agent task's model is told, word for word.
			out["systemPrompt"] = map[string]string{"version": prompt.Version, "text": prompt.System()}
		}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	case "diff":
		if len(rest) != 2 {
			return fmt.Errorf("policy diff needs two profile names")
		}
		set, err := policy.Load(base, opts...)
		if err != nil {
			return err
		}
		a, err := set.Get(rest[0])
		if err != nil {
			return err
		}
		b, err := set.Get(rest[1])
		if err != nil {
			return err
		}
		lines, err := policy.Diff(a, b)
		if err != nil {
			return err
		}
		fmt.Printf("--- %s %s\n+++ %s %s\n", a.Name, a.Hash()[:12], b.Name, b.Hash()[:12])
		for _, l := range lines {
			fmt.Println(l)
		}
		return nil
	}
	fset.Usage()
	os.Exit(2)
	return nil
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

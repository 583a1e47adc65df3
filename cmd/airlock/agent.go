package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/airlock/airlock/cmd/airlock/internal/agenttest"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

const agentUsage = `usage: airlock agent test NAME[@DIGEST] [--profile PROFILE]

  test  run the agent contract's conformance checks (docs/agent-contract.md)
        on an imported image, through the broker, under the profile that
        names it as agent.image (--profile when several do)
`

// agentCmd runs agent subcommands; it writes its report to w and says
// whether every check passed.
func agentCmd(ctx context.Context, b airlockv1.BrokerClient, args []string, w io.Writer) (bool, error) {
	if len(args) == 0 || args[0] != "test" {
		return false, errors.New(agentUsage)
	}
	fset := flag.NewFlagSet("agent test", flag.ContinueOnError)
	profile := fset.String("profile", "", "the profile to run the image under (default: the one that names it)")
	ref, err := parseOperand(fset, args[1:], agentUsage)
	if err != nil {
		return false, err
	}
	img, p, err := agenttest.Target(ctx, b, ref, *profile)
	if err != nil {
		return false, err
	}
	fmt.Fprintf(w, "agent image %s@%s under profile %s\n", img.GetName(), img.GetDigest(), p)
	checks, err := agenttest.Run(ctx, b, p)
	if err != nil {
		return false, err
	}
	ok := true
	for _, c := range checks {
		mark := "PASS"
		if !c.OK {
			mark, ok = "FAIL", false
		}
		fmt.Fprintf(w, "%s  %s: %s\n", mark, c.Name, c.Detail)
	}
	return ok, nil
}

// Command airlock is the CLI for an Airlock broker: spawn jobs and inspect
// profiles.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/airlock/airlock/broker/client"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

const usage = `usage: airlock [--socket PATH | --addr HOST:PORT | --target dns:///NAME:PORT [--tls-ca FILE]] [--node HOST:PORT] [--token-file FILE] COMMAND [flags]

commands:
  spawn     run a job and print the response as JSON (--stream: events too)
  ask       ask a model-driven sub-agent about content: ask --content FILE "instructions"
  profiles  list the broker's policy profiles
  explain   print one profile's effective policy
  get       print a job's state
  cancel    cancel a running job
  approve   answer a job's approval request: approve JOB REQUEST allow|deny
  image     import, list and remove agent images: image import FILE [--name NAME] | list | rm NAME[@DIGEST]
  agent     check an imported agent image against the agent contract: agent test NAME[@DIGEST] [--profile P]
  policy    lint, explain and diff profiles locally (airlock policy -h)
  audit     read the audit log locally: tail, show JOB
  doctor    check the host and the configuration (--json for machines)
  bench     measure spawn latency against raw runc and containerd baselines
  mcp       serve Airlock's tools to an MCP client, on stdio or Streamable HTTP
`

func main() {
	global := flag.NewFlagSet("airlock", flag.ExitOnError)
	global.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	socket := global.String("socket", "", "broker unix socket (default $AIRLOCK_SOCKET or "+client.DefaultSocket+")")
	addr := global.String("addr", "", "broker loopback host:port, instead of the socket")
	target := global.String("target", "", "gRPC target of several brokers, such as dns:///airlockd.airlock.svc.cluster.local:7443: jobs are balanced over them")
	tlsCA := global.String("tls-ca", "", "with --target: CA bundle to verify the brokers with (TLS); needed beyond loopback")
	node := global.String("node", "", "with --target: the broker a job ran on (its response's node), for get, cancel and approve")
	tokenFile := global.String("token-file", "", "bearer token file (default $AIRLOCK_TOKEN_FILE)")
	_ = global.Parse(os.Args[1:])
	if global.NArg() == 0 {
		global.Usage()
		os.Exit(2)
	}
	cmd, args := global.Arg(0), global.Args()[1:]
	auditWithSocket := func(args []string) error { return auditCmd(*socket, args) }
	endpoint := client.Endpoint{Socket: client.Socket(*socket), Addr: *addr, Target: *target, TLSCA: *tlsCA, TokenFile: client.TokenFile(*tokenFile)}
	mcpWithBroker := func(args []string) error { return mcpCmd(endpoint, args) }
	if local, ok := map[string]func([]string) error{"policy": policyCmd, "audit": auditWithSocket, "doctor": doctorCmd, "bench": benchCmd, "mcp": mcpWithBroker}[cmd]; ok {
		if err := local(args); err != nil {
			fail(err)
		}
		return
	}
	commands := map[string]func(context.Context, airlockv1.BrokerClient, []string) (proto.Message, error){
		"spawn":    spawn,
		"profiles": profiles,
		"explain":  explain,
		"get":      get,
		"cancel":   cancel,
		"approve":  approve,
		"image":    imageCmd,
	}
	f, ok := commands[cmd]
	if cmd == "ask" || cmd == "agent" {
		ok = true
	}
	if !ok {
		fmt.Fprintf(os.Stderr, "airlock: unknown command %q\n%s", cmd, usage)
		os.Exit(2)
	}
	if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" }) {
		// spawn and ask parse their flags before they touch the broker,
		// and help exits there; the others have a line in usage. No token
		// or broker is needed to read either.
		switch cmd {
		case "ask":
			_, _ = askCmd(context.Background(), nil, args)
		case "spawn":
			_, _ = f(context.Background(), nil, args)
		}
		fmt.Fprint(os.Stdout, usage)
		os.Exit(0)
	}
	conn, err := endpoint.Dial()
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	ctx := context.Background()
	if *node != "" {
		ctx = client.OnNode(ctx, *node)
	}
	if cmd == "agent" {
		passed, err := agentCmd(ctx, conn.Broker, args, os.Stdout)
		if err != nil {
			fail(err)
		}
		if !passed {
			os.Exit(3)
		}
		return
	}
	var msg proto.Message
	if cmd == "ask" {
		msg, err = askCmd(ctx, conn, args)
	} else {
		msg, err = f(ctx, conn.Broker, args)
	}
	if err != nil {
		fail(err)
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: false}.Marshal(msg)
	if err != nil {
		fail(err)
	}
	fmt.Println(string(b))
	if r, ok := msg.(interface{ GetVerdict() airlockv1.Verdict }); ok && r.GetVerdict() != airlockv1.Verdict_VERDICT_OK {
		os.Exit(3)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "airlock:", err)
	os.Exit(1)
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func profiles(ctx context.Context, b airlockv1.BrokerClient, _ []string) (proto.Message, error) {
	return b.ListProfiles(ctx, &airlockv1.ListProfilesRequest{})
}

func explain(ctx context.Context, b airlockv1.BrokerClient, args []string) (proto.Message, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("explain needs one profile name")
	}
	return b.ExplainProfile(ctx, &airlockv1.ExplainProfileRequest{Profile: args[0]})
}

func get(ctx context.Context, b airlockv1.BrokerClient, args []string) (proto.Message, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("get needs one job id")
	}
	return b.GetJob(ctx, &airlockv1.GetJobRequest{JobId: args[0]})
}

func cancel(ctx context.Context, b airlockv1.BrokerClient, args []string) (proto.Message, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("cancel needs one job id")
	}
	return b.Cancel(ctx, &airlockv1.CancelRequest{JobId: args[0]})
}

// approve answers one ApprovalNeeded event of a job streamed by its caller.
// allow runs that command once; a repeat of it asks again.
func approve(ctx context.Context, b airlockv1.BrokerClient, args []string) (proto.Message, error) {
	if len(args) != 3 {
		return nil, fmt.Errorf("approve needs a job id, a request id and allow or deny")
	}
	decisions := map[string]airlockv1.ApprovalDecision{
		"allow": airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE,
		"deny":  airlockv1.ApprovalDecision_APPROVAL_DECISION_DENY,
	}
	d, ok := decisions[args[2]]
	if !ok {
		return nil, fmt.Errorf("approve: decision %q: want allow (this once) or deny", args[2])
	}
	return b.Approve(ctx, &airlockv1.ApproveRequest{JobId: args[0], RequestId: args[1], Decision: d})
}

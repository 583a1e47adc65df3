package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/airlock/airlock/broker/client"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

const askUsage = `usage: airlock ask --profile P --content FILE [--schema FILE] [flags] "instructions"

Asks a model-driven sub-agent about untrusted content: the agent task. The
model reads the content inside a sandbox and answers in the schema's shape;
only the sanitized, schema-valid answer comes back. Without --schema the
answer is {"answer": "..."}.

Prints the answer as JSON on stdout, and the verdict and usage on stderr;
--json prints the whole response instead. Exits 3 when the verdict is not OK.

flags:
`

// askCmd runs one agent job. It returns what to print on stdout and the
// verdict; the caller exits 3 when it is not OK.
func askCmd(ctx context.Context, conn *client.Conn, args []string) (proto.Message, error) {
	fs := flag.NewFlagSet("ask", flag.ExitOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, askUsage); fs.PrintDefaults() }
	profile := fs.String("profile", "", "policy profile with a model section (default: the broker's)")
	schema := fs.String("schema", "", "JSON Schema file the answer must fit")
	model := fs.String("model", "", "one of the profile's allowed models (default: its model.name)")
	maxTurns := fs.Int("max-turns", 0, "lower the profile's model.maxTurns")
	mediaType := fs.String("media-type", "", "media type of the content (default: by file extension)")
	jobID := fs.String("job-id", "", "idempotency key (default: a new UUID)")
	stream := fs.Bool("stream", false, "show model turns, tool calls and approval requests on stderr as they happen; answer approvals with airlock approve")
	asJSON := fs.Bool("json", false, "print the whole response, not only the answer")
	var contents multi
	fs.Var(&contents, "content", "content file (repeatable); - reads stdin")
	_ = fs.Parse(args)
	if fs.NArg() != 1 || strings.TrimSpace(fs.Arg(0)) == "" || len(contents) == 0 {
		fs.Usage()
		return nil, fmt.Errorf("ask needs at least one --content and the instructions as one argument")
	}
	a := client.Ask{Profile: *profile, Instructions: fs.Arg(0), Model: *model, MaxTurns: *maxTurns, JobID: *jobID}
	if *schema != "" {
		b, err := os.ReadFile(*schema)
		if err != nil {
			return nil, err
		}
		a.Schema = string(b)
	}
	for _, c := range contents {
		data, err := readContent(c)
		if err != nil {
			return nil, err
		}
		mt := *mediaType
		if mt == "" {
			mt = mediaTypeOf(c)
		}
		a.Content = append(a.Content, &airlockv1.Content{Data: data, MediaType: mt, Source: "file:" + c})
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	var job *airlockv1.Job
	if *stream {
		var err error
		job, err = conn.AskStream(ctx, a, func(ev *airlockv1.SpawnStreamResponse) {
			if line := eventLine(ev); line != "" {
				fmt.Fprintln(os.Stderr, line)
			}
		})
		if err != nil {
			return nil, err
		}
	} else {
		resp, err := conn.Ask(ctx, a)
		if err != nil {
			return nil, err
		}
		job = airlockv1.FinishedJob(resp)
	}
	fmt.Fprintln(os.Stderr, askSummary(job))
	if *asJSON || job.GetVerdict() != airlockv1.Verdict_VERDICT_OK {
		return job, nil
	}
	return job.GetResult(), nil
}

// readContent reads a content file, or stdin for "-".
func readContent(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(name)
}

// askSummary is one line for a person: the verdict, why, and what the
// model used.
func askSummary(j *airlockv1.Job) string {
	u := j.GetUsage()
	line := fmt.Sprintf("job %s: %s", shown(j.GetJobId()), strings.TrimPrefix(j.GetVerdict().String(), "VERDICT_"))
	if m := j.GetMessage(); m != "" {
		line += ": " + shown(m)
	}
	line += fmt.Sprintf(" (model turns %d, tokens in %d out %d, tool calls %d, wall %s)", u.GetModelTurns(),
		u.GetInputTokens(), u.GetOutputTokens(), u.GetToolCalls(), u.GetWall().AsDuration().Round(time.Millisecond))
	if n := len(j.GetSanitization().GetFindings()); n > 0 {
		line += fmt.Sprintf("; the sanitizer changed or flagged %d places", n)
	}
	if n := u.GetEgressDropped(); n > 0 {
		line += fmt.Sprintf("; %d egress attempts past the log's cap are not listed", n)
	}
	return line
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

func spawn(ctx context.Context, b airlockv1.BrokerClient, args []string) (proto.Message, error) {
	fs := flag.NewFlagSet("spawn", flag.ExitOnError)
	profile := fs.String("profile", "secureclaw", "policy profile")
	task := fs.String("task", "", "task name, e.g. summarize (docs/tasks.md lists the reference agent's)")
	schema := fs.String("schema", "", "JSON Schema file the result must fit (default: the profile's result.defaultSchema)")
	jobID := fs.String("job-id", "", "idempotency key (default: a new UUID)")
	mediaType := fs.String("media-type", "", "media type of the content (default: by file extension)")
	timeout := fs.Duration("timeout", 0, "tighten the profile's wall timeout")
	stream := fs.Bool("stream", false, "stream the job's events to stderr as they come, one line each; approval requests can then be answered with airlock approve")
	var contents, urls, params multi
	fs.Var(&contents, "content", "content file (repeatable)")
	fs.Var(&urls, "url", "content URL the sandbox fetches through its egress proxy (repeatable; needs a profile with network.mode allowlist)")
	fs.Var(&params, "param", "task parameter key=value (repeatable)")
	_ = fs.Parse(args)
	if *task == "" || len(contents)+len(urls) == 0 {
		return nil, fmt.Errorf("spawn needs --task and at least one --content or --url")
	}
	req := &airlockv1.SpawnRequest{
		JobId:   *jobID,
		Profile: *profile,
		Task:    &airlockv1.Task{Name: *task, Params: map[string]string{}},
	}
	// Without --schema none is sent, as the API allows: the broker then
	// applies the profile's default schema, or refuses naming the field
	// when the profile has none.
	if *schema != "" {
		sb, err := os.ReadFile(*schema)
		if err != nil {
			return nil, err
		}
		req.ResultSchema = string(sb)
	}
	for _, p := range params {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("--param %q: want key=value", p)
		}
		req.Task.Params[k] = v
	}
	for _, c := range contents {
		data, err := os.ReadFile(c)
		if err != nil {
			return nil, err
		}
		mt := *mediaType
		if mt == "" {
			mt = mediaTypeOf(c)
		}
		req.Content = append(req.Content, &airlockv1.Content{Data: data, MediaType: mt, Source: "file:" + c})
	}
	for _, u := range urls {
		// The media type is the response's, unless --media-type says.
		req.Content = append(req.Content, &airlockv1.Content{Url: u, MediaType: *mediaType, Source: u})
	}
	if *timeout > 0 {
		req.Overrides = &airlockv1.Overrides{Timeout: durationpb.New(*timeout)}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if !*stream {
		return b.Spawn(ctx, req)
	}
	events, err := b.SpawnStream(ctx, &airlockv1.SpawnStreamRequest{Spawn: req})
	if err != nil {
		return nil, err
	}
	return followStream(os.Stderr, events)
}

// followStream prints each event of a streamed job as one line on w and
// returns the finished job, which the caller prints as Spawn's response.
func followStream(w io.Writer, events grpc.ServerStreamingClient[airlockv1.SpawnStreamResponse]) (*airlockv1.Job, error) {
	for {
		ev, err := events.Recv()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the stream ended without the job's response")
		}
		if err != nil {
			return nil, err
		}
		if d := ev.GetDone(); d != nil {
			return d, nil
		}
		if line := eventLine(ev); line != "" {
			fmt.Fprintln(w, line)
		}
	}
}

// eventLine renders one event for a person. The broker has sanitized what
// came from the sandbox, but it is the hostile job's words: anything that
// is not printable ASCII is quoted, so no byte of it reaches the terminal
// as itself.
func eventLine(ev *airlockv1.SpawnStreamResponse) string {
	job := shown(ev.GetJobId())
	switch e := ev.GetEvent().(type) {
	case *airlockv1.SpawnStreamResponse_Accepted:
		p := e.Accepted.GetPolicy()
		return fmt.Sprintf("job %s accepted: profile %s (%s)", job, shown(p.GetProfile()), shown(p.GetSummary()))
	case *airlockv1.SpawnStreamResponse_Started:
		return fmt.Sprintf("job %s started", job)
	case *airlockv1.SpawnStreamResponse_Egress:
		verdict := "denied"
		if e.Egress.GetAllowed() {
			verdict = "allowed"
		}
		return fmt.Sprintf("job %s egress %s: %s %s:%d: %s", job, verdict, shown(e.Egress.GetMethod()),
			shown(e.Egress.GetHost()), e.Egress.GetPort(), shown(e.Egress.GetReason()))
	case *airlockv1.SpawnStreamResponse_ModelTurn:
		t := e.ModelTurn
		line := fmt.Sprintf("job %s model turn %d: status %d, tokens in %d out %d, %d bytes", job, t.GetTurn(), t.GetStatus(),
			t.GetInputTokens(), t.GetOutputTokens(), t.GetBytesDown())
		if !t.GetAllowed() {
			line = fmt.Sprintf("job %s model turn %d refused", job, t.GetTurn())
		}
		if r := t.GetReason(); r != "" {
			line += ": " + shown(r)
		}
		return line
	case *airlockv1.SpawnStreamResponse_ToolCall:
		c := e.ToolCall
		verdict := "denied"
		if c.GetAllowed() {
			verdict = "allowed"
		}
		what := shown(c.GetTarget())
		if c.GetTool() == "exec" {
			what = shown(strings.Join(c.GetArgv(), " "))
		}
		return fmt.Sprintf("job %s tool call %s %s: %s: %s", job, shown(c.GetTool()), verdict, what, shown(c.GetReason()))
	case *airlockv1.SpawnStreamResponse_ApprovalNeeded:
		a := e.ApprovalNeeded
		return fmt.Sprintf("job %s approval needed: %s (%s); within %s: airlock approve %s %s allow|deny", job,
			shown(a.GetRequest()), shown(a.GetReason()), a.GetTimeout().AsDuration(), job, shown(a.GetRequestId()))
	}
	return ""
}

// shown is s as is when it is printable ASCII, else Go-quoted in ASCII.
func shown(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}

func mediaTypeOf(name string) string {
	switch {
	case strings.HasSuffix(name, ".html"), strings.HasSuffix(name, ".htm"):
		return "text/html"
	case strings.HasSuffix(name, ".json"):
		return "application/json"
	default:
		return "text/plain"
	}
}

// Package mcpserver serves Airlock to MCP clients: a tool that reads
// untrusted content inside a sandbox and returns only the broker's
// sanitized, schema-valid result, and a tool that lists the profiles. It
// speaks to airlockd through its gRPC API, as any other client does, and
// holds no power of its own.
package mcpserver

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/grpc/status"

	"github.com/airlock/airlock/broker/client"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// Tool names.
const (
	ReadTool     = "airlock_read"
	ProfilesTool = "airlock_profiles"
)

// Options configure the server.
type Options struct {
	// Version is the implementation version clients are told.
	Version string
	// Describe turns a stream event into one line for a progress
	// notification; the broker has already sanitized what it quotes.
	Describe func(*airlockv1.SpawnStreamResponse) string
	// Timeout bounds one airlock_read; zero is DefaultTimeout.
	Timeout time.Duration
}

// DefaultTimeout bounds one airlock_read: a profile's own timeout is
// shorter, and an approval waits at most the broker's approval timeout.
const DefaultTimeout = 30 * time.Minute

// ReadInput is airlock_read's input. Its JSON Schema is generated from
// this type.
type ReadInput struct {
	Content      string            `json:"content,omitempty" jsonschema:"the untrusted text to read, such as a user's document; only the sandbox reads it. Give content or url"`
	URL          string            `json:"url,omitempty" jsonschema:"an http or https URL the sandbox fetches itself, through its egress allowlist, so that you never hold the page; needs a profile with egress. Give content or url"`
	MediaType    string            `json:"mediaType,omitempty" jsonschema:"media type of content, such as text/html or text/markdown; default text/plain"`
	Source       string            `json:"source,omitempty" jsonschema:"where the content came from, such as its URL, for the audit log"`
	Task         string            `json:"task,omitempty" jsonschema:"a fixed task of the sandbox's reference agent, such as extract_text, summarize or extract_links; default extract_text, unless instructions are given"`
	Params       map[string]string `json:"params,omitempty" jsonschema:"the task's parameters"`
	Instructions string            `json:"instructions,omitempty" jsonschema:"what a model-driven sub-agent inside the sandbox should do with the content (the agent task); needs a profile with a model"`
	Schema       map[string]any    `json:"schema,omitempty" jsonschema:"JSON Schema the result must fit; default: the profile's, or {answer: string} for instructions"`
	Profile      string            `json:"profile,omitempty" jsonschema:"policy profile, such as secureclaw or ironclaw; default: the broker's"`
}

// ReadOutput is airlock_read's result: what the broker returned, and
// nothing the sandbox wrote unless the broker sanitized and validated it.
type ReadOutput struct {
	JobID string `json:"jobId"`
	// Verdict is OK, or why there is no result (SCHEMA_MISMATCH,
	// TIMEOUT, DENIED, ...).
	Verdict string `json:"verdict"`
	Message string `json:"message,omitempty"`
	// Result is the sanitized result, set only when Verdict is OK.
	Result map[string]any `json:"result,omitempty"`
	// Flags are the sanitizer's changes and flags, by JSON path.
	Flags  []Flag        `json:"flags,omitempty"`
	Egress EgressSummary `json:"egress"`
	// Policy is the effective policy the job ran under.
	Policy string `json:"policy,omitempty"`
}

// Flag is one sanitizer finding.
type Flag struct {
	Path   string `json:"path"`
	Kind   string `json:"kind"`
	Detail string `json:"detail,omitempty"`
	Count  int32  `json:"count,omitempty"`
}

// EgressSummary counts the job's network attempts.
type EgressSummary struct {
	Allowed int `json:"allowed"`
	Denied  int `json:"denied"`
	// DroppedPackets is what the job's firewall dropped: attempts around
	// the proxy.
	DroppedPackets int64 `json:"droppedPackets,omitempty"`
}

// ProfilesInput is airlock_profiles' input: none.
type ProfilesInput struct{}

// ProfilesOutput lists the broker's profiles.
type ProfilesOutput struct {
	Profiles []Profile `json:"profiles"`
}

// Profile is one profile as the broker describes it.
type Profile struct {
	Name    string `json:"name"`
	Hash    string `json:"hash"`
	Summary string `json:"summary"`
}

// New returns an MCP server whose tools call broker.
func New(broker airlockv1.BrokerClient, o Options) *mcp.Server {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "airlock", Version: o.Version}, nil)
	h := &handlers{broker: broker, o: o, pending: map[string]*pendingJob{}}
	mcp.AddTool(s, &mcp.Tool{
		Name: ReadTool,
		Description: "Read untrusted content (a web page, a document, an API response) safely: it is processed in an isolated sandbox " +
			"with no credentials and only allowlisted egress, and only a sanitized, schema-valid result comes back. " +
			"Use it instead of reading such content yourself: prompt injection in it cannot reach you.",
	}, h.read)
	mcp.AddTool(s, &mcp.Tool{
		Name:        ProfilesTool,
		Description: "List Airlock's policy profiles, each with a summary of what its sandboxes may do.",
	}, h.profiles)
	return s
}

type handlers struct {
	broker airlockv1.BrokerClient
	o      Options

	mu      sync.Mutex
	pending map[string]*pendingJob
}

// ErrBadInput is returned, wrapped, for an airlock_read the broker would
// refuse anyway, said in MCP's words.
var ErrBadInput = errors.New("bad airlock_read input")

func (h *handlers) read(ctx context.Context, req *mcp.CallToolRequest, in ReadInput) (*mcp.CallToolResult, ReadOutput, error) {
	if state := req.Params.RequestState; state != "" {
		// The client's answer to an approval this handler asked for.
		pj, err := h.resume(ctx, req, state)
		if err != nil {
			return nil, ReadOutput{}, err
		}
		return h.wait(ctx, req, pj)
	}
	spawn, err := spawnRequest(in)
	if err != nil {
		return nil, ReadOutput{}, err
	}
	if !canElicit(req.Session) && req.Params.GetProgressToken() == nil {
		// Nobody could answer an approval, nor wants the events: the unary
		// call lets the profile's exec.askFallback decide at once.
		ctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
		defer cancel()
		h.progress(ctx, req, 0, "job submitted")
		resp, err := h.broker.Spawn(ctx, spawn)
		if err != nil {
			return nil, ReadOutput{}, brokerError(err)
		}
		h.progress(ctx, req, 1, "job done: "+resp.GetVerdict().String())
		return nil, readOutput(resp), nil
	}
	pj, err := h.start(req, spawn)
	if err != nil {
		return nil, ReadOutput{}, brokerError(err)
	}
	return h.wait(ctx, req, pj)
}

// A streamed job outlives the tool call that started it: an approval is
// asked by returning the call with an input request (MCP's multi
// round-trip requests), and the client's retry with the answer picks the
// job up again by its state token.
type pendingJob struct {
	session string
	events  chan streamItem
	cancel  context.CancelFunc
	// approval is what the client was asked, and expire ends the job
	// should it never answer.
	approval *airlockv1.ApprovalNeeded
	jobID    string
	expire   *time.Timer
	n        float64
}

type streamItem struct {
	ev  *airlockv1.SpawnStreamResponse
	err error
}

// maxPending bounds the jobs waiting for a client's answer; past it, an
// approval is denied rather than asked.
const maxPending = 64

// answerGrace is how long past the broker's own approval timeout a job
// waits for its client to come back before it is cancelled.
const answerGrace = 30 * time.Second

func (h *handlers) start(req *mcp.CallToolRequest, spawn *airlockv1.SpawnRequest) (*pendingJob, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.o.Timeout)
	events, err := h.broker.SpawnStream(ctx, &airlockv1.SpawnStreamRequest{Spawn: spawn})
	if err != nil {
		cancel()
		return nil, err
	}
	pj := &pendingJob{session: req.Session.ID(), events: make(chan streamItem), cancel: cancel}
	go func() {
		for {
			ev, err := events.Recv()
			select {
			case pj.events <- streamItem{ev, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || ev.GetDone() != nil {
				return
			}
		}
	}()
	return pj, nil
}

// wait relays the job's events as progress until it is done, or until it
// needs an approval, which it asks of the client.
func (h *handlers) wait(ctx context.Context, req *mcp.CallToolRequest, pj *pendingJob) (*mcp.CallToolResult, ReadOutput, error) {
	for {
		var it streamItem
		select {
		case it = <-pj.events:
		case <-ctx.Done():
			// The client gave up on the call: the job goes with it.
			pj.cancel()
			return nil, ReadOutput{}, ctx.Err()
		}
		if it.err != nil {
			pj.cancel()
			if errors.Is(it.err, io.EOF) {
				return nil, ReadOutput{}, errors.New("airlock: the broker's stream ended without the job")
			}
			return nil, ReadOutput{}, brokerError(it.err)
		}
		if d := it.ev.GetDone(); d != nil {
			pj.cancel()
			h.progress(ctx, req, pj.n+1, "job done: "+d.GetVerdict().String())
			return nil, readOutput(airlockv1.ResponseOf(d)), nil
		}
		pj.n++
		if h.o.Describe != nil {
			h.progress(ctx, req, pj.n, h.o.Describe(it.ev))
		}
		if a := it.ev.GetApprovalNeeded(); a != nil {
			if canElicit(req.Session) {
				if res, ok := h.ask(pj, it.ev.GetJobId(), a); ok {
					return res, ReadOutput{}, nil
				}
			}
			// A client that cannot be asked, or too many waiting: deny at
			// once, as exec.askFallback (always deny) would after a wait.
			h.answer(ctx, it.ev.GetJobId(), a.GetRequestId(), airlockv1.ApprovalDecision_APPROVAL_DECISION_DENY)
		}
	}
}

// ask parks the job and returns the call with an elicitation for the
// client's user; false when too many jobs are already parked.
func (h *handlers) ask(pj *pendingJob, jobID string, a *airlockv1.ApprovalNeeded) (*mcp.CallToolResult, bool) {
	state := uuid.NewString()
	h.mu.Lock()
	if len(h.pending) >= maxPending {
		h.mu.Unlock()
		return nil, false
	}
	pj.approval, pj.jobID = a, jobID
	pj.expire = time.AfterFunc(a.GetTimeout().AsDuration()+answerGrace, func() {
		if h.take(state) != nil {
			pj.cancel()
		}
	})
	h.pending[state] = pj
	h.mu.Unlock()
	return &mcp.CallToolResult{
		InputRequests: mcp.InputRequestMap{approvalInput: &mcp.ElicitParams{
			Message: fmt.Sprintf("An Airlock sandbox asks to run: %s\nWhy it asks: %s\nAllow it this once?", a.GetRequest(), a.GetReason()),
			RequestedSchema: map[string]any{
				"type": "object",
				"properties": map[string]any{
					"allow": map[string]any{"type": "boolean", "description": "run the command this once"},
				},
				"required": []string{"allow"},
			},
		}},
		RequestState: state,
	}, true
}

// approvalInput names the one input request airlock_read makes.
const approvalInput = "approve"

// resume takes the job parked under state, which must be this session's,
// and gives the broker the client's answer: only an explicit yes allows.
func (h *handlers) resume(ctx context.Context, req *mcp.CallToolRequest, state string) (*pendingJob, error) {
	pj := h.take(state)
	if pj == nil || pj.session != req.Session.ID() {
		if pj != nil {
			// Another session's token: not this client's to answer.
			h.mu.Lock()
			h.pending[state] = pj
			h.mu.Unlock()
		}
		return nil, errors.New("airlock: unknown or expired requestState: the job's approval is no longer waiting")
	}
	pj.expire.Stop()
	decision := airlockv1.ApprovalDecision_APPROVAL_DECISION_DENY
	if res, ok := req.Params.InputResponses[approvalInput].(*mcp.ElicitResult); ok && res.Action == "accept" {
		if allow, _ := res.Content["allow"].(bool); allow {
			decision = airlockv1.ApprovalDecision_APPROVAL_DECISION_ALLOW_ONCE
		}
	}
	h.answer(ctx, pj.jobID, pj.approval.GetRequestId(), decision)
	return pj, nil
}

func (h *handlers) take(state string) *pendingJob {
	h.mu.Lock()
	defer h.mu.Unlock()
	pj := h.pending[state]
	delete(h.pending, state)
	return pj
}

// answer tells the broker. One that arrives too late is refused: the
// broker's fallback has already decided.
func (h *handlers) answer(ctx context.Context, jobID, requestID string, d airlockv1.ApprovalDecision) {
	_, _ = h.broker.Approve(ctx, &airlockv1.ApproveRequest{JobId: jobID, RequestId: requestID, Decision: d})
}

func (h *handlers) progress(ctx context.Context, req *mcp.CallToolRequest, n float64, msg string) {
	token := req.Params.GetProgressToken()
	if token == nil || msg == "" {
		return
	}
	// A client that stopped listening costs the job nothing.
	_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: n, Message: msg})
}

func (h *handlers) profiles(ctx context.Context, _ *mcp.CallToolRequest, _ ProfilesInput) (*mcp.CallToolResult, ProfilesOutput, error) {
	resp, err := h.broker.ListProfiles(ctx, &airlockv1.ListProfilesRequest{})
	if err != nil {
		return nil, ProfilesOutput{}, brokerError(err)
	}
	out := ProfilesOutput{Profiles: []Profile{}}
	for _, p := range resp.GetProfiles() {
		out.Profiles = append(out.Profiles, Profile{Name: p.GetProfile(), Hash: p.GetHash(), Summary: p.GetSummary()})
	}
	return nil, out, nil
}

// spawnRequest turns the tool's input into the broker's request.
func spawnRequest(in ReadInput) (*airlockv1.SpawnRequest, error) {
	if (in.Content == "") == (in.URL == "") {
		return nil, fmt.Errorf("%w: give content or url, one of them", ErrBadInput)
	}
	if in.Task != "" && in.Instructions != "" {
		return nil, fmt.Errorf("%w: give a task or instructions, not both", ErrBadInput)
	}
	req := &airlockv1.SpawnRequest{
		Profile: in.Profile,
		Content: []*airlockv1.Content{{Data: []byte(in.Content), MediaType: cmp.Or(in.MediaType, "text/plain"), Source: in.Source}},
	}
	if in.URL != "" {
		// The response's Content-Type says what it is, unless the caller
		// does.
		req.Content = []*airlockv1.Content{{Url: in.URL, MediaType: in.MediaType, Source: cmp.Or(in.Source, in.URL)}}
	}
	switch {
	case in.Instructions != "":
		req.Task = &airlockv1.Task{Name: "agent", Instructions: in.Instructions}
		req.ResultSchema = client.AnswerSchema
	default:
		req.Task = &airlockv1.Task{Name: cmp.Or(in.Task, "extract_text"), Params: in.Params}
	}
	if in.Schema != nil {
		b, err := json.Marshal(in.Schema)
		if err != nil {
			return nil, fmt.Errorf("%w: schema: %v", ErrBadInput, err)
		}
		req.ResultSchema = string(b)
	}
	return req, nil
}

func readOutput(resp *airlockv1.SpawnResponse) ReadOutput {
	out := ReadOutput{
		JobID:   resp.GetJobId(),
		Verdict: strings.TrimPrefix(resp.GetVerdict().String(), "VERDICT_"),
		Message: resp.GetMessage(),
		Policy:  resp.GetPolicy().GetSummary(),
	}
	if r := resp.GetResult(); r != nil && resp.GetVerdict() == airlockv1.Verdict_VERDICT_OK {
		out.Result = r.AsMap()
	}
	for _, f := range resp.GetSanitization().GetFindings() {
		out.Flags = append(out.Flags, Flag{Path: f.GetPath(), Kind: f.GetKind(), Detail: f.GetDetail(), Count: f.GetCount()})
	}
	for _, e := range resp.GetEgress() {
		if e.GetAllowed() {
			out.Egress.Allowed++
		} else {
			out.Egress.Denied++
		}
	}
	out.Egress.DroppedPackets = resp.GetUsage().GetEgressDeniedPackets()
	return out
}

// brokerError is the broker's refusal in words an MCP client shows its
// model: the status's message, which the broker writes for callers and
// which names the field and the limit, never the job's own text.
func brokerError(err error) error {
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("airlock: %s: %s", st.Code(), st.Message())
	}
	return fmt.Errorf("airlock: %w", err)
}

// canElicit says whether the client declared it can ask its user.
func canElicit(ss *mcp.ServerSession) bool {
	if ss == nil {
		return false
	}
	p := ss.InitializeParams()
	return p != nil && p.Capabilities != nil && p.Capabilities.Elicitation != nil
}

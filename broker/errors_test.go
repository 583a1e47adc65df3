package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/airlock/airlock/broker"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
	"github.com/airlock/airlock/sandbox/job"
)

// TestSpawn_InvalidArgumentNamesTheField: every refusal at the door is
// InvalidArgument with a BadRequest detail naming the request's field, and
// nothing runs.
func TestSpawn_InvalidArgumentNamesTheField(t *testing.T) {
	tests := []struct {
		field string
		edit  func(*airlockv1.SpawnRequest)
		// says is what the message must say beyond the field, if anything.
		says string
	}{
		{"job_id", func(r *airlockv1.SpawnRequest) { r.JobId = "../etc" }, ""},
		{"profile", func(r *airlockv1.SpawnRequest) { r.Profile = "nosuch" }, ""},
		{"overrides.timeout", func(r *airlockv1.SpawnRequest) {
			r.Overrides = &airlockv1.Overrides{Timeout: durationpb.New(-1)}
		}, ""},
		{"overrides.timeout", func(r *airlockv1.SpawnRequest) {
			r.Overrides = &airlockv1.Overrides{Timeout: durationpb.New(24 * time.Hour)}
		}, ""},
		{"overrides.memory_bytes", func(r *airlockv1.SpawnRequest) { r.Overrides = &airlockv1.Overrides{MemoryBytes: 1 << 40} }, ""},
		{"overrides.output_bytes", func(r *airlockv1.SpawnRequest) { r.Overrides = &airlockv1.Overrides{OutputBytes: 1 << 40} }, ""},
		{"overrides.egress[0]", func(r *airlockv1.SpawnRequest) {
			r.Overrides = &airlockv1.Overrides{Egress: []string{"api.example.com"}} // vanilla has no network
		}, ""},
		{"task.name", func(r *airlockv1.SpawnRequest) { r.Task.Name = "Rm -rf" }, ""},
		{"task.params", func(r *airlockv1.SpawnRequest) {
			r.Task.Params = map[string]string{"k": strings.Repeat("v", 5<<10)}
		}, ""},
		{"task.name", func(r *airlockv1.SpawnRequest) { r.Task.Name = "summarise" },
			"the tasks are agent, classify, extract_links, extract_text, fetch, run, summarize"},
		{"task.params", func(r *airlockv1.SpawnRequest) { r.Task.Params = map[string]string{"sentence": "2"} },
			"its params are sentences (optional)"},
		{"task.params[sentences]", func(r *airlockv1.SpawnRequest) { r.Task.Params = map[string]string{"sentences": "0"} },
			"want an integer from 1 to 100"},
		{"task.params[labels]", func(r *airlockv1.SpawnRequest) { r.Task.Name = "classify" },
			"needs param labels"},
		{"task.params[calls]", func(r *airlockv1.SpawnRequest) {
			r.Profile, r.Task.Name, r.Task.Params = "secureclaw", "run", map[string]string{"calls": `[{"tool":"rm","path":"/"}]`}
		}, `unknown tool "rm"`},
		{"content", func(r *airlockv1.SpawnRequest) { r.Content = nil }, ""},
		{"content[1].data", func(r *airlockv1.SpawnRequest) {
			// Within the total, but over what the agent reads of one item.
			r.Content = []*airlockv1.Content{{Data: []byte("x")}, {Data: make([]byte, 16<<20+1)}}
		}, "split it into several items"},
		{"content[2].data", func(r *airlockv1.SpawnRequest) {
			// The third item takes the total one byte over 32 MiB.
			half := make([]byte, 16<<20)
			r.Content = []*airlockv1.Content{{Data: half}, {Data: half}, {Data: []byte("x")}}
		}, ""},
		{"result_schema", func(r *airlockv1.SpawnRequest) { r.ResultSchema = `{"type":` }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`)}
			c, _ := newBroker(t, runner, testToken, 0)
			req := request()
			tt.edit(req)
			// Not ctx(t)'s ten seconds: 32 MiB over bufconn under -race on
			// a loaded machine can take longer, and the deadline is no
			// part of what is tested.
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, err := c.Spawn(cctx, req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("err = %v, want InvalidArgument", err)
			}
			var violations []*errdetails.BadRequest_FieldViolation
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					violations = append(violations, br.GetFieldViolations()...)
				}
			}
			if len(violations) != 1 || violations[0].GetField() != tt.field || violations[0].GetDescription() == "" {
				t.Errorf("field violations %v, want one for %s", violations, tt.field)
			}
			// The message, kept as it was, names at least the top field.
			top := strings.FieldsFunc(tt.field, func(r rune) bool { return r == '.' || r == '[' })[0]
			if !strings.Contains(st.Message(), top) {
				t.Errorf("message %q does not name %s", st.Message(), top)
			}
			if !strings.Contains(st.Message(), tt.says) {
				t.Errorf("message %q does not say %q", st.Message(), tt.says)
			}
			if runner.runs.Load() != 0 {
				t.Error("a refused request ran")
			}
		})
	}
}

// errRunner fails every job with err, as a broken runner would.
type errRunner struct{ err error }

func (r errRunner) Run(context.Context, *job.Job) (*job.Outcome, error) { return nil, r.err }

// TestGetJob_CodesComeFromTheSentinels maps handler errors through the one
// interceptor: NotFound and InvalidArgument as sentinels say, never a code
// built by hand.
func TestGetJob_CodesComeFromTheSentinels(t *testing.T) {
	c, _ := newBroker(t, errRunner{errors.New("boom")}, testToken, 0)
	if _, err := c.GetJob(ctx(t), &airlockv1.GetJobRequest{JobId: "nosuch"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown job: %v, want NotFound", err)
	}
	if _, err := c.GetJob(ctx(t), &airlockv1.GetJobRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty job_id: %v, want InvalidArgument", err)
	}
	// A runner that fails is a verdict, not an RPC error.
	resp, err := c.Spawn(ctx(t), request())
	if err != nil || resp.GetVerdict() != airlockv1.Verdict_VERDICT_SANDBOX_ERROR {
		t.Errorf("failing runner: %v %v, want a SANDBOX_ERROR verdict", resp.GetVerdict(), err)
	}
}

// TestSentinels_AreDistinct keeps each refusal's meaning apart: a task the
// profile rules out is not the token's missing scope.
func TestSentinels_AreDistinct(t *testing.T) {
	all := []error{broker.ErrInvalidRequest, broker.ErrNotFound, broker.ErrOverloaded, broker.ErrPermission,
		broker.ErrTaskNotAllowed, broker.ErrUnavailable, broker.ErrPrecondition}
	for i, a := range all {
		for j, b := range all {
			if i != j && errors.Is(fmt.Errorf("x: %w", a), b) {
				t.Errorf("%v is %v", a, b)
			}
		}
	}
}

func TestToStatus_MapsSentinelsAndNothingElse(t *testing.T) {
	tests := []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("wrapped: %w", broker.ErrInvalidRequest), codes.InvalidArgument},
		{fmt.Errorf("job x: %w", broker.ErrNotFound), codes.NotFound},
		{broker.ErrOverloaded, codes.ResourceExhausted},
		{broker.ErrPermission, codes.PermissionDenied},
		{broker.ErrTaskNotAllowed, codes.FailedPrecondition},
		{broker.ErrPrecondition, codes.FailedPrecondition},
		{broker.ErrUnavailable, codes.Unavailable},
		{context.Canceled, codes.Canceled},
		{status.Error(codes.Unauthenticated, "from auth"), codes.Unauthenticated},
		// Unknown errors are the broker's fault, never the caller's.
		{errors.New("disk on fire"), codes.Internal},
		{errors.New("permission denied"), codes.Internal},
	}
	for _, tt := range tests {
		if got := status.Code(broker.ToStatus(tt.err)); got != tt.want {
			t.Errorf("ToStatus(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	st := status.Convert(broker.ToStatus(broker.ErrOverloaded))
	if len(st.Details()) != 1 || !strings.HasSuffix(st.Message(), "retry in 1s") {
		t.Errorf("overloaded: %v %v, want a retry hint", st.Message(), st.Details())
	}
	if broker.ToStatus(nil) != nil {
		t.Error("ToStatus(nil) is not nil")
	}
}

// TestErrorInterceptors_MapWhatHandlersReturn: whatever a handler returns
// reaches the caller through the same mapping, on unary and stream calls:
// a sentinel as its code, a status as it was, anything else as Internal.
func TestErrorInterceptors_MapWhatHandlersReturn(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"nil", nil, codes.OK},
		{"sentinel", fmt.Errorf("job x: %w", broker.ErrNotFound), codes.NotFound},
		{"status", status.Error(codes.Unauthenticated, "no token"), codes.Unauthenticated},
		{"unknown", errors.New("disk on fire"), codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := broker.UnaryErrors(context.Background(), nil, &grpc.UnaryServerInfo{},
				func(context.Context, any) (any, error) { return nil, tt.err })
			if status.Code(err) != tt.want {
				t.Errorf("unary: %v, want %v", err, tt.want)
			}
			err = broker.StreamErrors(nil, nil, &grpc.StreamServerInfo{}, func(any, grpc.ServerStream) error { return tt.err })
			if status.Code(err) != tt.want {
				t.Errorf("stream: %v, want %v", err, tt.want)
			}
		})
	}
}

// TestSpawnStream_RefusalsCarryTheirDetails: a stream's refusals are the
// same codes and details as Spawn's.
func TestSpawnStream_RefusalsCarryTheirDetails(t *testing.T) {
	tests := []struct {
		name string
		edit func(*airlockv1.SpawnRequest)
		want codes.Code
	}{
		{"bad field", func(r *airlockv1.SpawnRequest) { r.ResultSchema = `{"type":` }, codes.InvalidArgument},
		{"task not allowed", func(r *airlockv1.SpawnRequest) { r.Profile, r.Task.Name = "ironclaw", "fetch" }, codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newBroker(t, &fakeRunner{outcome: rawResult(`{"title":"T"}`)}, testToken, 0)
			req := request()
			tt.edit(req)
			stream, err := c.SpawnStream(ctx(t), &airlockv1.SpawnStreamRequest{Spawn: req})
			if err != nil {
				t.Fatal(err)
			}
			ev, err := stream.Recv()
			st := status.Convert(err)
			if st.Code() != tt.want || len(st.Details()) != 1 {
				t.Fatalf("first event %v, err %v with details %v; want %v with one detail", ev, err, st.Details(), tt.want)
			}
		})
	}
}

// TestSpawn_OversizeRequestsAreToldTheLimit: a request over the fields'
// bounds, up to twice their sum, is still read and refused at the door
// naming the field, with what to do.
func TestSpawn_OversizeRequestsAreToldTheLimit(t *testing.T) {
	runner := &fakeRunner{outcome: rawResult(`{"title":"T"}`)}
	c, _ := newBroker(t, runner, testToken, 0)
	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	req := request()
	item := make([]byte, 12<<20)
	req.Content = []*airlockv1.Content{{Data: item}, {Data: item}, {Data: item}} // 36 MiB
	_, err := c.Spawn(cctx, req)
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "split it over several jobs") {
		t.Errorf("36 MiB of content: %v, want InvalidArgument that says to split it", err)
	}

	if runner.runs.Load() != 0 {
		t.Error("an oversize request ran")
	}
}

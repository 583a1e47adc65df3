package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/airlock/airlock/sandbox/job"
	"github.com/airlock/airlock/sandbox/job/panics"
)

// Sentinel errors of the broker. Handlers return them wrapped, with %w; the
// error interceptors map them to gRPC codes in one place, toStatus, and
// nowhere else.
var (
	// ErrInvalidRequest means the caller must change the request.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrNotFound means a named job or profile does not exist.
	ErrNotFound = errors.New("not found")
	// ErrOverloaded means the broker is running as many jobs as it may.
	ErrOverloaded = errors.New("broker at capacity")
	// ErrPermission means the caller may not touch what it named, such as
	// another caller's job.
	ErrPermission = errors.New("permission denied")
	// ErrTaskNotAllowed means the request is well formed but its profile
	// rules the task out: the caller must pick another task or profile,
	// not another token.
	ErrTaskNotAllowed = errors.New("task not allowed by the profile")
	// ErrUnavailable means the broker is not taking jobs right now.
	ErrUnavailable = errors.New("unavailable")
	// ErrAlreadyExists means a job ID is reused with a different request:
	// an idempotent retry must repeat the request exactly (AIP-155).
	ErrAlreadyExists = errors.New("already exists")
	// ErrPrecondition means the broker's own setup cannot serve the
	// request, such as a service secret that cannot be read.
	ErrPrecondition = errors.New("failed precondition")
	// ErrTooLarge means an upload is over the broker's cap; the message
	// names it. A retry of the same upload fails the same way.
	ErrTooLarge = errors.New("too large")
)

// fieldError is an ErrInvalidRequest about one field of the request. Its
// status carries a BadRequest detail naming the field, so that a client
// can point at it without parsing the message.
type fieldError struct {
	field string // the field's path in the request, e.g. "content[2].data"
	msg   string // the whole message, which names the field and the limit
}

func (e *fieldError) Error() string { return ErrInvalidRequest.Error() + ": " + e.msg }
func (e *fieldError) Unwrap() error { return ErrInvalidRequest }

// badField returns an ErrInvalidRequest about field.
func badField(field, format string, a ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, a...)}
}

// taskError is an ErrTaskNotAllowed. Its status carries a
// PreconditionFailure detail naming the profile and the task.
type taskError struct {
	profile, task, msg string
}

func (e *taskError) Error() string { return ErrTaskNotAllowed.Error() + ": " + e.msg }
func (e *taskError) Unwrap() error { return ErrTaskNotAllowed }

// toStatus maps an error to a gRPC status. An error that already is a
// status passes through. Anything unrecognized is Internal, never a code
// that would suggest the caller did something wrong.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	var details []protoadapt.MessageV1
	switch {
	case errors.Is(err, ErrInvalidRequest):
		code = codes.InvalidArgument
		var fe *fieldError
		if errors.As(err, &fe) {
			details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
				{Field: fe.field, Description: fe.msg}}})
		}
	case errors.Is(err, ErrNotFound), errors.Is(err, job.ErrImageNotFound):
		code = codes.NotFound
	case errors.Is(err, job.ErrImageRefused):
		code = codes.InvalidArgument
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "data", Description: err.Error()}}})
	case errors.Is(err, job.ErrImageInUse):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrTooLarge):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrOverloaded):
		// A retry hint, so well-behaved clients back off instead of
		// hammering a full broker.
		code = codes.ResourceExhausted
		err = fmt.Errorf("%w; retry in 1s", err)
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	case errors.Is(err, ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, ErrPermission):
		code = codes.PermissionDenied
	case errors.Is(err, ErrAlreadyExists):
		code = codes.AlreadyExists
	case errors.Is(err, ErrTaskNotAllowed):
		code = codes.FailedPrecondition
		var te *taskError
		if errors.As(err, &te) {
			details = append(details, &errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{
				{Type: "PROFILE", Subject: te.profile, Description: "task " + te.task + " is not allowed: " + te.msg}}})
		}
	case errors.Is(err, ErrPrecondition):
		code = codes.FailedPrecondition
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	st := status.New(code, err.Error())
	if len(details) > 0 {
		if withDetails, derr := st.WithDetails(details...); derr == nil {
			st = withDetails
		}
	}
	return st.Err()
}

// unaryErrors maps the errors of unary handlers to statuses.
func unaryErrors(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	return resp, toStatus(err)
}

// streamErrors maps the errors of stream handlers to statuses.
func streamErrors(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return toStatus(handler(srv, ss))
}

// A handler's panic, a bug of the broker's that a request provoked, fails
// that call with Internal and is logged for the operator; it does not end
// airlockd and every job in it. A panic in a goroutine the handler started
// is not the interceptor's to catch. A job's run recovers its own panic
// first (recoverJob), so that the job ends with a verdict and the store
// sees it finished; the interceptor is the last line.

// errPanicked is what the caller is told: nothing of the panic, which may
// quote the request.
var errPanicked = status.Error(codes.Internal, "the broker failed on this call (a bug); it is in airlockd's log")

func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer recovered(log, info.FullMethod, &err)
		return handler(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer recovered(log, info.FullMethod, &err)
		return handler(srv, ss)
	}
}

// recovered turns a panic into errPanicked and one log line: the panic's
// value quoted and capped, and the stack.
func recovered(log *slog.Logger, method string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	panics.Log(log, "handler panicked", r, debug.Stack(), "method", method)
	*err = errPanicked
}

package broker

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Sentinel errors of the broker. They are mapped to gRPC codes in one
// place, toStatus, and nowhere else.
var (
	// ErrInvalidRequest means the caller must change the request.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrNotFound means a named job or profile does not exist.
	ErrNotFound = errors.New("not found")
	// ErrOverloaded means the broker is running as many jobs as it may.
	ErrOverloaded = errors.New("broker at capacity")
	// ErrPermission means the caller may not touch what it named.
	ErrPermission = errors.New("permission denied")
	// ErrUnavailable means the broker is not taking jobs right now.
	ErrUnavailable = errors.New("unavailable")
	// ErrPrecondition means the broker's own setup cannot serve the
	// request, such as a service secret that cannot be read.
	ErrPrecondition = errors.New("failed precondition")
)

// toStatus maps an error to a gRPC status. Anything unrecognized is
// Internal, never a code that would suggest the caller did something wrong.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, ErrInvalidRequest):
		code = codes.InvalidArgument
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrOverloaded):
		// A retry hint, so well-behaved clients back off instead of
		// hammering a full broker.
		st, derr := status.New(codes.ResourceExhausted, err.Error()+"; retry in 1s").WithDetails(
			&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
		if derr == nil {
			return st.Err()
		}
		code = codes.ResourceExhausted
	case errors.Is(err, ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, ErrPermission):
		code = codes.PermissionDenied
	case errors.Is(err, ErrPrecondition):
		code = codes.FailedPrecondition
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

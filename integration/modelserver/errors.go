package modelserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

var (
	// ErrNotLoopback is returned, wrapped, by Start for an address that is
	// not loopback: a stand-in that answers anyone would be a free model
	// endpoint on the network.
	ErrNotLoopback = errors.New("address is not loopback")
	// ErrInvalidRequest is the kind of every request the API would refuse
	// with 400.
	ErrInvalidRequest = errors.New("invalid request")
)

// apiError is an error reply, written in the API's own form by writeError.
type apiError struct {
	status  int
	message string
	// param and code are OpenAI's; Anthropic has no such fields.
	param, code string
	// kind is the sentinel the error wraps, if any.
	kind error
}

func (e *apiError) Error() string { return e.message }
func (e *apiError) Unwrap() error { return e.kind }

// badRequest is a 400 naming the offending field, as both APIs do.
func badRequest(param, format string, args ...any) error {
	return &apiError{
		status:  http.StatusBadRequest,
		message: fmt.Sprintf(format, args...),
		param:   param,
		kind:    ErrInvalidRequest,
	}
}

// asAPIError turns any error from parsing into the reply for it; what is
// not already an apiError is a 400, since only the request can be at fault.
func asAPIError(err error) *apiError {
	var e *apiError
	if errors.As(err, &e) {
		return e
	}
	return &apiError{status: http.StatusBadRequest, message: err.Error(), kind: ErrInvalidRequest}
}

// openAIErrorType is the error.type OpenAI sends with each status.
func openAIErrorType(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "requests"
	case status >= 500:
		return "server_error"
	default:
		return "invalid_request_error"
	}
}

// anthropicErrorType is the error.type Anthropic sends with each status.
func anthropicErrorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusPaymentRequired:
		return "billing_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// writeError writes e in the form of api; an unknown api gets OpenAI's,
// which is also what most compatible servers send.
func writeError(w http.ResponseWriter, api, requestID string, e *apiError) {
	msg := e.message
	if msg == "" {
		msg = http.StatusText(e.status)
	}
	if msg == "" {
		msg = "status " + strconv.Itoa(e.status)
	}
	var body any
	if api == APIAnthropic {
		body = map[string]any{
			"type":       "error",
			"error":      map[string]any{"type": anthropicErrorType(e.status), "message": msg},
			"request_id": requestID,
		}
	} else {
		code := e.code
		if code == "" && e.status == http.StatusTooManyRequests {
			code = "rate_limit_exceeded"
		}
		body = map[string]any{"error": map[string]any{
			"message": msg,
			"type":    openAIErrorType(e.status),
			"param":   nullIfEmpty(e.param),
			"code":    nullIfEmpty(code),
		}}
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

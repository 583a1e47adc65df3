// Package result turns the bytes a sandbox wrote to /output/result.json into
// the value the broker returns, or into a precise refusal. Those bytes are
// hostile: every step fails closed, and errors never echo more of them than a
// person needs to fix the job.
//
// Process reads, parses and validates a result, then Sanitize cleans every
// string and key in it (escape sequences, invisible characters, chat-template
// tokens, secrets, credentials, links) and reports, by JSON path, what it
// changed and what merely looks like instructions, so that the caller can
// hand the result to a model as data.
package result

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"

	"google.golang.org/protobuf/types/known/structpb"
)

// Every sentinel except ErrBadSchema means the sandbox's result was refused;
// the broker reports those as a SCHEMA_INVALID verdict with no result.
// ErrBadSchema is the caller's mistake, found before any job runs.
var (
	// ErrTooLarge means the result is over the byte cap.
	ErrTooLarge = errors.New("result too large")
	// ErrNotJSON means the result is not exactly one JSON document in valid UTF-8.
	ErrNotJSON = errors.New("not a single JSON document")
	// ErrDuplicateKey means an object repeats a key, which JSON parsers resolve inconsistently.
	ErrDuplicateKey = errors.New("duplicate key")
	// ErrTooDeep means the result nests more than MaxDepth arrays and objects.
	ErrTooDeep = errors.New("nested too deeply")
	// ErrNumberRange means a number is beyond float64 range, which consumers
	// would read as infinity, an error or a different value.
	ErrNumberRange = errors.New("number out of float64 range")
	// ErrSchemaInvalid means the result does not match the job's schema.
	ErrSchemaInvalid = errors.New("does not match schema")
	// ErrBadSchema means a schema is not usable: not strict JSON, not valid, or not self-contained.
	ErrBadSchema = errors.New("bad result schema")
)

// Read reads at most maxBytes from r, so an oversized result is refused
// before it is held in memory rather than after.
func Read(r io.Reader, maxBytes int64) ([]byte, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("result: maxBytes must be positive, got %d", maxBytes)
	}
	raw, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("result: reading: %w", err)
	}
	if int64(len(raw)) > maxBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxBytes)
	}
	return raw, nil
}

// Process turns raw into the result the broker returns: size check, Parse,
// Validate, Sanitize, then ToStruct. A nil schema is refused: the caller
// picks the default schema, so that "no schema" never silently means
// "anything goes".
//
// The schema judges what the sandbox wrote, before Sanitize rewrites it.
// If sanitizing changed anything, the result is validated again: a
// truncated string, a redacted value that no longer matches a pattern or a
// removed member may break the schema, and the caller was promised a
// result that matches it. That failure wraps ErrSchemaInvalid and says that
// sanitizing caused it. The findings are returned with it, since they
// explain it and hold nothing of what was removed.
func Process(raw []byte, schema *Schema, maxBytes int64, opts SanitizeOptions) (_ *structpb.Struct, _ []Finding, err error) {
	// A bug of Airlock's that a hostile result provokes ends this result,
	// not the broker and every job in it.
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		// A detector goroutine's panic is raised again here as the
		// PanicError it recovered, with the stack it began in.
		pe, ok := r.(*PanicError)
		if !ok {
			pe = &PanicError{Value: r, Stack: debug.Stack()}
		}
		err = pe
	}()
	if schema == nil {
		return nil, nil, errors.New("result: no schema: the caller must supply one, even if it is a permissive default")
	}
	if maxBytes <= 0 {
		return nil, nil, fmt.Errorf("result: maxBytes must be positive, got %d", maxBytes)
	}
	if int64(len(raw)) > maxBytes {
		return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(raw), maxBytes)
	}
	v, err := Parse(raw)
	if err != nil {
		return nil, nil, err
	}
	if err := schema.Validate(v); err != nil {
		return nil, nil, err
	}
	clean, findings := Sanitize(v, opts)
	if changedValue(findings) {
		if err := schema.Validate(clean); err != nil {
			return nil, findings, fmt.Errorf("after sanitizing: %w", err)
		}
	}
	st, err := ToStruct(clean)
	if err != nil {
		return nil, findings, err
	}
	return st, findings, nil
}

// PanicError is a panic in parsing, validating or sanitizing a result,
// recovered. Its Error says nothing of the panic, whose value may quote
// the result: Value and Stack are for the operator's log.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return "result: processing failed inside the broker (a bug); nothing of the result is returned"
}

// changedValue reports whether any finding is a change rather than a flag.
func changedValue(fs []Finding) bool {
	for _, f := range fs {
		if f.Kind != KindFlagged {
			return true
		}
	}
	return false
}

// Package result turns the bytes a sandbox wrote to /output/result.json into
// the value the broker returns, or into a precise refusal. Those bytes are
// hostile: every step fails closed, and errors never echo more of them than a
// person needs to fix the job.
package result

import (
	"errors"
	"fmt"
	"io"

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
// Validate, then ToStruct. A nil schema is refused: the caller picks the
// default schema, so that "no schema" never silently means "anything goes".
func Process(raw []byte, schema *Schema, maxBytes int64) (*structpb.Struct, error) {
	if schema == nil {
		return nil, errors.New("result: no schema: the caller must supply one, even if it is a permissive default")
	}
	if maxBytes <= 0 {
		return nil, fmt.Errorf("result: maxBytes must be positive, got %d", maxBytes)
	}
	if int64(len(raw)) > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(raw), maxBytes)
	}
	v, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	if err := schema.Validate(v); err != nil {
		return nil, err
	}
	// Sanitize belongs here. After validation, so the schema judges what the
	// sandbox wrote rather than the broker's rewrite of it; before ToStruct,
	// so it walks plain Go values and reports changes by the same JSON paths
	// that Parse and Validate use.
	return ToStruct(v)
}

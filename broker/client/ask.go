package client

import (
	"context"
	"errors"
	"io"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// AnswerSchema is the result schema Ask uses when none is given: one
// string, the model's answer.
const AnswerSchema = `{"type":"object","required":["answer"],"additionalProperties":false,"properties":{"answer":{"type":"string"}}}`

// Ask is one question for a model-driven sub-agent about untrusted
// content: the agent task.
type Ask struct {
	// Profile must have a model section; empty is the broker's default.
	Profile string
	// Instructions are the caller's own words to the model: trusted.
	Instructions string
	// Content is the untrusted input the model reads as data.
	Content []*airlockv1.Content
	// Schema is the JSON Schema the answer must fit; empty is
	// AnswerSchema (a profile's default schema is for its fixed tasks).
	Schema string
	// Model picks one of the profile's allowed models; empty is its
	// default. MaxTurns, when positive, lowers the profile's.
	Model    string
	MaxTurns int
	// JobID is the idempotency key; empty gets a new one.
	JobID string
}

// Request is the SpawnRequest that asks a.
func (a Ask) Request() *airlockv1.SpawnRequest {
	req := &airlockv1.SpawnRequest{
		JobId:        a.JobID,
		Profile:      a.Profile,
		Task:         &airlockv1.Task{Name: "agent", Instructions: a.Instructions},
		Content:      a.Content,
		ResultSchema: a.Schema,
	}
	if a.Model != "" || a.MaxTurns > 0 {
		req.Overrides = &airlockv1.Overrides{Model: &airlockv1.ModelOverrides{Name: a.Model, MaxTurns: int32(a.MaxTurns)}}
	}
	return req
}

// Ask runs a and returns the broker's response: a verdict, and the
// sanitized answer when it is OK. A job the model failed is a response
// with a verdict, not an error.
func (c *Conn) Ask(ctx context.Context, a Ask) (*airlockv1.SpawnResponse, error) {
	return c.Broker.Spawn(ctx, c.withSchema(ctx, a).Request())
}

// AskStream runs a on SpawnStream, calling onEvent for each event (model
// turns, tool calls, approvals) until the job is done, and returns it.
// Approvals are answered with Approve while onEvent or another goroutine
// runs.
func (c *Conn) AskStream(ctx context.Context, a Ask, onEvent func(*airlockv1.SpawnStreamResponse)) (*airlockv1.Job, error) {
	events, err := c.Broker.SpawnStream(ctx, &airlockv1.SpawnStreamRequest{Spawn: c.withSchema(ctx, a).Request()})
	if err != nil {
		return nil, err
	}
	for {
		ev, err := events.Recv()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the stream ended without the job")
		}
		if err != nil {
			return nil, err
		}
		if d := ev.GetDone(); d != nil {
			return d, nil
		}
		if onEvent != nil {
			onEvent(ev)
		}
	}
}

// withSchema fills in AnswerSchema when a has no schema.
func (c *Conn) withSchema(_ context.Context, a Ask) Ask {
	if a.Schema == "" {
		a.Schema = AnswerSchema
	}
	return a
}

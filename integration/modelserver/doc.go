// Package modelserver is a scripted stand-in for a model API, for tests,
// the demo and benchmarks on a machine without a real model.
//
// It serves OpenAI's Chat Completions (POST /v1/chat/completions) and
// Anthropic's Messages (POST /v1/messages) on loopback, following the
// providers' published wire formats closely enough that the official SDKs
// talk to it unchanged: the same request fields, reply shapes, server-sent
// event sequences, usage blocks and error bodies with their statuses.
//
// What the model says is decided by a Script per model name. A Script sees
// the request normalised into a Turn, the same for both APIs, and returns a
// Reply: text, tool calls, an error status, a reply that never comes, or a
// padded reply of any size that is generated as it is written. Scripts are
// stateless: the conversation is in every request, as it is for a real
// model, so Turn.Number is derived from it rather than counted here.
//
// It is an external party's stand-in only, never one of Airlock's own parts,
// and it refuses to listen anywhere but loopback.
package modelserver

// Package egress is the broker's egress proxy: the one network path a
// sandboxed job has.
//
// A Proxy is an HTTP/1.1 forward proxy (absolute-form http:// requests and
// CONNECT tunnels) shared by every job. It tells jobs apart by the source
// address of the connection, which the job's network namespace fixes, and
// checks each request against that job's allowlist before anything leaves
// the host. It resolves names itself and dials only the addresses that
// passed the check, so a job can neither pick the address (DNS rebinding)
// nor reach loopback, private, link-local or other special ranges, or the
// broker host's own addresses, unless an allowlist entry names the address
// outright.
//
// Service aliases (http://<alias>.airlock.internal/...) are forwarded to a
// configured upstream with a credential header added here, so the sandbox
// never holds the credential. Every attempt, allowed or denied, is recorded
// in the job's Session.
//
// A job's model alias goes through a gate (ModelPolicy) that enforces the
// model's limits here, outside the sandbox, since the agent in it may be
// steered by what it reads: one API path, the operator's model name, capped
// output tokens, turns and input tokens counted from the upstream's own
// usage, and replies cut at a byte cap.
package egress

// Package panics logs a recovered panic the one way Airlock does. Airlock
// recovers only where a panic ends one call, one job or one connection
// and nothing else: a gRPC handler, a job's run, a connection of the
// egress proxy or of a tool gateway. Everywhere else a panic ends
// airlockd, whose state may be corrupt.
package panics

import (
	"fmt"
	"log/slog"
	"strconv"
)

// MaxValueBytes caps the part of a panic's value that is logged: the value
// may quote whatever a job or a request sent.
const MaxValueBytes = 1024

// Log logs r, what recover returned, as one error record: msg and attrs,
// then r quoted and capped at MaxValueBytes, then stack. The caller takes
// stack with debug.Stack in the deferred function that recovered, where
// the frames the panic began in are still on the stack, or where the
// panic began when it is raised again elsewhere.
func Log(log *slog.Logger, msg string, r any, stack []byte, attrs ...any) {
	v := fmt.Sprint(r)
	if len(v) > MaxValueBytes {
		v = v[:MaxValueBytes]
	}
	log.Error(msg, append(attrs[:len(attrs):len(attrs)], "panic", strconv.Quote(v), "stack", string(stack))...)
}

package auth

import (
	"context"

	"google.golang.org/grpc/credentials"
)

// Credentials returns client credentials that send token as
// "authorization: Bearer <token>" on every call.
func Credentials(token []byte) credentials.PerRPCCredentials {
	return bearerCredentials{header: "Bearer " + string(token)}
}

type bearerCredentials struct {
	header string
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c bearerCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": c.header}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials. It is
// false because the broker serves on a unix socket (mode 0600) or on
// loopback, where there is no wire to protect and no TLS to require; a
// non-loopback bind needs TLS, which the broker enforces when it listens.
func (bearerCredentials) RequireTransportSecurity() bool { return false }

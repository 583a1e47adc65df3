// Package client dials an Airlock broker the way airlockd serves it: a unix
// socket by default or loopback TCP, with the bearer token on every call.
package client

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/airlock/airlock/broker/auth"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// Defaults shared by airlockd and the CLI, so each finds the other.
const (
	DefaultSocket = "/run/airlock/airlock.sock"
	// EnvSocket overrides DefaultSocket.
	EnvSocket = "AIRLOCK_SOCKET"
	// EnvTokenFile names the token file when --token-file is not given.
	EnvTokenFile = "AIRLOCK_TOKEN_FILE"
)

// Socket returns flagValue, else $AIRLOCK_SOCKET, else DefaultSocket.
func Socket(flagValue string) string {
	return firstNonEmpty(flagValue, os.Getenv(EnvSocket), DefaultSocket)
}

// TokenFile returns flagValue, else $AIRLOCK_TOKEN_FILE.
func TokenFile(flagValue string) string {
	return firstNonEmpty(flagValue, os.Getenv(EnvTokenFile))
}

// Conn is a connection to a broker, or, from DialTarget, to several.
type Conn struct {
	*grpc.ClientConn
	Broker airlockv1.BrokerClient
	// router is DialTarget's; nil for one broker.
	router *router
}

// Close closes the connection and every per-node one.
func (c *Conn) Close() error {
	if c.router != nil {
		c.router.close()
	}
	return c.ClientConn.Close()
}

// Dial connects to a broker at addr (a host:port on loopback) or, when addr
// is empty, at socket. The token is sent with every call.
func Dial(socket, addr, tokenFile string) (*Conn, error) {
	token, err := auth.LoadToken(tokenFile)
	if err != nil {
		return nil, err
	}
	target := "unix://" + socket
	if addr != "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("--addr %q: %w", addr, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, errors.New("--addr must be a loopback address: the broker speaks plaintext gRPC")
		}
		target = addr
	} else if _, err := os.Stat(socket); err != nil {
		return nil, fmt.Errorf("broker socket %s: %w (is airlockd running? set --socket or %s)", socket, err, EnvSocket)
	}
	cc, err := grpc.NewClient(target, callOptions(insecure.NewCredentials(), token)...)
	if err != nil {
		return nil, err
	}
	return &Conn{ClientConn: cc, Broker: airlockv1.NewBrokerClient(cc)}, nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if strings.TrimSpace(x) != "" {
			return x
		}
	}
	return ""
}

// explainTooLarge rewrites gRPC's words for a message over a size limit,
// the client's or the broker's, into what the caller can do about it.
func explainTooLarge(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "message larger than max") {
		return err
	}
	return status.Errorf(codes.ResourceExhausted, "the request is too large for the broker (%s): content may be at most 32 MiB in all and 16 MiB per item; split it over several jobs", st.Message())
}

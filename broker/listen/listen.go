// Package listen opens the broker's listeners under its bind policy: a
// unix socket of mode 0600 by default, loopback TCP on request, and any
// other address only with TLS and an explicit opt-in. The gRPC API and
// the metrics endpoint share the policy and the TLS configuration.
package listen

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// ErrRefused means the bind policy forbids the requested listener.
var ErrRefused = errors.New("bind refused")

// Config says where and how to listen.
type Config struct {
	// Socket is the unix socket path, used when Addr is empty.
	Socket string
	// Addr is a host:port to serve TCP on.
	Addr string
	// AllowRemote must be set to bind a non-loopback address.
	AllowRemote bool
	// TLSCert and TLSKey are required for a non-loopback address.
	TLSCert, TLSKey string
	// TLSClientCA, when set, requires clients to present a certificate it
	// signed (mTLS).
	TLSClientCA string
}

// Open returns the listener and the server options it needs: TLS
// credentials for a remote bind, and on the unix socket the peer's
// credentials (PeerCred) as each call's AuthInfo.
func Open(c Config) (net.Listener, []grpc.ServerOption, error) {
	if c.Addr == "" {
		l, err := unixSocket(c.Socket)
		if err != nil {
			return nil, nil, err
		}
		return l, []grpc.ServerOption{grpc.Creds(peerCreds{})}, nil
	}
	l, tc, err := TCP("--listen", c)
	if err != nil || tc == nil {
		return l, nil, err
	}
	return l, []grpc.ServerOption{grpc.Creds(credentials.NewTLS(tc))}, nil
}

// Check applies the bind policy to c.Addr, TCP, without binding it, so
// that a daemon refuses a bad flag before it starts anything. flag names
// the option in errors.
//
// The policy: a loopback IP literal may be bound as it is, in plaintext
// or, with TLSCert, in TLS. Any other address, a tailnet or LAN address
// or every interface included, is reachable by other machines: it needs
// both AllowRemote and TLSCert/TLSKey.
func Check(flag string, c Config) error {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flag, c.Addr, err)
	}
	if isLoopback(host) {
		return nil
	}
	if !c.AllowRemote {
		return fmt.Errorf("%w: %s %s is not a loopback address; binding it needs --allow-remote and --tls-cert/--tls-key", ErrRefused, flag, c.Addr)
	}
	if c.TLSCert == "" || c.TLSKey == "" {
		return fmt.Errorf("%w: %s %s with --allow-remote needs --tls-cert and --tls-key: nothing it serves may cross a network in clear", ErrRefused, flag, c.Addr)
	}
	return nil
}

// TCP opens c.Addr under the bind policy (Check) and returns the TLS
// configuration to serve it with: nil for plaintext loopback, otherwise
// c's certificate, requiring a client certificate when TLSClientCA is
// set. Every listener of one daemon given the same Config is served the
// same way, so no endpoint is weaker than the API.
func TCP(flag string, c Config) (net.Listener, *tls.Config, error) {
	if err := Check(flag, c); err != nil {
		return nil, nil, err
	}
	var tc *tls.Config
	if c.TLSCert != "" || c.TLSKey != "" {
		var err error
		if tc, err = serverTLS(c); err != nil {
			return nil, nil, err
		}
	}
	l, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", flag, err)
	}
	return l, tc, nil
}

// isLoopback accepts only IP literals in 127.0.0.0/8 or ::1; a name could
// resolve anywhere.
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func serverTLS(c Config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if c.TLSClientCA != "" {
		pem, err := os.ReadFile(c.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca %s: no PEM certificates", c.TLSClientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// unixSocket listens on path with mode 0600, replacing a stale socket but
// never another kind of file.
func unixSocket(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("no socket path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%w: %s exists and is not a socket", ErrRefused, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	// The umask closes the window between bind and chmod in which another
	// local user could connect.
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

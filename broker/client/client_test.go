package client_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/client"
	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// testToken is a token auth.CheckToken accepts: 64 hex characters.
const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// bigResponse is larger than gRPC's default 4 MiB receive limit, which the
// client raises so that a large result or OCI spec arrives whole.
const bigResponse = 5 << 20

// echoBroker answers ListProfiles with the caller's token name, so a test
// sees which token arrived, and ExplainProfile with a large document or a
// NotFound status.
type echoBroker struct {
	airlockv1.UnimplementedBrokerServer
}

func (echoBroker) ListProfiles(ctx context.Context, _ *airlockv1.ListProfilesRequest) (*airlockv1.ListProfilesResponse, error) {
	id, _ := auth.Caller(ctx)
	return &airlockv1.ListProfilesResponse{Profiles: []*airlockv1.EffectivePolicy{{Profile: id.Name}}}, nil
}

func (echoBroker) ExplainProfile(_ context.Context, req *airlockv1.ExplainProfileRequest) (*airlockv1.ExplainProfileResponse, error) {
	if req.GetProfile() != "big" {
		return nil, status.Errorf(codes.NotFound, "profile %q: not found", req.GetProfile())
	}
	return &airlockv1.ExplainProfileResponse{EffectiveJson: strings.Repeat("x", bigResponse)}, nil
}

// serve serves echoBroker on l behind the broker's token interceptors, as
// airlockd does, until the test ends.
func serve(t *testing.T, l net.Listener) {
	t.Helper()
	a, err := auth.New([]byte(testToken))
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor()))
	airlockv1.RegisterBrokerServer(g, echoBroker{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(l)
	}()
	t.Cleanup(func() {
		g.Stop()
		<-done
	})
}

// unixBroker serves on a unix socket in a fresh directory and returns its
// path.
func unixBroker(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "airlock.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, l)
	return sock
}

// tcpBroker serves on loopback TCP and returns the address.
func tcpBroker(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, l)
	return l.Addr().String()
}

// tokenFile writes token to a file of mode perm and returns its path.
func tokenFile(t *testing.T, token string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(token+"\n"), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

func dial(t *testing.T, socket, addr, tokenPath string) *client.Conn {
	t.Helper()
	conn, err := client.Dial(socket, addr, tokenPath)
	if err != nil {
		t.Fatalf("Dial(%q, %q): %v", socket, addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestDial_SendsTheTokenOnEveryCall: over the socket and over loopback
// TCP, each call carries the token file's token, which the broker's
// interceptor accepts as the caller.
func TestDial_SendsTheTokenOnEveryCall(t *testing.T) {
	tf := tokenFile(t, testToken, 0o600)
	tests := []struct {
		name         string
		socket, addr func(t *testing.T) string
	}{
		{"unix socket", unixBroker, func(*testing.T) string { return "" }},
		{"loopback address", func(*testing.T) string { return "/nonexistent" }, tcpBroker},
		{"localhost", func(*testing.T) string { return "" }, func(t *testing.T) string {
			return strings.Replace(tcpBroker(t), "127.0.0.1", "localhost", 1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := dial(t, tt.socket(t), tt.addr(t), tf)
			for i := range 2 {
				resp, err := conn.Broker.ListProfiles(callCtx(t), &airlockv1.ListProfilesRequest{})
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if got := resp.GetProfiles()[0].GetProfile(); got != auth.TokenCaller {
					t.Errorf("call %d: broker saw caller %q, want %q", i, got, auth.TokenCaller)
				}
			}
		})
	}
}

// TestDial_WrongTokenIsUnauthenticated: a token the broker does not hold
// is refused by the broker, not by the client, with the broker's status.
func TestDial_WrongTokenIsUnauthenticated(t *testing.T) {
	other := strings.Repeat("fedcba9876543210", 4)
	conn := dial(t, unixBroker(t), "", tokenFile(t, other, 0o600))
	_, err := conn.Broker.ListProfiles(callCtx(t), &airlockv1.ListProfilesRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("err = %v, want Unauthenticated", err)
	}
}

// TestDial_PassesBrokerStatusesThrough: the client adds nothing to a
// broker's status; the code and message arrive as sent.
func TestDial_PassesBrokerStatusesThrough(t *testing.T) {
	conn := dial(t, unixBroker(t), "", tokenFile(t, testToken, 0o600))
	_, err := conn.Broker.ExplainProfile(callCtx(t), &airlockv1.ExplainProfileRequest{Profile: "nosuch"})
	st := status.Convert(err)
	if st.Code() != codes.NotFound || st.Message() != `profile "nosuch": not found` {
		t.Errorf("status = %v %q, want NotFound with the broker's message", st.Code(), st.Message())
	}
}

// TestDial_ReceivesResponsesOverTheDefaultLimit: a response over gRPC's
// default 4 MiB arrives whole, as large results and specs must.
func TestDial_ReceivesResponsesOverTheDefaultLimit(t *testing.T) {
	conn := dial(t, unixBroker(t), "", tokenFile(t, testToken, 0o600))
	resp, err := conn.Broker.ExplainProfile(callCtx(t), &airlockv1.ExplainProfileRequest{Profile: "big"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetEffectiveJson()); n != bigResponse {
		t.Errorf("got %d bytes, want %d", n, bigResponse)
	}
}

// TestDial_RefusesBeforeConnecting: what cannot be a safe connection to a
// broker is refused by Dial itself, and nothing is dialled.
func TestDial_RefusesBeforeConnecting(t *testing.T) {
	good := tokenFile(t, testToken, 0o600)
	sock := unixBroker(t)
	tests := []struct {
		name         string
		socket, addr string
		tokenFile    string
		want         error  // matched with errors.Is, when set
		wantText     string // in the message
	}{
		{"no token file", sock, "", "", auth.ErrNoToken, "AIRLOCK_TOKEN_FILE"},
		{"missing token file", sock, "", filepath.Join(t.TempDir(), "absent"), auth.ErrNoToken, "cannot open"},
		{"token file others can read", sock, "", tokenFile(t, testToken, 0o644), auth.ErrInsecureTokenFile, "chmod 600"},
		{"weak token", sock, "", tokenFile(t, "abc", 0o600), auth.ErrWeakToken, ""},
		{"remote address", "", "10.0.0.1:7000", good, nil, "loopback"},
		{"host name", "", "example.com:443", good, nil, "loopback"},
		{"address without port", "", "127.0.0.1", good, nil, "--addr"},
		{"missing socket", filepath.Join(t.TempDir(), "none.sock"), "", good, nil, "is airlockd running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := client.Dial(tt.socket, tt.addr, tt.tokenFile)
			if err == nil {
				conn.Close()
				t.Fatal("Dial succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("err = %v, want it to say %q", err, tt.wantText)
			}
		})
	}
}

// TestSocket_FlagThenEnvironmentThenDefault and TestTokenFile_FlagThenEnvironment:
// the CLI and airlockd find each other by the same rules.
func TestSocket_FlagThenEnvironmentThenDefault(t *testing.T) {
	tests := []struct{ flag, env, want string }{
		{"/flag.sock", "/env.sock", "/flag.sock"},
		{"", "/env.sock", "/env.sock"},
		{" ", "/env.sock", "/env.sock"},
		{"", "", client.DefaultSocket},
	}
	for _, tt := range tests {
		t.Setenv(client.EnvSocket, tt.env)
		if got := client.Socket(tt.flag); got != tt.want {
			t.Errorf("Socket(%q) with $%s=%q = %q, want %q", tt.flag, client.EnvSocket, tt.env, got, tt.want)
		}
	}
}

func TestTokenFile_FlagThenEnvironment(t *testing.T) {
	tests := []struct{ flag, env, want string }{
		{"/flag", "/env", "/flag"},
		{"", "/env", "/env"},
		{"", "", ""},
	}
	for _, tt := range tests {
		t.Setenv(client.EnvTokenFile, tt.env)
		if got := client.TokenFile(tt.flag); got != tt.want {
			t.Errorf("TokenFile(%q) with $%s=%q = %q, want %q", tt.flag, client.EnvTokenFile, tt.env, got, tt.want)
		}
	}
}

// TestDial_ExplainsARequestOverTheBrokersLimit: gRPC's words for a request
// the broker will not read become what to do about it.
func TestDial_ExplainsARequestOverTheBrokersLimit(t *testing.T) {
	conn := dial(t, unixBroker(t), "", tokenFile(t, testToken, 0o600)) // reads at most gRPC's default 4 MiB
	_, err := conn.Broker.Spawn(callCtx(t), &airlockv1.SpawnRequest{Content: []*airlockv1.Content{{Data: make([]byte, 5<<20)}}})
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "split it over several jobs") {
		t.Errorf("status = %v %q, want ResourceExhausted that says to split the content", st.Code(), st.Message())
	}
}

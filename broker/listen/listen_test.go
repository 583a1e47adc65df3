package listen

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/peer"
)

func TestOpen_UnixSocketIsMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.sock")
	l, opts, err := Open(Config{Socket: path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || len(opts) != 1 {
		t.Errorf("mode %v opts %d, want 0600 and the peer-credentials transport", st.Mode().Perm(), len(opts))
	}
}

func TestOpen_RefusesToReplaceANonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.sock")
	os.WriteFile(path, []byte("precious"), 0o600)
	if _, _, err := Open(Config{Socket: path}); !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("the file was replaced")
	}
}

func TestOpen_Loopback(t *testing.T) {
	l, _, err := Open(Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

func TestOpen_BindPolicy(t *testing.T) {
	cert, key := selfSigned(t)
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"any address without opt-in", Config{Addr: "0.0.0.0:0"}, false},
		{"a name, not a loopback IP", Config{Addr: "localhost:0"}, false},
		{"remote opt-in without TLS", Config{Addr: "0.0.0.0:0", AllowRemote: true}, false},
		{"remote TLS without opt-in", Config{Addr: "0.0.0.0:0", TLSCert: cert, TLSKey: key}, false},
		{"remote with opt-in and TLS", Config{Addr: "0.0.0.0:0", AllowRemote: true, TLSCert: cert, TLSKey: key}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, opts, err := Open(tt.cfg)
			if tt.ok {
				if err != nil || len(opts) != 1 {
					t.Fatalf("err %v opts %d, want a TLS listener", err, len(opts))
				}
				l.Close()
				return
			}
			if !errors.Is(err, ErrRefused) {
				if l != nil {
					l.Close()
				}
				t.Fatalf("err = %v, want ErrRefused", err)
			}
		})
	}
}

func selfSigned(t *testing.T) (certPath, keyPath string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "airlock"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certPath, keyPath
}

// TestOpen_UnixSocketCallsCarryThePeersCredentials: a call on the unix
// socket carries the kernel's word on who made it, which the auth layer
// keys its failure budget on.
func TestOpen_UnixSocketCallsCarryThePeersCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.sock")
	l, opts, err := Open(Config{Socket: path})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan credentials.AuthInfo, 1)
	srv := grpc.NewServer(append(opts, grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			p, _ := peer.FromContext(ctx)
			got <- p.AuthInfo
			return h(ctx, req)
		}))...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(l)
	defer srv.Stop()
	cc, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	pc, ok := (<-got).(PeerCred)
	if !ok {
		t.Fatal("no peer credentials on the call")
	}
	if pc.UID != uint32(os.Getuid()) || pc.PID != int32(os.Getpid()) {
		t.Errorf("peer uid %d pid %d, want %d and %d", pc.UID, pc.PID, os.Getuid(), os.Getpid())
	}
	if want := fmt.Sprintf("unix-uid:%d", os.Getuid()); pc.PeerKey() != want {
		t.Errorf("PeerKey %q, want %q", pc.PeerKey(), want)
	}
}

// TestTCP_NamesTheFlagAndServesTLSWithACertificate: the rule is the same
// for every listener of the daemon, and its refusals name the flag that
// asked; a certificate means TLS even on loopback.
func TestTCP_NamesTheFlagAndServesTLSWithACertificate(t *testing.T) {
	if _, _, err := TCP("--metrics-listen", Config{Addr: "0.0.0.0:0"}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "--metrics-listen 0.0.0.0:0 is not a loopback address") {
		t.Errorf("TCP = %v, want ErrRefused naming --metrics-listen", err)
	}
	l, tc, err := TCP("--metrics-listen", Config{Addr: "127.0.0.1:0"})
	if err != nil || tc != nil {
		t.Fatalf("loopback without a certificate: TLS %v, err %v; want plaintext", tc != nil, err)
	}
	l.Close()
	cert, key := selfSigned(t)
	l, tc, err = TCP("--metrics-listen", Config{Addr: "127.0.0.1:0", TLSCert: cert, TLSKey: key})
	if err != nil || tc == nil || len(tc.Certificates) != 1 || tc.MinVersion != tls.VersionTLS13 {
		t.Fatalf("loopback with a certificate: %+v, err %v; want TLS 1.3 with the certificate", tc, err)
	}
	l.Close()
	if _, _, err := TCP("--metrics-listen", Config{Addr: "127.0.0.1:0", TLSKey: key}); err == nil {
		t.Error("a key without its certificate was served")
	}
}

package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/broker/metrics"
)

// TestOpenMetrics_HTTPSWithTheAPIsCertificate: with a certificate, the
// metrics are served over TLS only: a scrape that trusts the CA gets
// them, a plaintext one gets no metrics. With --tls-client-ca, a scrape
// without a client certificate is refused too.
func TestOpenMetrics_HTTPSWithTheAPIsCertificate(t *testing.T) {
	pki := newTestPKI(t)
	for _, mtls := range []bool{false, true} {
		name := "tls"
		if mtls {
			name = "mtls"
		}
		t.Run(name, func(t *testing.T) {
			// Loopback keeps the test on 127.0.0.0/8; the TLS decision is
			// the same for a remote address, which Validate lets through
			// only with --allow-remote and TLS.
			o := Options{MetricsListen: "127.0.0.1:0", AllowRemote: true, TLSCert: pki.serverCert, TLSKey: pki.serverKey}
			if mtls {
				o.TLSClientCA = pki.caFile
			}
			l, err := openMetrics(&o)
			if err != nil {
				t.Fatal(err)
			}
			m := metrics.New()
			m.Up.Set(1)
			served := make(chan error, 1)
			go func() { served <- m.Serve(l) }()
			t.Cleanup(func() {
				l.Close()
				if err := <-served; err != nil {
					t.Errorf("Serve: %v", err)
				}
			})
			url := "://" + l.Addr().String() + "/metrics"

			withCert := &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}}
			if body, err := scrape(t, "https"+url, withCert); err != nil || !strings.Contains(body, "airlock_up 1") {
				t.Errorf("https scrape trusting the CA: %v, airlock_up in body: %v", err, strings.Contains(body, "airlock_up 1"))
			}
			if body, err := scrape(t, "http"+url, nil); err == nil && strings.Contains(body, "airlock_up") {
				t.Error("a plaintext scrape got the metrics")
			}
			if _, err := scrape(t, "https"+url, &tls.Config{}); err == nil {
				t.Error("a scrape that does not trust the CA succeeded")
			}
			_, err = scrape(t, "https"+url, &tls.Config{RootCAs: pki.pool})
			if mtls && err == nil {
				t.Error("with --tls-client-ca, a scrape without a client certificate succeeded")
			}
			if !mtls && err != nil {
				t.Errorf("without --tls-client-ca, a scrape without a client certificate: %v", err)
			}
		})
	}
}

// TestOpenMetrics_LoopbackWithoutACertificateIsPlaintext: as before, and
// as the bench tools and the integration suite scrape it.
func TestOpenMetrics_LoopbackWithoutACertificateIsPlaintext(t *testing.T) {
	l, err := openMetrics(&Options{MetricsListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	served := make(chan error, 1)
	go func() { served <- m.Serve(l) }()
	defer func() { l.Close(); <-served }()
	if body, err := scrape(t, "http://"+l.Addr().String()+"/metrics", nil); err != nil || !strings.Contains(body, "airlock_up") {
		t.Errorf("plaintext loopback scrape: %v", err)
	}
}

// scrape GETs url; a status other than 200 is an error.
func scrape(t *testing.T, url string, tc *tls.Config) (string, error) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tc}}
	resp, err := hc.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	return string(body), err
}

// testPKI is a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA.
type testPKI struct {
	caFile, serverCert, serverKey string
	pool                          *x509.CertPool
	client                        tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{caFile: filepath.Join(dir, "ca.pem"), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := newKey(t)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "airlock"}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	der, k := leaf(2, x509.ExtKeyUsageServerAuth)
	p.serverCert, p.serverKey = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	writePEM(t, p.serverCert, "CERTIFICATE", der)
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.serverKey, "EC PRIVATE KEY", kb)
	der, k = leaf(3, x509.ExtKeyUsageClientAuth)
	p.client = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

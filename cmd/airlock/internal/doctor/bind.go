package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/airlock/airlock/broker/listen"
	"github.com/airlock/airlock/sandbox/egress"
)

// certExpiryWarning is how early an expiring certificate is reported.
const certExpiryWarning = 30 * 24 * time.Hour

// checkBind applies airlockd's bind policy (broker/listen) to --listen, so
// that a refusal shows up here rather than at start, and says how exposed
// an accepted bind is.
func checkBind(_ context.Context, e *env) result {
	var f findings
	c := e.cfg
	if c.Listen == "" {
		return result{ok: true, detail: "unix socket " + absPath(c.Socket)}
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		f.add(Fail, fmt.Sprintf("--listen %q: %v", c.Listen, err), "give host:port, e.g. 127.0.0.1:7443")
		return f.result("")
	}
	ip := net.ParseIP(host)
	if ip == nil {
		f.add(Fail, fmt.Sprintf("--listen %s names a host, not an IP: airlockd accepts loopback only as a literal, since a name can resolve anywhere", c.Listen),
			"use 127.0.0.1 or [::1], or leave --listen unset for the unix socket")
		return f.result("")
	}
	if ip.IsLoopback() {
		return result{ok: true, detail: "loopback TCP " + c.Listen + "; every local user can connect, so the token is the only barrier (the unix socket is tighter)"}
	}
	where := "a non-loopback address"
	if ip.IsUnspecified() {
		where = "every interface"
	}
	switch {
	case !c.AllowRemote:
		f.add(Fail, fmt.Sprintf("--listen %s binds %s without --allow-remote: airlockd refuses to start", c.Listen, where),
			"bind 127.0.0.1 or the unix socket; to serve remote clients, add --allow-remote with --tls-cert and --tls-key")
	case c.TLSCert == "" || c.TLSKey == "":
		f.add(Fail, fmt.Sprintf("--listen %s binds %s without TLS: the token would cross the network in clear, and airlockd refuses to start", c.Listen, where),
			"add --tls-cert and --tls-key (and --tls-client-ca for mTLS)")
	case c.TLSClientCA == "":
		f.add(Warn, fmt.Sprintf("--listen %s binds %s with TLS but no client certificates: anyone who can reach it may guess tokens", c.Listen, where),
			"add --tls-client-ca so only clients with a certificate you issued can connect, and firewall the port")
	}
	return f.result(fmt.Sprintf("--listen %s binds %s with --allow-remote, TLS and client certificates", c.Listen, where))
}

// checkTLS loads the TLS files as airlockd would, and checks that the key
// is private and the certificate current.
func checkTLS(_ context.Context, e *env) result {
	var f findings
	c := e.cfg
	if c.TLSCert == "" && c.TLSKey == "" && c.TLSClientCA == "" {
		return result{ok: true, detail: "not configured"}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		f.add(Fail, "only one of --tls-cert and --tls-key is set", "set both")
		return f.result("")
	}
	detail := "TLS"
	if c.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			f.add(Fail, fmt.Sprintf("--tls-cert/--tls-key: %v", err), "point them at a matching PEM certificate and key")
			return f.result("")
		}
		if st, err := os.Stat(c.TLSKey); err == nil && st.Mode().Perm()&0o077 != 0 {
			f.add(Fail, fmt.Sprintf("key %s has mode %#o: other users can read it and impersonate the broker", c.TLSKey, st.Mode().Perm()), "chmod 600 "+c.TLSKey)
		}
		if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil {
			left := time.Until(leaf.NotAfter)
			switch {
			case left <= 0:
				f.add(Fail, fmt.Sprintf("certificate %s expired on %s", c.TLSCert, leaf.NotAfter.Format(time.DateOnly)), "renew the certificate")
			case left < certExpiryWarning:
				f.add(Warn, fmt.Sprintf("certificate %s expires on %s", c.TLSCert, leaf.NotAfter.Format(time.DateOnly)), "renew the certificate")
			}
			detail = fmt.Sprintf("certificate valid until %s, key private", leaf.NotAfter.Format(time.DateOnly))
		}
	}
	if c.TLSClientCA != "" {
		pem, err := os.ReadFile(c.TLSClientCA)
		if err != nil || !x509.NewCertPool().AppendCertsFromPEM(pem) {
			f.add(Fail, fmt.Sprintf("--tls-client-ca %s holds no readable PEM certificate (%v)", c.TLSClientCA, err), "point it at the CA that issues client certificates")
		}
		detail += "; client certificates required"
	}
	return f.result(detail)
}

// checkDebugListeners applies airlockd's rules for --metrics-listen, the
// API's own bind rule and TLS (broker/listen), and for --pprof, a loopback
// IP and a port whatever else is set, since a heap profile shows the
// broker's memory.
func checkDebugListeners(_ context.Context, e *env) result {
	var f findings
	var serving []string
	c := e.cfg
	if c.MetricsListen != "" {
		mc := listen.Config{Addr: c.MetricsListen, AllowRemote: c.AllowRemote, TLSCert: c.TLSCert, TLSKey: c.TLSKey, TLSClientCA: c.TLSClientCA}
		switch err := listen.Check("--metrics-listen", mc); {
		case err != nil:
			f.add(Fail, fmt.Sprintf("%v: airlockd refuses to start", err),
				"give a loopback IP and port, such as 127.0.0.1:9464, or add --allow-remote with --tls-cert and --tls-key for a scraper on another machine")
		case c.TLSCert != "":
			serving = append(serving, "--metrics-listen "+c.MetricsListen+" (https, the API's certificate)")
		default:
			serving = append(serving, "--metrics-listen "+c.MetricsListen+" (loopback)")
		}
	}
	if c.PprofListen != "" {
		host, _, err := net.SplitHostPort(c.PprofListen)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			f.add(Fail, fmt.Sprintf("--pprof %q is not a loopback IP and port: airlockd refuses to start", c.PprofListen),
				"give a loopback IP and port, such as 127.0.0.1:6060, and profile from this host")
		} else {
			serving = append(serving, "--pprof "+c.PprofListen+" (loopback)")
		}
	}
	if len(serving) == 0 {
		return f.result("neither metrics nor pprof served")
	}
	return f.result(strings.Join(serving, ", "))
}

// checkUpstreamCA loads --upstream-ca as airlockd does: a bundle without a
// certificate stops it at start.
func checkUpstreamCA(_ context.Context, e *env) result {
	var f findings
	path := e.cfg.UpstreamCA
	if path == "" {
		return result{ok: true, detail: "not configured: https service upstreams are checked against the system's CAs"}
	}
	if _, err := egress.LoadCAFile(path); err != nil {
		f.add(Fail, fmt.Sprintf("--upstream-ca: %v: airlockd refuses to start", err),
			"point it at a PEM bundle of only the certificates of the CAs that sign the upstreams'")
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o022 != 0 {
		f.add(Fail, fmt.Sprintf("%s has mode %#o: other users can add a CA and read what jobs send to services", path, st.Mode().Perm()), "chmod go-w "+path)
	}
	return f.result(path + " holds CA certificates, trusted besides the system's")
}

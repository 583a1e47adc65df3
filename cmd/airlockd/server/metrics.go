package server

import (
	"crypto/tls"
	"net"

	"github.com/airlock/airlock/broker/listen"
)

// metricsBind is --metrics-listen under the API's bind rule and with the
// API's TLS: a non-loopback address needs --allow-remote and
// --tls-cert/--tls-key, and with --tls-client-ca the scraper must present
// a client certificate too. One rule and one certificate for both, rather
// than a flag pair of its own: metrics name profiles and egress hosts, and
// an operator who exposes them should not be able to do it more weakly
// than the API.
func (o *Options) metricsBind() listen.Config {
	return listen.Config{
		Addr: o.MetricsListen, AllowRemote: o.AllowRemote,
		TLSCert: o.TLSCert, TLSKey: o.TLSKey, TLSClientCA: o.TLSClientCA,
	}
}

// openMetrics opens --metrics-listen: https whenever airlockd has a
// certificate, plaintext only on loopback without one.
func openMetrics(o *Options) (net.Listener, error) {
	l, tc, err := listen.TCP("--metrics-listen", o.metricsBind())
	if err != nil || tc == nil {
		return l, err
	}
	return tls.NewListener(l, tc), nil
}

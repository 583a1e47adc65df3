package server

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/broker"
)

func TestOptionsValidate_RefusesFlagsThatMeanNothing(t *testing.T) {
	ok := Options{StateDir: "/var/lib/airlock", ProxyPort: 3128, ApprovalTimeout: broker.DefaultApprovalTimeout, JobRetention: time.Hour, RetainJobs: broker.DefaultRetainJobs}
	tests := []struct {
		name    string
		edit    func(*Options)
		wantErr string
	}{
		{"defaults", func(*Options) {}, ""},
		{"a short approval timeout", func(o *Options) { o.ApprovalTimeout = time.Second }, ""},
		{"zero retained jobs", func(o *Options) { o.RetainJobs = 0 }, "--retain-jobs 0: both must be positive"},
		{"zero approval timeout", func(o *Options) { o.ApprovalTimeout = 0 }, "--approval-timeout 0s: must be positive"},
		{"negative approval timeout", func(o *Options) { o.ApprovalTimeout = -time.Second }, "--approval-timeout -1s: must be positive"},
		{"zero proxy port", func(o *Options) { o.ProxyPort = 0 }, "--proxy-port"},
		{"proxy port over 65535", func(o *Options) { o.ProxyPort = 65536 }, "--proxy-port"},
		{"no state dir", func(o *Options) { o.StateDir = "" }, "--state-dir is required"},
		// --metrics-listen follows --listen's bind rule.
		{"metrics on loopback", func(o *Options) { o.MetricsListen = "127.0.0.1:9464" }, ""},
		{"metrics on a pod address without --allow-remote or TLS", func(o *Options) { o.MetricsListen = "10.1.2.3:9464" },
			"bind refused: --metrics-listen 10.1.2.3:9464 is not a loopback address; binding it needs --allow-remote and --tls-cert/--tls-key"},
		{"metrics without --allow-remote", func(o *Options) { o.MetricsListen, o.TLSCert, o.TLSKey = "10.1.2.3:9464", "c.pem", "k.pem" }, "needs --allow-remote"},
		{"metrics without TLS", func(o *Options) { o.MetricsListen, o.AllowRemote = "10.1.2.3:9464", true },
			"bind refused: --metrics-listen 10.1.2.3:9464 with --allow-remote needs --tls-cert and --tls-key"},
		{"metrics without the TLS key", func(o *Options) { o.MetricsListen, o.AllowRemote, o.TLSCert = "10.1.2.3:9464", true, "c.pem" }, "needs --tls-cert and --tls-key"},
		{"metrics on every interface without TLS", func(o *Options) { o.MetricsListen, o.AllowRemote = ":9464", true }, "needs --tls-cert and --tls-key"},
		{"metrics on a name, not an IP", func(o *Options) { o.MetricsListen = "localhost:9464" }, "is not a loopback address"},
		{"metrics without a port", func(o *Options) { o.MetricsListen = "127.0.0.1" }, `--metrics-listen "127.0.0.1"`},
		{"metrics with --allow-remote and TLS", func(o *Options) {
			o.MetricsListen, o.AllowRemote, o.TLSCert, o.TLSKey = "10.1.2.3:9464", true, "c.pem", "k.pem"
		}, ""},
		{"a negative connection age", func(o *Options) { o.MaxConnectionAge = -time.Second }, "--max-connection-age"},
		{"an advertised address", func(o *Options) { o.AdvertiseAddress = "10.0.3.7:7443" }, ""},
		{"an advertised address without a port", func(o *Options) { o.AdvertiseAddress = "10.0.3.7" }, "--advertise-address"},
		{"an advertised address too long", func(o *Options) { o.AdvertiseAddress = strings.Repeat("a", 300) + ":1" }, "--advertise-address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.edit(&o)
			err := o.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestAdvertised_IsAnAddressAClientCanReach: the node responses name is
// --advertise-address, else the address served, and nothing for a
// wildcard bind, which no client can dial.
func TestAdvertised_IsAnAddressAClientCanReach(t *testing.T) {
	lo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	wild, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Close()
	tests := []struct {
		name string
		o    Options
		lis  net.Listener
		want string
	}{
		{"loopback", Options{}, lo, lo.Addr().String()},
		{"advertised", Options{AdvertiseAddress: "10.0.3.7:7443"}, wild, "10.0.3.7:7443"},
		{"wildcard", Options{}, wild, ""},
	}
	for _, tt := range tests {
		if got := advertised(tt.o, tt.lis); got != tt.want {
			t.Errorf("%s: advertised = %q, want %q", tt.name, got, tt.want)
		}
	}
}

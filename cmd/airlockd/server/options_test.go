package server

import (
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

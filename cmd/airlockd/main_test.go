package main

import (
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/broker"
)

func TestValidate_RefusesFlagsThatMeanNothing(t *testing.T) {
	ok := options{proxyPort: 3128, approvalTimeout: broker.DefaultApprovalTimeout, jobRetention: time.Hour, retainJobs: broker.DefaultRetainJobs}
	tests := []struct {
		name    string
		edit    func(*options)
		wantErr string
	}{
		{"defaults", func(*options) {}, ""},
		{"a short approval timeout", func(o *options) { o.approvalTimeout = time.Second }, ""},
		{"zero retained jobs", func(o *options) { o.retainJobs = 0 }, "--retain-jobs 0: both must be positive"},
		{"zero approval timeout", func(o *options) { o.approvalTimeout = 0 }, "--approval-timeout 0s: must be positive"},
		{"negative approval timeout", func(o *options) { o.approvalTimeout = -time.Second }, "--approval-timeout -1s: must be positive"},
		{"zero proxy port", func(o *options) { o.proxyPort = 0 }, "--proxy-port"},
		{"proxy port over 65535", func(o *options) { o.proxyPort = 65536 }, "--proxy-port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.edit(&o)
			err := o.validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

//go:build integration

package integration

import (
	"fmt"
	"strings"
	"testing"

	airlockv1 "github.com/airlock/airlock/proto/airlock/v1"
)

// TestEscapeChecklist runs the escape checklist from inside a sandbox under
// each shipped profile, logs it as a table, and fails on any way out.
func TestEscapeChecklist(t *testing.T) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-22s %-18s %-18s %-18s", "check", "vanilla", "secureclaw", "ironclaw")
	rows := map[string]map[string]string{}
	var order []string
	row := func(check, profile, v string) {
		if rows[check] == nil {
			rows[check] = map[string]string{}
			order = append(order, check)
		}
		rows[check][profile] = v
	}
	for _, tt := range shipped {
		req := hostileReq("escape_checklist", nil)
		req.Profile = tt.profile
		resp := spawn(t, req)
		if resp.Verdict != airlockv1.Verdict_VERDICT_OK {
			t.Fatalf("%s: verdict %s: %s", tt.profile, resp.Verdict, resp.Message)
		}
		c := resp.Result.Fields["checklist"].GetStructValue().AsMap()
		status, _ := c["status"].(map[string]any)
		row("seccomp", tt.profile, fmt.Sprint(status["Seccomp"]))
		row("no_new_privs", tt.profile, fmt.Sprint(status["NoNewPrivs"]))
		row("cap_eff", tt.profile, fmt.Sprint(status["CapEff"]))
		row("uid_map", tt.profile, fmt.Sprint(c["uid_map"]))
		row("pid 1", tt.profile, fmt.Sprint(c["pid1"]))
		ns, _ := c["namespaces"].(map[string]any)
		row("namespaces", tt.profile, fmt.Sprint(len(ns)))

		if status["Seccomp"] != "2" || status["NoNewPrivs"] != "1" || status["CapEff"] != "0000000000000000" {
			t.Errorf("%s: status %v", tt.profile, status)
		}
		var binds []string
		for _, m := range c["mounts"].([]any) {
			mm := m.(map[string]any)
			point, root, fstype := fmt.Sprint(mm["point"]), fmt.Sprint(mm["root"]), fmt.Sprint(mm["fstype"])
			// Masked and read-only /proc paths and device nodes are binds
			// from pseudo filesystems; host content would come from a disk
			// filesystem at a point other than the rootfs, input and output.
			pseudo := map[string]bool{"proc": true, "sysfs": true, "tmpfs": true, "devtmpfs": true, "devpts": true, "mqueue": true, "cgroup": true, "cgroup2": true}
			// A profile that allows exec also gets its job's run
			// directory on /run, read-only: it holds only the tool
			// gateway's socket.
			if point == "/run" && tt.profile != "ironclaw" && strings.HasSuffix(root, "/run") {
				if opts := fmt.Sprint(mm["options"]); !strings.HasPrefix(opts, "ro,") {
					t.Errorf("%s: /run is mounted %s, want read-only", tt.profile, opts)
				}
				continue
			}
			// Under runsc, /tmp is the broker's size-capped tmpfs, bound
			// in as /output is: gVisor's own would not keep the caps.
			scratch := point == "/tmp" && tt.runtime == "runsc"
			if !pseudo[fstype] && point != "/input" && point != "/output" && point != "/" && !scratch {
				binds = append(binds, point+"<-"+root+" ("+fstype+")")
			}
		}
		row("host binds", tt.profile, fmt.Sprint(len(binds)))
		if len(binds) != 0 {
			t.Errorf("%s: host paths mounted besides /input and /output: %v", tt.profile, binds)
		}
		var devs []string
		for _, d := range c["devices"].([]any) {
			devs = append(devs, fmt.Sprint(d))
		}
		row("devices", tt.profile, fmt.Sprint(len(devs)))
		for _, d := range devs {
			for _, bad := range []string{"mem", "kmsg", "sda", "vda", "nvme", "fuse", "kvm", "net"} {
				if strings.HasPrefix(strings.Fields(d + " x")[len(strings.Fields(d+" x"))-2], bad) {
					t.Errorf("%s: device %q in the sandbox", tt.profile, d)
				}
			}
		}
		connected := 0
		for p, v := range c["unix_sockets"].(map[string]any) {
			if v == "connected" {
				connected++
				t.Errorf("%s: reached unix socket %s", tt.profile, p)
			}
		}
		row("sockets reached", tt.profile, fmt.Sprint(connected))
		writable := 0
		for _, key := range []string{"writable", "release_agent"} {
			m, _ := c[key].(map[string]any)
			for p, v := range m {
				if v == "writable" {
					writable++
					t.Errorf("%s: %s is writable", tt.profile, p)
				}
			}
		}
		row("proc/sys writable", tt.profile, fmt.Sprint(writable))
	}
	for _, check := range order {
		fmt.Fprintf(&b, "\n%-22s", check)
		for _, tt := range shipped {
			fmt.Fprintf(&b, " %-18s", rows[check][tt.profile])
		}
	}
	t.Log(b.String())
}

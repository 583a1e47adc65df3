package sandbox

import (
	"fmt"
	"slices"
	"testing"

	"github.com/containerd/containerd/contrib/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock/airlock/policies/policy"
)

// refuses reports whether a seccomp action makes the syscall fail.
func refuses(a specs.LinuxSeccompAction) bool {
	switch a {
	case specs.ActErrno, specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap:
		return true
	}
	return false
}

// allowed returns the names among want that some rule of sc lets through,
// with or without argument conditions, or that the default action allows.
func allowed(sc *specs.LinuxSeccomp, want []string) []string {
	if sc == nil || !refuses(sc.DefaultAction) {
		return want
	}
	var out []string
	for _, rule := range sc.Syscalls {
		if refuses(rule.Action) {
			continue
		}
		for _, n := range rule.Names {
			if slices.Contains(want, n) && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// issueSyscalls are the calls the security review found containerd's
// default profile allows; the class they stand for is DeniedEverywhere.
var issueSyscalls = []string{"io_uring_setup", "io_uring_enter", "io_uring_register", "ptrace", "process_vm_readv", "process_vm_writev"}

func TestSeccomp_NoShippedProfileAllowsIoUringOrPtrace(t *testing.T) {
	if got := allowed(seccomp.DefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}), issueSyscalls); len(got) == 0 {
		t.Fatal("containerd's default profile already refuses the issue's syscalls: this test proves nothing")
	}
	for _, shipped := range shippedProfiles(t).All() {
		// Each shipped profile as it is, and with every seccomp mode and
		// every capability a profile may grant: none brings them back.
		variants := map[string]*policy.Profile{"as shipped": shipped}
		for _, mode := range []string{policy.SeccompDefault, policy.SeccompStrict} {
			for _, caps := range [][]string{nil, {"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE"}} {
				p := *shipped
				p.Isolation.Seccomp, p.Isolation.Capabilities = mode, caps
				variants[fmt.Sprintf("%s with %d caps", mode, len(caps))] = &p
			}
		}
		for name, p := range variants {
			t.Run(shipped.Name+"/"+name, func(t *testing.T) {
				s, err := Explain(p)
				if err != nil {
					t.Fatal(err)
				}
				if got := allowed(s.Linux.Seccomp, slices.Concat(issueSyscalls, DeniedEverywhere)); len(got) > 0 {
					t.Errorf("seccomp %s allows %v", p.Isolation.Seccomp, got)
				}
			})
		}
	}
}

func TestSeccomp_ExplainNamesWhatEveryProfileDenies(t *testing.T) {
	for _, p := range shippedProfiles(t).All() {
		t.Run(p.Name, func(t *testing.T) {
			s, err := Explain(p)
			if err != nil {
				t.Fatal(err)
			}
			want := DeniedEverywhere
			if p.Isolation.Seccomp == policy.SeccompStrict {
				want = StrictDenied
			}
			var named []string
			for _, rule := range s.Linux.Seccomp.Syscalls {
				if rule.Action == specs.ActErrno && rule.ErrnoRet != nil && *rule.ErrnoRet == 1 {
					named = append(named, rule.Names...)
				}
			}
			for _, n := range want {
				if !slices.Contains(named, n) {
					t.Errorf("the explained spec names no EPERM rule for %s", n)
				}
			}
		})
	}
}

func TestDefaultProfile_KeepsEverythingElseOfContainerds(t *testing.T) {
	s := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
	var all []string
	for _, rule := range seccomp.DefaultProfile(s).Syscalls {
		all = append(all, rule.Names...)
	}
	stillAllowed := allowed(DefaultProfile(s), all)
	for _, n := range allowed(seccomp.DefaultProfile(s), all) {
		if !slices.Contains(DeniedEverywhere, n) && !slices.Contains(stillAllowed, n) {
			t.Errorf("%s is allowed by containerd's default profile but not by Airlock's", n)
		}
	}
}

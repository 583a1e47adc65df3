package images

import (
	"errors"
	"slices"
	"testing"

	"github.com/airlock/airlock/policies/execpolicy"
)

// TestToolApplets_AreEachAuditedForWrites: the exec matcher knows every
// writing form of each applet a tools image may carry (sort -o, uniq's
// output operand) and refuses it, so an applet cannot ship unaudited.
func TestToolApplets_AreEachAuditedForWrites(t *testing.T) {
	for _, a := range ToolApplets {
		if !execpolicy.Audited(a) {
			t.Errorf("applet %s is not audited in policies/execpolicy (writes.go): audit its writing forms before shipping it", a)
		}
	}
}

// TestTools_RefusesAppletsThatWriteOrSpawn: whatever a profile's
// allowlist names, a tools image carries none of the applets whose
// ordinary forms write, delete or run other programs.
func TestTools_RefusesAppletsThatWriteOrSpawn(t *testing.T) {
	for _, a := range []string{"tee", "sed", "awk", "find", "xargs", "cp", "mv", "rm", "dd", "split", "patch", "gzip", "gunzip", "tar", "sh", "ash", "env", "busybox"} {
		if slices.Contains(ToolApplets, a) {
			t.Errorf("ToolApplets carries %s", a)
		}
		if _, err := Tools("tools-x", "/agent", "/busybox", []string{"cat", a}); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("Tools with %s: %v, want ErrInvalidSpec", a, err)
		}
	}
}

package images

import (
	"path"
	"slices"
	"strings"
	"testing"
)

// TestMountpoints_AreTopLevelDirectoriesInPathOrder: an import checks a
// mountpoint by the layers' top-level names (agentimage's walker), and
// names the missing ones in the list's order, so each must be one level
// below the root and the list sorted.
func TestMountpoints_AreTopLevelDirectoriesInPathOrder(t *testing.T) {
	mps := Mountpoints()
	if len(mps) == 0 {
		t.Fatal("no mountpoints")
	}
	for _, mp := range mps {
		if path.Dir(mp.Path) != "/" || path.Clean(mp.Path) != mp.Path || mp.Path == "/" {
			t.Errorf("%q is not a clean path one level below the root", mp.Path)
		}
		if mp.Mode&^0o1777 != 0 {
			t.Errorf("%s: mode %#o; want permission and sticky bits only", mp.Path, mp.Mode)
		}
	}
	if !slices.IsSortedFunc(mps, func(a, b Dir) int { return strings.Compare(a.Path, b.Path) }) {
		t.Errorf("mountpoints %v are not in path order", mps)
	}
}

func TestMountpoints_ReturnsACopy(t *testing.T) {
	Mountpoints()[0].Path = "/changed"
	if got := Mountpoints()[0].Path; got == "/changed" {
		t.Error("a caller changed the list every image is checked against")
	}
}

package images

import (
	"slices"
	"strings"
)

// Dir is a directory an image holds: an absolute path, and the mode a
// builder gives it as a tar header's (permission and sticky bits).
type Dir struct {
	Path string
	Mode int64
}

// mountpoints are the directories the runner mounts over, which an image
// must hold since runc cannot make them on a read-only root. This is the
// one list: Build and package rootfs add them, an import (package
// agentimage) refuses an image without them, and a test in docs keeps
// docs/agent-contract.md's copy for authors the same.
//
// /sys is not mounted over, but docs/agent-contract.md asks for it, so
// that an image holds to one list whatever the runtime.
//
// Sorted by path, so that messages naming several list them in one order.
var mountpoints = []Dir{
	{"/dev", 0o755},
	{"/input", 0o755},
	{"/output", 0o755},
	{"/proc", 0o555},
	{"/run", 0o755},
	{"/sys", 0o555},
	{"/tmp", 0o1777},
}

// etcDir holds skeletonFiles.
var etcDir = Dir{"/etc", 0o755}

// Mountpoints returns the directories every image must hold, sorted by
// path, with the modes Airlock's builders give them: the paths a sandbox
// mounts over, which runc cannot create on a read-only root.
func Mountpoints() []Dir { return slices.Clone(mountpoints) }

// SkeletonDirs returns the directories every image Airlock builds holds,
// sorted by path: the Mountpoints and /etc. Builders of images from other
// trees (package rootfs) add the ones missing.
func SkeletonDirs() []Dir {
	dirs := append(Mountpoints(), etcDir)
	slices.SortFunc(dirs, func(a, b Dir) int { return strings.Compare(a.Path, b.Path) })
	return dirs
}

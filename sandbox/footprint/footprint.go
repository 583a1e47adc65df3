// Package footprint names what a sandbox runner leaves on the host, and
// where: the containerd namespace, a state dir's instance (its cgroup
// subtree), the mounts below the state dir, and the state dir's
// permissions. The runner, its start-up reap, airlock doctor and bench
// share it; it links no containerd, so the doctor need not.
package footprint

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// Namespace is the containerd namespace, and the cgroup subtree's root,
// that holds everything Airlock creates.
const Namespace = "airlock"

// InstanceID names a state dir's cgroup subtree. It is stable for a state dir, so a restarted broker finds its
// predecessor's cgroups.
func InstanceID(stateDir string) string {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		abs = stateDir
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:6])
}

// CheckTraversable returns an error naming the first ancestor of dir that
// other users cannot search. A user-namespaced sandbox's root is an
// unprivileged host uid, and runc reaches the rootfs and mounts below dir
// as that uid; gVisor's sentry reaches them as the host's nobody.
func CheckTraversable(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := abs; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err == nil && st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not searchable by other users (mode %#o): a profile with isolation.userNamespace or runtime runsc needs every directory above the state dir to be, e.g. chmod o+x %s", d, st.Mode().Perm(), d)
		}
		if d == "/" {
			return nil
		}
	}
}

// MkdirTraversable makes dir (and missing parents) mode 0711: nobody but
// root may list it, but a user-namespaced sandbox, whose root is an
// unprivileged host uid, can still reach its rootfs and bind mounts below.
func MkdirTraversable(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	return os.Chmod(dir, 0o711)
}

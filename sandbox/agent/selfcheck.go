package agent

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// What the agent relies on and what it does without it (docs/runtimes.md):
//
//   - A seccomp filter: every profile has one (default or strict), so an
//     agent that finds none is in a sandbox that does not enforce its
//     profile, and runs nothing. Under runsc the filter is gVisor's to
//     apply, which it does only when runsc is told to.
//   - Landlock: the agent restricts itself where the kernel lets it, and
//     runs on without it where it does not (gVisor's 2022 kernel has
//     none): the sandbox's walls, not Landlock, keep it in.

// ErrUnconfined is returned, wrapped, when the sandbox does not enforce
// what every profile asks of it.
var ErrUnconfined = errors.New("the sandbox does not confine the agent")

// checkConfined reads the process's status file and fails unless a seccomp
// filter confines the process.
func checkConfined(statusFile string) error {
	b, err := os.ReadFile(statusFile)
	if err != nil {
		return fmt.Errorf("%w: reading %s: %v", ErrUnconfined, statusFile, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Seccomp:"); ok {
			if mode := strings.TrimSpace(v); mode != "2" {
				return fmt.Errorf("%w: seccomp mode %q, want a filter (2)", ErrUnconfined, mode)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: %s says nothing of seccomp", ErrUnconfined, statusFile)
}

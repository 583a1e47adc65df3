package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlock/airlock/sandbox/internal/seccompfilter"
)

// crun compiles a spec's seccomp section with libseccomp at every create:
// 12 ms here for Airlock's default profile, a third of crun's own start.
// crun also takes the compiled program ready-made, base64 in the
// annotation run.oci.seccomp_bpf_data (as podman hands it over), and then
// loads it as it is, with the section's flags, instead of compiling.
//
// The program handed over is crun's own: the filter crun compiled for the
// same section, read back from the kernel out of the first sandbox that
// ran under it. It is keyed by a hash of the section exactly as the spec
// carries it, so a sandbox gets only the program of its own section; the
// section stays in the spec, for the flags and for whoever reads it.
// Nothing of the filter changes, only its compilation is skipped.
//
// It is read only from airlock-agent waiting for its start line, before
// anything of a job reaches it, and only when the process runs under
// exactly one filter. The first sandbox given it is read back in turn and
// must run under exactly it; if not, that sandbox fails and crun compiles
// again. A read that fails leaves crun compiling, as it always did:
// slower, never weaker.

// seccompBPFAnnotation is crun's annotation for a compiled seccomp program.
const seccompBPFAnnotation = "run.oci.seccomp_bpf_data"

// filterReadTimeout bounds the wait for a sandbox's agent to stop for the
// read.
const filterReadTimeout = 2 * time.Second

// maxFilterReads bounds the reads tried for one section: a host where
// ptrace is refused (Yama's ptrace_scope 3, a seccomp'd broker) stops
// trying.
const maxFilterReads = 3

// maxFilterSections bounds the sections learnt. A section is a profile's
// (a request's overrides do not touch it), so this is far above any
// real count; past it, crun compiles the others.
const maxFilterSections = 256

// filterKey names a seccomp section.
type filterKey [sha256.Size]byte

// filterCache holds crun's compiled programs by section. It is safe for
// concurrent use.
type filterCache struct {
	log *slog.Logger
	// read reads a process's one filter: seccompfilter.Read but in tests.
	read func(pid int, timeout time.Duration) ([]byte, error)
	// used counts the sandboxes given a compiled program.
	used prometheus.Counter

	mu       sync.Mutex
	programs map[filterKey]*program
	tries    map[filterKey]int
}

// program is one compiled program.
type program struct {
	raw    []byte
	base64 string
	// verified says a sandbox given it was found running under exactly
	// it.
	verified bool
}

func newFilterCache(log *slog.Logger) *filterCache {
	return &filterCache{
		log:  log,
		read: seccompfilter.Read,
		used: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "airlock_sandbox_seccomp_precompiled_total",
			Help: "Sandboxes whose runtime (crun) was handed the seccomp program it compiled before for the same profile, rather than compiling it again.",
		}),
		programs: map[filterKey]*program{},
		tries:    map[filterKey]int{},
	}
}

// seccompUse is what withCompiledSeccomp found for one sandbox.
type seccompUse struct {
	key filterKey
	// has says the spec has a seccomp section, and so key is set.
	has bool
	// given is the program the sandbox's spec carries, if any.
	given *program
}

// withCompiledSeccomp hands crun the program compiled before for the
// spec's seccomp section, if there is one, and records in use what it
// did. It must be the last option, so that the section it hashes is the
// one the sandbox gets.
func (c *filterCache) withCompiledSeccomp(use *seccompUse) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if s.Linux == nil || s.Linux.Seccomp == nil {
			return nil
		}
		if _, ok := s.Annotations[seccompBPFAnnotation]; ok {
			return errors.New("spec already names a compiled seccomp program")
		}
		key, err := sectionKey(s.Linux.Seccomp)
		if err != nil {
			return err
		}
		use.key, use.has = key, true
		c.mu.Lock()
		prog := c.programs[key]
		c.mu.Unlock()
		if prog == nil {
			return nil
		}
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[seccompBPFAnnotation] = prog.base64
		use.given = prog
		return nil
	}
}

// sectionKey hashes a seccomp section as the runtime will read it.
func sectionKey(sec *specs.LinuxSeccomp) (filterKey, error) {
	b, err := json.Marshal(sec)
	if err != nil {
		return filterKey{}, err
	}
	return sha256.Sum256(b), nil
}

// errFilterMismatch is a sandbox found running under another filter than
// the program it was given.
var errFilterMismatch = errors.New("sandbox runs under another seccomp filter than the program it was given")

// learn is called with pid, a sandbox's agent that waits for its start
// line under the filter its runtime installed. Without a program for the
// section, it reads the one crun compiled. With one, the first sandbox
// given it is checked to run under exactly it; one that does not is an
// error, and the program is dropped, so that crun compiles again.
func (c *filterCache) learn(use seccompUse, pid uint32) error {
	if !use.has || pid == 0 {
		return nil
	}
	c.mu.Lock()
	known := c.programs[use.key]
	tries := c.tries[use.key]
	check := use.given != nil && !use.given.verified
	_, seen := c.tries[use.key]
	read := check || (known == nil && tries < maxFilterReads && (seen || len(c.tries) < maxFilterSections))
	if read {
		c.tries[use.key]++
	}
	c.mu.Unlock()
	if !read {
		return nil
	}
	raw, err := c.read(int(pid), filterReadTimeout)
	if err != nil {
		if check {
			// Unchecked, the program stays unverified and the next
			// sandbox given it is checked instead.
			c.log.Warn("could not read a sandbox's seccomp filter to check it", "err", err)
			return nil
		}
		c.log.Warn("could not read the seccomp program crun compiled; crun compiles it per sandbox", "err", err, "tries", tries+1)
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if check {
		if !bytes.Equal(raw, use.given.raw) {
			if c.programs[use.key] == use.given {
				delete(c.programs, use.key)
			}
			// Not learnt again: crun compiles this section from now on.
			c.tries[use.key] = maxFilterReads
			return errFilterMismatch
		}
		use.given.verified = true
		return nil
	}
	if c.programs[use.key] == nil {
		c.programs[use.key] = &program{raw: raw, base64: base64.StdEncoding.EncodeToString(raw)}
		c.log.Debug("seccomp program read for reuse", "instructions", len(raw)/8)
	}
	return nil
}

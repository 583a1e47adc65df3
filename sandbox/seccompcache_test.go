package sandbox

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func seccompSpec(names ...string) *specs.Spec {
	return &specs.Spec{Linux: &specs.Linux{Seccomp: &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls:      []specs.LinuxSyscall{{Names: names, Action: specs.ActAllow}},
	}}}
}

// testFilterCache is a cache whose reads return what filters holds for
// a pid, and count.
func testFilterCache(filters map[int][]byte, reads *int) *filterCache {
	c := newFilterCache(slog.New(slog.DiscardHandler))
	c.read = func(pid int, _ time.Duration) ([]byte, error) {
		*reads++
		if f, ok := filters[pid]; ok {
			return f, nil
		}
		return nil, errors.New("no such process")
	}
	return c
}

func applySeccomp(t *testing.T, c *filterCache, s *specs.Spec) seccompUse {
	t.Helper()
	var use seccompUse
	if err := c.withCompiledSeccomp(&use)(context.Background(), nil, nil, s); err != nil {
		t.Fatal(err)
	}
	return use
}

func TestCompiledSeccomp_OnlyForTheSameSection(t *testing.T) {
	var reads int
	c := testFilterCache(map[int][]byte{7: []byte("program!")}, &reads)

	s := seccompSpec("read", "write")
	use := applySeccomp(t, c, s)
	if !use.has || use.given != nil || s.Annotations[seccompBPFAnnotation] != "" {
		t.Fatalf("nothing known yet, but use %+v, annotations %v", use, s.Annotations)
	}
	if err := c.learn(use, 7); err != nil {
		t.Fatal(err)
	}

	s = seccompSpec("read", "write")
	if use := applySeccomp(t, c, s); use.given == nil || s.Annotations[seccompBPFAnnotation] != "cHJvZ3JhbSE=" {
		t.Fatalf("same section: use %+v, annotations %v", use, s.Annotations)
	}
	// The section stays: crun reads its flags, and explain shows it.
	if s.Linux.Seccomp == nil {
		t.Fatal("section dropped")
	}

	// Any change of the section is another program.
	other := map[string]*specs.Spec{
		"one syscall more": seccompSpec("read", "write", "ptrace"),
		"one syscall less": seccompSpec("read"),
		"other order":      seccompSpec("write", "read"),
	}
	s = seccompSpec("read", "write")
	s.Linux.Seccomp.DefaultAction = specs.ActAllow
	other["other default action"] = s
	s = seccompSpec("read", "write")
	s.Linux.Seccomp.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog}
	other["other flags"] = s
	for name, s := range other {
		if use := applySeccomp(t, c, s); use.given != nil || s.Annotations[seccompBPFAnnotation] != "" {
			t.Errorf("%s: given the program of another section", name)
		}
	}

	// No section, no program.
	s = &specs.Spec{Linux: &specs.Linux{}}
	if use := applySeccomp(t, c, s); use.has || s.Annotations != nil {
		t.Errorf("no section: use %+v, annotations %v", use, s.Annotations)
	}

	// A program the spec names already is refused, not replaced.
	s = seccompSpec("read", "write")
	s.Annotations = map[string]string{seccompBPFAnnotation: "b3RoZXI="}
	var u seccompUse
	if err := c.withCompiledSeccomp(&u)(context.Background(), nil, nil, s); err == nil {
		t.Error("a spec naming a program of its own was accepted")
	}
}

func TestCompiledSeccomp_FirstSandboxGivenItIsChecked(t *testing.T) {
	var reads int
	filters := map[int][]byte{1: []byte("compiled"), 2: []byte("compiled"), 3: []byte("compiled")}
	c := testFilterCache(filters, &reads)
	use := applySeccomp(t, c, seccompSpec("read"))
	if err := c.learn(use, 1); err != nil || reads != 1 {
		t.Fatalf("learn: %v after %d reads", err, reads)
	}
	// The first sandbox given it is read back; it runs under exactly it.
	use = applySeccomp(t, c, seccompSpec("read"))
	if err := c.learn(use, 2); err != nil || reads != 2 || !use.given.verified {
		t.Fatalf("check: %v after %d reads, verified %v", err, reads, use.given.verified)
	}
	// Once checked, it is not read again.
	use = applySeccomp(t, c, seccompSpec("read"))
	if err := c.learn(use, 3); err != nil || reads != 2 {
		t.Fatalf("after the check: %v after %d reads", err, reads)
	}
}

func TestCompiledSeccomp_AMismatchFailsTheSandboxAndDropsTheProgram(t *testing.T) {
	var reads int
	filters := map[int][]byte{1: []byte("compiled"), 2: []byte("another!"), 3: []byte("compiled")}
	c := testFilterCache(filters, &reads)
	use := applySeccomp(t, c, seccompSpec("read"))
	if err := c.learn(use, 1); err != nil {
		t.Fatal(err)
	}
	use = applySeccomp(t, c, seccompSpec("read"))
	if err := c.learn(use, 2); !errors.Is(err, errFilterMismatch) {
		t.Fatalf("err %v, want errFilterMismatch", err)
	}
	// crun compiles the section from now on: no program is given, and
	// none is learnt again.
	s := seccompSpec("read")
	use = applySeccomp(t, c, s)
	if use.given != nil || s.Annotations[seccompBPFAnnotation] != "" {
		t.Fatal("the program that did not match is still given")
	}
	if err := c.learn(use, 3); err != nil || len(c.programs) != 0 {
		t.Fatalf("learnt again: %v, %d programs", err, len(c.programs))
	}
}

func TestCompiledSeccomp_LearnsOnlyWhatItWasAskedTo(t *testing.T) {
	var reads int
	c := testFilterCache(nil, &reads)
	// Without a section, or without a task, nothing is read.
	if err := errors.Join(c.learn(seccompUse{}, 1), c.learn(seccompUse{has: true}, 0)); err != nil || reads != 0 {
		t.Fatalf("%v after %d reads", err, reads)
	}
	// A read that fails leaves crun compiling; after maxFilterReads
	// failures the section is not tried again.
	for range maxFilterReads + 2 {
		if err := c.learn(seccompUse{has: true}, 1<<30); err != nil {
			t.Fatal(err)
		}
	}
	if reads != maxFilterReads || len(c.programs) != 0 {
		t.Fatalf("%d reads, want %d; programs %v", reads, maxFilterReads, c.programs)
	}
}

func TestCompiledSeccomp_LearnsABoundedNumberOfSections(t *testing.T) {
	var reads int
	filters := map[int][]byte{1: []byte("compiled")}
	c := testFilterCache(filters, &reads)
	for i := range maxFilterSections + 10 {
		use := applySeccomp(t, c, seccompSpec(strconv.Itoa(i)))
		if err := c.learn(use, 1); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.programs) != maxFilterSections || len(c.tries) != maxFilterSections {
		t.Fatalf("%d programs, %d sections tried; want at most %d", len(c.programs), len(c.tries), maxFilterSections)
	}
}

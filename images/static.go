package images

import (
	"debug/elf"
	"fmt"
)

// CheckStatic refuses a binary that needs a dynamic loader: images carry no
// libc, so such a binary would fail only once a job ran.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %s is not an ELF binary: %v", ErrInvalidSpec, path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: %s is dynamically linked; build it with CGO_ENABLED=0 (or install busybox-static)", ErrInvalidSpec, path)
		}
	}
	return nil
}

package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxPoolSize is the most warm sandboxes one profile's pool may hold.
const MaxPoolSize = 64

// ParsePools adds the NAME=SIZE entries of a --pool value, comma-separated,
// to pools: SIZE from 1 to MaxPoolSize, no NAME twice. airlockd and
// airlock doctor read the flag alike with it.
func ParsePools(v string, pools *map[string]int) error {
	if *pools == nil {
		*pools = map[string]int{}
	}
	for _, e := range strings.Split(v, ",") {
		name, size, ok := strings.Cut(strings.TrimSpace(e), "=")
		n, err := strconv.Atoi(size)
		if !ok || name == "" || err != nil || n < 1 || n > MaxPoolSize {
			return fmt.Errorf("%q: want PROFILE=SIZE with SIZE from 1 to %d, such as secureclaw=2", e, MaxPoolSize)
		}
		if _, dup := (*pools)[name]; dup {
			return fmt.Errorf("%q: profile %s named twice", e, name)
		}
		(*pools)[name] = n
	}
	return nil
}

package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Binary units, the only ones a profile may use: "256M" would be ambiguous
// between 256*10^6 and 256*2^20, and a limit must mean one thing.
const (
	// Ki is a kibibyte.
	Ki int64 = 1 << 10
	// Mi is a mebibyte.
	Mi int64 = 1 << 20
	// Gi is a gibibyte.
	Gi int64 = 1 << 30
)

var units = []struct {
	suffix string
	size   int64
}{{"Gi", Gi}, {"Mi", Mi}, {"Ki", Ki}}

// ParseBytes parses a byte count written as plain digits or with a Ki, Mi or
// Gi suffix, such as 256Mi.
func ParseBytes(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.size
			break
		}
	}
	if num == "" || strings.TrimLeft(num, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a byte count (want digits with an optional Ki, Mi or Gi suffix, such as 256Mi)", s)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > (1<<63-1)/mult {
		return 0, errors.New("byte count out of range")
	}
	return n * mult, nil
}

// FormatBytes writes n with the largest binary unit that divides it
// exactly, so that ParseBytes(FormatBytes(n)) == n.
func FormatBytes(n int64) string {
	for _, u := range units {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

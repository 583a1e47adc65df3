package footprint

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// MountPoints returns the mount points of a /proc/*/mountinfo listing,
// unescaped, in order.
func MountPoints(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw":
		// the fifth field is the mount point.
		if fields := strings.Fields(sc.Text()); len(fields) >= 5 {
			out = append(out, UnescapeMountinfo(fields[4]))
		}
	}
	return out, sc.Err()
}

// UnescapeMountinfo undoes the octal escapes (\040 for a space) that the
// kernel writes in /proc/*/mountinfo paths.
func UnescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

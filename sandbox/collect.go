package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// errTooLarge means the result file exceeded the byte cap.
var errTooLarge = errors.New("result exceeds the output byte cap")

// readResult reads name inside dir with a byte cap, refusing to follow a
// symlink (in the directory or the file itself) and to read anything but a
// regular file: the agent controls both and may try to point the broker at
// a host file or block it on a FIFO.
func readResult(dir, name string, maxBytes int64) ([]byte, error) {
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open output dir: %w", err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%s is a symlink: refused", name)
		}
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: refused", name)
	}
	if st.Size() > maxBytes {
		return nil, fmt.Errorf("%s is %d bytes: %w (%d)", name, st.Size(), errTooLarge, maxBytes)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > maxBytes {
		return nil, fmt.Errorf("%s: %w (%d)", name, errTooLarge, maxBytes)
	}
	return b, nil
}

// cappedBuffer keeps the first max bytes written to it and counts the rest,
// so a task flooding stdout costs the broker bounded memory.
type cappedBuffer struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	dropped int64
}

func newCappedBuffer(max int) *cappedBuffer {
	return &cappedBuffer{max: max}
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.max - len(c.buf)
	if room > len(p) {
		room = len(p)
	}
	if room > 0 {
		c.buf = append(c.buf, p[:room]...)
	}
	c.dropped += int64(len(p) - room)
	return len(p), nil
}

// Bytes returns what was kept, with a note of what was dropped.
func (c *cappedBuffer) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]byte(nil), c.buf...)
	if c.dropped > 0 {
		out = append(out, fmt.Sprintf("\n[%d bytes dropped]\n", c.dropped)...)
	}
	return out
}

// Package userns hands out the host ID ranges of user-namespaced sandboxes:
// a range of 65536 host uids and gids per sandbox, from a block where no
// host account lives, never the same range to two live sandboxes, even of
// two brokers on one host. It links no containerd, so airlock doctor can
// report on the block and on the host's support.
package userns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

const (
	// Base is the first host id of the block.
	Base = 1_000_000_000
	// Size is how many ids a range maps: ids 0-65535 in the sandbox.
	Size = 65536
	// Ranges is how many ranges the block holds, Shared included; the
	// block ends well below 2^32-1, the id the kernel treats as invalid.
	Ranges = 4096
)

// Range is one sandbox's host ID range: id i in the sandbox is host id
// First+i, for uids and gids alike.
type Range struct {
	// First is the host id of the sandbox's id 0.
	First uint32
}

// HostID is the host id that id in the sandbox is.
func (r Range) HostID(id uint32) uint32 { return r.First + id }

// Shared is the block's first range. `airlock policy explain` shows it and
// tools outside the broker (bench's baseline) use it; Claims never hands
// it to a job, so no job shares its ids with them.
var Shared = Range{First: Base}

// Block returns the first and last host id of the ranges Claims hands out.
func Block() (first, last uint32) {
	return Base + Size, Base + Ranges*Size - 1
}

// DefaultDir is where claims are recorded when a runner names no other
// place. It is host-wide, so that two brokers with different state dirs
// cannot claim one range, and on tmpfs, so that a reboot, which ends
// every sandbox, ends every claim too.
const DefaultDir = "/run/airlock/userns"

// ErrExhausted means every range of the block is claimed.
var ErrExhausted = errors.New("every user namespace range is claimed")

// ErrUnsupported means the host cannot give a sandbox a user namespace.
var ErrUnsupported = errors.New("this host cannot make user namespaces")

// Claims hands out the ranges of the block to one owner (a runner's
// instance), each recorded as a file in a directory: named by the range's
// first id, holding the owner and the holder (a sandbox's run ID). A file
// is made whole under a temporary name and linked into place, which fails
// if the range is taken, so a claim is atomic across processes and never
// half-written. A claim lasts until its release, or until the owner's
// Reap, after a crash; a range is never handed out while its file exists.
// Claims is safe for concurrent use.
type Claims struct {
	dir, owner string
	// ranges is Ranges but in tests.
	ranges int

	mu sync.Mutex
	// next is where the search for a free range starts: just after the
	// last one claimed, so that a released range is reused last.
	next int
}

// NewClaims returns the claims of owner recorded in dir (DefaultDir when
// empty). It touches nothing until the first claim.
func NewClaims(dir, owner string) (*Claims, error) {
	if owner == "" || strings.ContainsFunc(owner, func(r rune) bool { return r <= ' ' || r == '/' }) {
		return nil, fmt.Errorf("userns: owner %q must be a non-empty word", owner)
	}
	if dir == "" {
		dir = DefaultDir
	}
	return &Claims{dir: dir, owner: owner, ranges: Ranges}, nil
}

// Claim records a free range for holder and returns it with its release,
// which may be called more than once.
func (c *Claims) Claim(holder string) (Range, func() error, error) {
	if holder == "" || strings.ContainsFunc(holder, func(r rune) bool { return r <= ' ' }) {
		return Range{}, nil, fmt.Errorf("userns: holder %q must be a non-empty word", holder)
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return Range{}, nil, fmt.Errorf("userns claims: %w", err)
	}
	tmp, err := c.writeTemp(holder)
	if err != nil {
		return Range{}, nil, err
	}
	defer os.Remove(tmp)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.ranges - 1 {
		slot := 1 + (c.next+i)%(c.ranges-1)
		r := Range{First: Base + uint32(slot)*Size}
		path := c.path(r)
		err := os.Link(tmp, path)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return Range{}, nil, fmt.Errorf("userns claim: %w", err)
		}
		c.next = slot
		var once sync.Once
		var rerr error
		return r, func() error {
			once.Do(func() {
				if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
					rerr = fmt.Errorf("release user namespace range %d: %w", r.First, err)
				}
			})
			return rerr
		}, nil
	}
	return Range{}, nil, fmt.Errorf("userns: %w (%d ranges in %s)", ErrExhausted, c.ranges-1, c.dir)
}

// Reap releases every claim of this owner, and its temporary files. It is
// for a runner's start, after it has ended every sandbox of its
// predecessor, which crashed without releasing them.
func (c *Claims) Reap() (int, error) {
	entries, err := os.ReadDir(c.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, e := range entries {
		path := filepath.Join(c.dir, e.Name())
		if owner, _, ok := c.read(path); !ok || owner != c.owner {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if !strings.HasPrefix(e.Name(), ".tmp-") {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// Holders returns the holder of each claim of this owner, by range.
func (c *Claims) Holders() (map[Range]string, error) {
	entries, err := os.ReadDir(c.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[Range]string{}
	for _, e := range entries {
		first, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		if owner, holder, ok := c.read(filepath.Join(c.dir, e.Name())); ok && owner == c.owner {
			out[Range{First: uint32(first)}] = holder
		}
	}
	return out, nil
}

func (c *Claims) path(r Range) string {
	return filepath.Join(c.dir, strconv.FormatUint(uint64(r.First), 10))
}

// writeTemp writes a claim's content under a temporary name in the dir.
func (c *Claims) writeTemp(holder string) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tmp := filepath.Join(c.dir, ".tmp-"+hex.EncodeToString(b))
	if err := os.WriteFile(tmp, []byte(c.owner+" "+holder+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("userns claim: %w", err)
	}
	return tmp, nil
}

// read returns a claim file's owner and holder.
func (c *Claims) read(path string) (owner, holder string, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) > 1024 {
		return "", "", false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return "", "", false
	}
	return f[0], f[1], true
}

// Check returns nil when the host, seen through procRoot (normally
// "/proc"), can give a sandbox a user namespace, and an error wrapping
// ErrUnsupported that says why not otherwise. airlockd runs as root, so
// what matters is the kernel feature and a non-zero namespace limit.
func Check(procRoot string) error {
	if _, err := os.Readlink(filepath.Join(procRoot, "self/ns/user")); err != nil {
		return fmt.Errorf("%w: the kernel has no user namespaces (%v)", ErrUnsupported, err)
	}
	b, err := os.ReadFile(filepath.Join(procRoot, "sys/user/max_user_namespaces"))
	if err != nil {
		return fmt.Errorf("%w: cannot read user.max_user_namespaces (%v)", ErrUnsupported, err)
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || n <= 0 {
		return fmt.Errorf("%w: user.max_user_namespaces is %q", ErrUnsupported, strings.TrimSpace(string(b)))
	}
	return nil
}

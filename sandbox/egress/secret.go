package egress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxSecretBytes caps a secret file; a credential is a few hundred bytes,
// and a large file there is a mistake.
const maxSecretBytes = 64 << 10

// ResolveSecret reads a secret reference: env:NAME (an environment
// variable of this process) or file:/abs/path. One trailing newline is
// dropped from a file, since editors add it. A reference that resolves to
// nothing is ErrSecretMissing, so that the job fails at spawn rather than
// making unauthenticated calls. Errors name the variable or file, never
// the value; a malformed reference is not quoted, as it may be the secret
// itself pasted in the wrong place.
func ResolveSecret(ref string) ([]byte, error) {
	if name, ok := strings.CutPrefix(ref, "env:"); ok {
		if name == "" || strings.ContainsAny(name, "=\x00") {
			return nil, fmt.Errorf("%w: want env:NAME", ErrSecretRef)
		}
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return nil, fmt.Errorf("%w: environment variable %s is unset or empty", ErrSecretMissing, name)
		}
		return []byte(v), nil
	}
	if p, ok := strings.CutPrefix(ref, "file:"); ok {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return nil, fmt.Errorf("%w: want file:/abs/path", ErrSecretRef)
		}
		data, err := readFileCapped(p, maxSecretBytes)
		switch {
		case errors.Is(err, errFileTooLarge):
			return nil, fmt.Errorf("%w: %v", ErrSecretRef, err)
		case err != nil:
			return nil, fmt.Errorf("%w: %v", ErrSecretMissing, err)
		}
		data = bytes.TrimSuffix(bytes.TrimSuffix(data, []byte("\n")), []byte("\r"))
		if len(data) == 0 {
			return nil, fmt.Errorf("%w: %s is empty", ErrSecretMissing, p)
		}
		return data, nil
	}
	return nil, fmt.Errorf("%w: want env:NAME or file:/abs/path", ErrSecretRef)
}

// errFileTooLarge marks a file past readFileCapped's limit.
var errFileTooLarge = errors.New("file too large")

// readFileCapped reads a whole file of at most limit bytes; a larger one is
// errFileTooLarge, not read past the limit. Errors name the file.
func readFileCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: %s is over %d bytes", errFileTooLarge, path, limit)
	}
	return data, nil
}

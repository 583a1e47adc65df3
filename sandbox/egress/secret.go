package egress

import (
	"bytes"
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
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSecretMissing, err)
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, maxSecretBytes+1))
		if err != nil {
			return nil, fmt.Errorf("%w: read %s: %v", ErrSecretMissing, p, err)
		}
		if len(data) > maxSecretBytes {
			return nil, fmt.Errorf("%w: %s is over %d bytes", ErrSecretRef, p, maxSecretBytes)
		}
		data = bytes.TrimSuffix(bytes.TrimSuffix(data, []byte("\n")), []byte("\r"))
		if len(data) == 0 {
			return nil, fmt.Errorf("%w: %s is empty", ErrSecretMissing, p)
		}
		return data, nil
	}
	return nil, fmt.Errorf("%w: want env:NAME or file:/abs/path", ErrSecretRef)
}

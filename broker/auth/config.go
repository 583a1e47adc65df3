package auth

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrLiteralToken means a tokens file holds a secret itself rather than a
// reference to one.
var ErrLiteralToken = errors.New("literal token in config")

// tokensFile is the --tokens file:
//
//	tokens:
//	  - name: openclaw
//	    scopes: [spawn, read]
//	    secretRef: file:/etc/airlock/openclaw.token
//	  - name: ops
//	    scopes: [read, admin]
//	    secretRef: env:AIRLOCK_OPS_TOKEN
type tokensFile struct {
	Tokens []struct {
		Name      string   `yaml:"name"`
		Scopes    []string `yaml:"scopes"`
		SecretRef string   `yaml:"secretRef"`
	} `yaml:"tokens"`
}

// literalKeys are keys a careless operator might use to paste a token.
var literalKeys = []string{"token", "secret", "value", "bearer", "password"}

// LoadTokens reads a tokens file. Decoding is strict, every secret comes
// from a file or an environment variable, and a key that would hold a
// literal token is refused.
func LoadTokens(path string) ([]Token, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	for _, k := range literalKeys {
		if bytes.Contains(data, []byte(k+":")) {
			return nil, fmt.Errorf("%w: %s has a %q key; name a secretRef (file:/path or env:NAME) instead of writing the token", ErrLiteralToken, path, k)
		}
	}
	var f tokensFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	if len(f.Tokens) == 0 {
		return nil, fmt.Errorf("%w: tokens file %s names no tokens", ErrNoToken, path)
	}
	var out []Token
	for i, t := range f.Tokens {
		secret, err := resolveRef(t.SecretRef)
		if err != nil {
			return nil, fmt.Errorf("tokens file %s: tokens[%d] (%s): %w", path, i, t.Name, err)
		}
		var scopes []Scope
		for _, s := range t.Scopes {
			scopes = append(scopes, Scope(s))
		}
		out = append(out, Token{Name: t.Name, Scopes: scopes, Secret: secret})
	}
	return out, nil
}

// resolveRef reads a secret reference: file:/abs/path (held to LoadToken's
// rules) or env:NAME. Anything else is taken for a pasted token.
func resolveRef(ref string) ([]byte, error) {
	switch {
	case strings.HasPrefix(ref, "file:/"):
		return LoadToken(strings.TrimPrefix(ref, "file:"))
	case strings.HasPrefix(ref, "env:"):
		name := strings.TrimPrefix(ref, "env:")
		v := strings.TrimSpace(os.Getenv(name))
		if name == "" || v == "" {
			return nil, fmt.Errorf("%w: environment variable %q is unset or empty", ErrNoToken, name)
		}
		if err := CheckToken([]byte(v)); err != nil {
			return nil, err
		}
		return []byte(v), nil
	case ref == "":
		return nil, fmt.Errorf("%w: secretRef is required", ErrNoToken)
	}
	return nil, fmt.Errorf("%w: secretRef must be file:/abs/path or env:NAME", ErrLiteralToken)
}

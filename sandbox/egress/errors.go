package egress

import "errors"

// Sentinel errors, for callers to tell kinds apart with errors.Is.
var (
	// ErrProxyClosed is returned by Serve and Register after Close.
	ErrProxyClosed = errors.New("egress proxy closed")
	// ErrInvalidJob marks a JobPolicy that Register refuses.
	ErrInvalidJob = errors.New("invalid egress job policy")
	// ErrSourceInUse is returned by Register for a source address that
	// another live session holds: two jobs must never share an identity.
	ErrSourceInUse = errors.New("source address already registered")
	// ErrSecretRef marks a secret reference that is not env:NAME or
	// file:/abs/path.
	ErrSecretRef = errors.New("invalid secret reference")
	// ErrSecretMissing marks a secret reference that resolves to nothing:
	// an unset or empty variable, a missing or empty file.
	ErrSecretMissing = errors.New("secret not found")
	// ErrBadHost marks a host name that is neither a valid DNS name nor an
	// IP address, in a request or an allowlist entry.
	ErrBadHost = errors.New("invalid host")
	// ErrCAFile marks a CA file that LoadCAFile refuses: unreadable, or
	// not a bundle of PEM certificates.
	ErrCAFile = errors.New("invalid CA file")
	// ErrByteCap is the error a job's connections end with once it has
	// moved its MaxBytes.
	ErrByteCap = errors.New("job byte cap reached")
)

package policy

import (
	"errors"
	"fmt"
)

// Sentinel errors, for the gRPC layer to map with errors.Is.
var (
	// ErrInvalid marks a profile, file or override that fails validation.
	ErrInvalid = errors.New("invalid policy")
	// ErrUnknownProfile is returned by Set.Get for a name it does not hold.
	ErrUnknownProfile = errors.New("unknown profile")
	// ErrLoosen is returned by Tighten for an override that would widen the
	// profile rather than narrow it.
	ErrLoosen = errors.New("override loosens the profile")
)

// FieldError is one problem in a profile, located so that an operator can
// go straight to it: "secureclaw.yaml:12: exec.security: unknown value ...".
// It unwraps to ErrInvalid.
type FieldError struct {
	// File is the path within the loaded fs.FS, empty for a profile that was
	// not loaded from a file (Tighten).
	File string
	// Line is 1-based, or 0 when the value is a default or inherited from
	// no particular line.
	Line int
	// Field is the YAML path, such as limits.memory or network.egress[2];
	// empty for a problem with the file as a whole.
	Field string
	// Msg says what is wrong and, where it helps, why.
	Msg string
}

// Error formats the problem as file:line: field: message, leaving out the
// parts that are unknown.
func (e *FieldError) Error() string {
	var s string
	switch {
	case e.File != "" && e.Line > 0:
		s = fmt.Sprintf("%s:%d: ", e.File, e.Line)
	case e.File != "":
		s = e.File + ": "
	case e.Line > 0:
		s = fmt.Sprintf("line %d: ", e.Line)
	}
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Msg
}

// Unwrap makes every FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Package imageref owns the rules for naming an imported agent image and
// for the reference a profile pins it by, NAME@sha256:HEX, with the one
// wording of each rule that refusals quote. It links only the standard
// library, so that the policy loader checks agent.image by the same rule
// the broker, the sandbox and the CLI check names and digests by.
package imageref

import (
	"errors"
	"regexp"
	"strings"
)

// MaxNameBytes caps a name, so that a name, and the containerd name made
// of it, stay short enough to quote whole in a refusal or a log line.
const MaxNameBytes = 128

// The rules as a refusal words them: the caller names its field and
// quotes the value its own way, then says the value must be one of these.
const (
	// NameRule is what a name must be.
	NameRule = "1-128 lowercase letters a-z and digits 0-9, separated by single '.', '_' or '-'"
	// DigestRule is what a digest must be.
	DigestRule = "sha256:<64 lowercase hex>"
	// RefRule is what a reference must be.
	RefRule = "NAME@" + DigestRule + ", NAME " + NameRule
)

var (
	// nameRE is one lowercase path component of a distribution reference,
	// so that ContainerdName always parses as one. ASCII only: no
	// look-alike of another script can name an image.
	nameRE = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*$`)
	// digestRE is a manifest digest as containerd and go-containerregistry
	// print it. Other algorithms are refused: the import computes sha256.
	digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// ValidName says whether name can name an image: NameRule.
func ValidName(name string) bool { return len(name) <= MaxNameBytes && nameRE.MatchString(name) }

// ValidDigest says whether d is a manifest digest: DigestRule.
func ValidDigest(d string) bool { return digestRE.MatchString(d) }

// Errors of Parse.
var (
	// ErrNoDigest is a valid name alone, which a profile may not pin: it
	// would run whichever digest of the name was imported.
	ErrNoDigest = errors.New("image reference has no digest")
	// ErrInvalid is anything else that is not RefRule.
	ErrInvalid = errors.New("invalid image reference")
)

// Parse splits ref, NAME@DIGEST, into its name and digest after checking
// both; its error is ErrNoDigest or ErrInvalid, and the caller words the
// refusal with RefRule.
func Parse(ref string) (name, digest string, err error) {
	name, digest, ok := strings.Cut(ref, "@")
	switch {
	case !ok && ValidName(ref):
		return "", "", ErrNoDigest
	case !ok || !ValidName(name) || !ValidDigest(digest):
		return "", "", ErrInvalid
	}
	return name, digest, nil
}

// Join is the reference of name and digest: NAME@DIGEST.
func Join(name, digest string) string { return name + "@" + digest }

// Split cuts ref, NAME or NAME@DIGEST, at its '@', checking neither part;
// digest is empty when ref has none. It reads what a user typed, for a
// lookup the broker checks, or what Join made.
func Split(ref string) (name, digest string) {
	name, digest, _ = strings.Cut(ref, "@")
	return name, digest
}

// containerdPrefix starts the containerd name of every imported agent
// image, apart from the images Airlock builds (images.ImageRef).
const containerdPrefix = "airlock.local/agents/"

// ContainerdName is the name of an imported agent image's containerd
// record: its name and manifest digest, so that two imports of one name
// never replace each other and a profile's pinned digest names exactly one
// record.
func ContainerdName(name, digest string) string { return containerdPrefix + Join(name, digest) }

// FromContainerdName is the name and digest of the imported agent image
// whose containerd record is named s; ok is false for any other record.
// The parts are as recorded, unchecked, so that an odd record can still
// be listed and removed.
func FromContainerdName(s string) (name, digest string, ok bool) {
	ref, ok := strings.CutPrefix(s, containerdPrefix)
	if !ok {
		return "", "", false
	}
	name, digest = Split(ref)
	return name, digest, true
}

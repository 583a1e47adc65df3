// Package policies holds the profiles Airlock ships, embedded so that the
// broker has safe profiles even when no policy directory is configured.
package policies

import "embed"

// FS holds one *.yaml file per shipped profile, for policy.Load.
//
//go:embed *.yaml
var FS embed.FS

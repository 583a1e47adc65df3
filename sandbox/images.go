package sandbox

import (
	"fmt"

	"github.com/airlock/airlock/images"
	"github.com/airlock/airlock/policies/policy"
)

// ImagesFor returns the image specs the profiles need: the reader image,
// and a tools image per profile that allows exec, carrying only the
// commands that profile's allowlist names. A profile whose image cannot be
// built is an error now, not a failure of each of its jobs later.
func ImagesFor(profiles []*policy.Profile, agentBin, busybox string) ([]images.Spec, error) {
	if err := images.CheckStatic(agentBin); err != nil {
		return nil, fmt.Errorf("agent binary: %w", err)
	}
	specs := []images.Spec{images.Reader(agentBin)}
	for _, p := range profiles {
		if p.Image() == policy.ImageReader || p.Agent != nil {
			continue
		}
		if err := images.CheckStatic(busybox); err != nil {
			return nil, fmt.Errorf("profile %s allows exec and needs busybox for its tools image: %w", p.Name, err)
		}
		commands := p.ExecCommands()
		if p.Exec.Security == policy.ExecFull {
			// Full exec has no list; the image still carries only the
			// applets Airlock ever ships.
			commands = images.ToolApplets
		}
		spec, err := images.Tools(p.Image(), agentBin, busybox, commands)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", p.Name, err)
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

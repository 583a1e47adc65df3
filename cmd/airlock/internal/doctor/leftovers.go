package doctor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/netns"
)

// maxListed bounds how many leftovers a detail names.
const maxListed = 8

// reapFix is the remedy common to every leftover: airlockd reaps them all
// on start.
const reapFix = "restart airlockd, which reaps everything a predecessor left on start"

// leftover turns what a leftovers check found into a result. With a broker
// answering, what was found may be its live jobs, so it is only reported.
func leftover(e *env, what string, found []string, manual string) result {
	if len(found) == 0 {
		return result{ok: true, detail: "none"}
	}
	shown := found
	if len(shown) > maxListed {
		shown = append(shown[:maxListed:maxListed], fmt.Sprintf("and %d more", len(found)-maxListed))
	}
	detail := fmt.Sprintf("%d %s: %s", len(found), what, strings.Join(shown, ", "))
	if e.brokerLive {
		return result{sev: Info, detail: detail + "; airlockd is answering, so these may be live jobs",
			fix: "nothing, if they belong to running jobs; otherwise " + reapFix}
	}
	return result{sev: Warn, detail: detail + "; no broker answers on its socket, so they are likely a crashed one's", fix: reapFix + ", or by hand: " + manual}
}

// checkLeftoverNetns lists job network namespaces under netns.Dir.
func checkLeftoverNetns(_ context.Context, e *env) result {
	entries, err := os.ReadDir(netns.Dir)
	if err != nil && !os.IsNotExist(err) {
		return result{sev: Warn, detail: fmt.Sprintf("cannot list %s: %v", netns.Dir, err), fix: "run airlock doctor as root"}
	}
	var found []string
	for _, d := range entries {
		if strings.HasPrefix(d.Name(), netns.NamePrefix) {
			found = append(found, d.Name())
		}
	}
	return leftover(e, "job network namespaces in "+netns.Dir, found, "ip netns delete NAME")
}

// checkLeftoverVeth lists the host ends of job veths, recognised as
// netns.Reap does: by name and by device group or alias, so a stranger's
// link that happens to share the prefix is not reported.
func checkLeftoverVeth(_ context.Context, e *env) result {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return result{sev: Warn, detail: fmt.Sprintf("cannot open netlink: %v", err), fix: "run airlock doctor as root"}
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return result{sev: Warn, detail: fmt.Sprintf("cannot list links: %v", err), fix: "run airlock doctor as root"}
	}
	var found []string
	for _, l := range links {
		if netns.IsJobLink(l) {
			found = append(found, l.Attrs().Name)
		}
	}
	return leftover(e, "job veths", found, "ip link delete NAME")
}

// checkLeftoverMounts lists mounts below the state dir's jobs dir, such
// as a job's output tmpfs. It sees this process's mount namespace, which
// is airlockd's unless its unit gives it a private one.
func checkLeftoverMounts(_ context.Context, e *env) result {
	jobs := filepath.Join(absPath(e.cfg.StateDir), "jobs")
	if real, err := filepath.EvalSymlinks(jobs); err == nil {
		jobs = real
	}
	f, err := os.Open(procRoot + "/self/mountinfo")
	if err != nil {
		return result{sev: Warn, detail: fmt.Sprintf("cannot read mountinfo: %v", err), fix: "mount /proc"}
	}
	defer f.Close()
	var found []string
	mps, err := footprint.MountPoints(f)
	if err != nil {
		return result{sev: Warn, detail: fmt.Sprintf("cannot read mountinfo: %v", err), fix: "mount /proc"}
	}
	for _, mp := range mps {
		if strings.HasPrefix(mp, jobs+"/") {
			found = append(found, mp)
		}
	}
	return leftover(e, "mounts under "+jobs, found, "umount -l PATH")
}

// checkLeftoverCgroups lists run cgroups, /airlock/<instance>/airlock-<run>
// (and /airlock/airlock-<run> of brokers that had no instance level), on
// every hierarchy: on v1 one per controller, on v2 one. A run whose cgroup
// still holds processes is a job running on outside any broker's control.
func checkLeftoverCgroups(_ context.Context, e *env) result {
	mine := cgroupInstance(e.cfg.StateDir)
	var found []string
	seen := map[string]int{}
	busy, others := 0, 0
	for _, pattern := range []string{
		cgroupRoot + "/*/" + footprint.Namespace + "/*/airlock-*",
		cgroupRoot + "/*/" + footprint.Namespace + "/airlock-*",
		cgroupRoot + "/" + footprint.Namespace + "/*/airlock-*",
		cgroupRoot + "/" + footprint.Namespace + "/airlock-*",
	} {
		m, _ := filepath.Glob(pattern)
		for _, p := range m {
			if st, err := os.Stat(p); err != nil || !st.IsDir() {
				continue
			}
			// One run shows up once per v1 controller; name it once.
			rel, _ := filepath.Rel(cgroupRoot, p)
			if parts := strings.SplitN(rel, "/", 2); len(parts) == 2 && parts[0] != footprint.Namespace {
				rel = parts[1]
			}
			i, ok := seen[rel]
			if !ok {
				i = len(found)
				seen[rel] = i
				found = append(found, "/"+rel)
				if !strings.HasPrefix(rel, footprint.Namespace+"/"+mine+"/") {
					others++
				}
			}
			if b, err := os.ReadFile(filepath.Join(p, "cgroup.procs")); err == nil && len(strings.TrimSpace(string(b))) > 0 && !strings.HasSuffix(found[i], " (has processes)") {
				found[i] += " (has processes)"
				busy++
			}
		}
	}
	const manual = "kill the pids in each cgroup.procs, then rmdir the cgroup in every hierarchy"
	r := leftover(e, "run cgroups", found, manual)
	if len(found) > 0 {
		r.detail += fmt.Sprintf("; %d with processes; %d not of this state dir's broker (instance %s)", busy, others, mine)
		if others > 0 && !e.brokerLive {
			// airlockd reaps only its own instance's cgroups.
			r.fix = "restart the broker of each state dir, which reaps its own on start, or by hand: " + manual
		}
	}
	return r
}

// cgroupInstance is the cgroup level naming the broker of a state dir.
func cgroupInstance(stateDir string) string { return footprint.InstanceID(absPath(stateDir)) }

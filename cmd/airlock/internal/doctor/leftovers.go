package doctor

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/airlock/airlock/sandbox/footprint"
	"github.com/airlock/airlock/sandbox/netns"
)

// maxListed bounds how many leftovers a detail names.
const maxListed = 8

// found is one thing a leftovers check found, with the instance its name
// carries: "" for a name that carries none.
type found struct {
	instance, name string
}

// leftover turns what a leftovers check found into a result, by owner.
// What a running broker's instance carries is its jobs', and passes. What
// a dead broker's carries is left over: airlockd's recovery on start
// removes its own instance's, so the advice is to start the broker of that
// state dir. Where the owner cannot be told, nothing is advised removed.
func leftover(e *env, what string, items []found, manual string) result {
	if len(items) == 0 {
		return result{ok: true, detail: "none"}
	}
	var dead, unknown []string
	var why []string
	live := map[string]int{}
	var brokers []string
	deadInstances := map[string]bool{}
	for _, it := range items {
		switch st, who := e.owners.of(it.instance); st {
		case ownerLive:
			if live[who] == 0 {
				brokers = append(brokers, who)
			}
			live[who]++
		case ownerDead:
			dead = append(dead, it.name)
			deadInstances[it.instance] = true
		default:
			unknown = append(unknown, it.name)
			if !slices.Contains(why, who) {
				why = append(why, who)
			}
		}
	}
	var detail, fix []string
	if len(dead) > 0 {
		detail = append(detail, fmt.Sprintf("%d %s left by brokers that no longer run: %s", len(dead), what, listed(dead)))
		for _, inst := range slices.Sorted(maps.Keys(deadInstances)) {
			fix = append(fix, deadFix(e, inst, manual))
		}
	}
	if len(unknown) > 0 {
		detail = append(detail, fmt.Sprintf("%d %s whose broker cannot be told (%s): %s", len(unknown), what, strings.Join(why, "; "), listed(unknown)))
		fix = append(fix, "remove nothing until the owner is known: run airlock doctor as root, which can read which state dir each airlockd locks, and look again in a minute, as a job being set up can briefly carry no instance")
	}
	if len(brokers) > 0 {
		var per []string
		for _, b := range brokers {
			per = append(per, fmt.Sprintf("%d to %s", live[b], b))
		}
		n := len(items) - len(dead) - len(unknown)
		if len(dead)+len(unknown) == 0 {
			detail = append(detail, "none left over")
		}
		detail = append(detail, fmt.Sprintf("%d %s belong to running brokers' jobs, not left over: %s", n, what, strings.Join(per, ", ")))
	}
	if len(dead)+len(unknown) == 0 {
		return result{ok: true, detail: strings.Join(detail, "; ")}
	}
	return result{sev: Warn, detail: strings.Join(detail, "; "), fix: strings.Join(fix, "; ")}
}

// deadFix is the advice for what a dead broker's instance left.
func deadFix(e *env, instance, manual string) string {
	switch instance {
	case e.owners.mine:
		return fmt.Sprintf("start airlockd with --state-dir %s: its recovery on start removes them (or, with no broker running to own them, by hand: %s)", absPath(e.cfg.StateDir), manual)
	case "":
		return "no airlockd's recovery removes names without an instance, and no broker runs to own them: by hand, " + manual
	}
	return fmt.Sprintf("start the airlockd of the state dir with instance %s (the first 12 hex digits of the SHA-256 of its absolute path): its recovery on start removes them (or, with no broker running to own them, by hand: %s)", instance, manual)
}

// listed names up to maxListed items.
func listed(names []string) string {
	if len(names) > maxListed {
		names = append(names[:maxListed:maxListed], fmt.Sprintf("and %d more", len(names)-maxListed))
	}
	return strings.Join(names, ", ")
}

// netnsDir is where job network namespaces are; a variable for tests.
var netnsDir = netns.Dir

// checkLeftoverNetns lists job network namespaces under netns.Dir.
func checkLeftoverNetns(_ context.Context, e *env) result {
	namespaces, err := jobNamespaces(netnsDir)
	if err != nil {
		return result{sev: Warn, detail: fmt.Sprintf("cannot list %s: %v", netnsDir, err), fix: "run airlock doctor as root"}
	}
	var items []found
	for _, n := range namespaces {
		items = append(items, n.found)
	}
	return leftover(e, "job network namespaces in "+netnsDir, items, "ip netns delete NAME")
}

// jobNamespace is a job network namespace, by the name netns gives it:
// NamePrefix, the instance (the broker's pool scope), a dash and the short
// hash the job's veth is named with too.
type jobNamespace struct {
	found
	short string
}

// jobNamespaces lists the job network namespaces under dir.
func jobNamespaces(dir string) ([]jobNamespace, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var out []jobNamespace
	for _, d := range entries {
		rest, ok := strings.CutPrefix(d.Name(), netns.NamePrefix)
		if !ok {
			continue
		}
		n := jobNamespace{found: found{name: d.Name()}, short: rest}
		if scope, short, ok := strings.Cut(rest, "-"); ok {
			n.instance, n.short = scope, short
		}
		out = append(out, n)
	}
	return out, nil
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
	namespaces, _ := jobNamespaces(netnsDir)
	var items []found
	for _, l := range links {
		if netns.IsJobLink(l) {
			items = append(items, vethOwner(l.Attrs().Name, l.Attrs().Alias, namespaces))
		}
	}
	return leftover(e, "job veths", items, "ip link delete NAME")
}

// vethOwner finds the instance of a job veth: in its alias, "airlock
// INSTANCE job ID", or, when a crash left it without one, in the name of
// the job namespace its peer is in, which ends in the same short hash.
func vethOwner(name, alias string, namespaces []jobNamespace) found {
	f := found{name: name}
	if fields := strings.Fields(alias); len(fields) >= 2 && fields[0] == netns.LinkAlias && fields[1] != "job" {
		f.instance = fields[1]
		return f
	}
	short := strings.TrimPrefix(name, netns.LinkPrefix)
	for _, n := range namespaces {
		if n.short == short {
			f.instance = n.instance
		}
	}
	return f
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
	var items []found
	mps, err := footprint.MountPoints(f)
	if err != nil {
		return result{sev: Warn, detail: fmt.Sprintf("cannot read mountinfo: %v", err), fix: "mount /proc"}
	}
	for _, mp := range mps {
		if strings.HasPrefix(mp, jobs+"/") {
			// Job dirs are the state dir's broker's.
			items = append(items, found{instance: e.owners.mine, name: mp})
		}
	}
	return leftover(e, "mounts under "+jobs, items, "umount -l PATH")
}

// checkLeftoverCgroups lists run cgroups, /airlock/<instance>/airlock-<run>
// (and /airlock/airlock-<run> of brokers that had no instance level), on
// every hierarchy: on v1 one per controller, on v2 one. A dead broker's run
// whose cgroup still holds processes is a job running on outside any
// broker's control.
func checkLeftoverCgroups(_ context.Context, e *env) result {
	return leftover(e, "run cgroups", runCgroups(cgroupRoot),
		"kill the pids in each cgroup.procs, then rmdir the cgroup in every hierarchy")
}

// runCgroups lists the run cgroups under root, each once however many
// hierarchies it is in, marked when it holds processes.
func runCgroups(root string) []found {
	var out []found
	seen := map[string]int{}
	for _, pattern := range []string{
		root + "/*/" + footprint.Namespace + "/*/airlock-*",
		root + "/*/" + footprint.Namespace + "/airlock-*",
		root + "/" + footprint.Namespace + "/*/airlock-*",
		root + "/" + footprint.Namespace + "/airlock-*",
	} {
		m, _ := filepath.Glob(pattern)
		for _, p := range m {
			if st, err := os.Stat(p); err != nil || !st.IsDir() {
				continue
			}
			// One run shows up once per v1 controller; name it once.
			rel, _ := filepath.Rel(root, p)
			if parts := strings.SplitN(rel, "/", 2); len(parts) == 2 && parts[0] != footprint.Namespace {
				rel = parts[1]
			}
			i, ok := seen[rel]
			if !ok {
				i = len(out)
				seen[rel] = i
				f := found{name: "/" + rel}
				// airlock/<instance>/airlock-<run>, or airlock/airlock-<run>.
				if parts := strings.Split(rel, "/"); len(parts) == 3 {
					f.instance = parts[1]
				}
				out = append(out, f)
			}
			if b, err := os.ReadFile(filepath.Join(p, "cgroup.procs")); err == nil && len(strings.TrimSpace(string(b))) > 0 && !strings.HasSuffix(out[i].name, " (has processes)") {
				out[i].name += " (has processes)"
			}
		}
	}
	return out
}

package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/airlock/airlock/sandbox/userns"
)

// procRoot and cgroupRoot are where the kernel's views are mounted.
const (
	procRoot   = "/proc"
	cgroupRoot = "/sys/fs/cgroup"
)

// checkNamespaces looks for the namespaces every sandbox gets. The user
// namespace has its own check, since only some profiles use it.
func checkNamespaces(_ context.Context, _ *env) result {
	var f findings
	var have []string
	for _, ns := range []string{"mnt", "pid", "net", "ipc", "uts", "cgroup"} {
		if _, err := os.Readlink(procRoot + "/self/ns/" + ns); err != nil {
			sev := Fail
			if ns == "cgroup" {
				// runc does without it; the job then sees the host's
				// cgroup paths, which is an information leak only.
				sev = Warn
			}
			f.add(sev, fmt.Sprintf("%s namespace unavailable: %v", ns, err), "use a kernel built with CONFIG_NAMESPACES and the PID, NET, IPC, UTS and CGROUP namespaces (any distribution kernel has them)")
			continue
		}
		have = append(have, ns)
	}
	return f.result(strings.Join(have, " ") + " namespaces available")
}

// checkUserNS checks what a profile with isolation.userNamespace needs:
// the kernel feature and a non-zero namespace limit. airlockd runs as
// root, so Debian's unprivileged_userns_clone does not matter and is only
// reported.
func checkUserNS(_ context.Context, e *env) result {
	users, known := e.needsUserNS()
	sev := Warn
	why := "no loaded profile uses isolation.userNamespace"
	switch {
	case !known:
		why = "the profiles did not load; it matters if one uses isolation.userNamespace"
	case len(users) > 0:
		sev, why = Fail, "profiles "+strings.Join(users, ", ")+" use isolation.userNamespace"
	}
	var f findings
	if _, err := os.Readlink(procRoot + "/self/ns/user"); err != nil {
		f.add(sev, fmt.Sprintf("user namespaces unavailable (%v); %s, whose jobs airlockd then refuses", err, why), "use a kernel built with CONFIG_USER_NS, or set isolation.userNamespace: false in those profiles")
		return f.result("")
	}
	limit, err := readInt(procRoot + "/sys/user/max_user_namespaces")
	switch {
	case err != nil:
		f.add(Warn, fmt.Sprintf("cannot read user.max_user_namespaces: %v", err), "check that /proc is mounted and readable")
	case limit == 0:
		f.add(sev, "user.max_user_namespaces is 0, so no user namespace can be created; "+why+", whose jobs airlockd then refuses", "sysctl -w user.max_user_namespaces=15000 (and persist it in /etc/sysctl.d)")
	}
	detail := fmt.Sprintf("available, max_user_namespaces %d", limit)
	if v, err := readInt(procRoot + "/sys/kernel/unprivileged_userns_clone"); err == nil {
		detail += fmt.Sprintf(", unprivileged_userns_clone %d (not needed: airlockd is root)", v)
	}
	first, last := userns.Block()
	if len(users) > 0 {
		detail += fmt.Sprintf("; used by %s, each job on a host ID range of its own from %d-%d, claimed in %s", strings.Join(users, ", "), first, last, userns.DefaultDir)
	}
	files := map[string]string{}
	for _, name := range []string{"passwd", "group", "subuid", "subgid"} {
		if b, err := os.ReadFile(etcRoot + "/" + name); err == nil {
			files[etcRoot+"/"+name] = string(b)
		}
	}
	if clash := blockClashes(files, userns.Shared.First, last); len(clash) > 0 {
		f.add(sev, fmt.Sprintf("host ids in Airlock's block %d-%d are taken (%s): a sandbox's users would be theirs; %s", userns.Shared.First, last, strings.Join(clash, "; "), why),
			"move those accounts or subordinate ranges out of the block")
	}
	return f.result(detail)
}

// etcRoot holds the host's account and subordinate id files.
const etcRoot = "/etc"

// blockClashes returns the accounts (passwd, group: name:x:id:...) and
// subordinate ranges (subuid, subgid: name:start:count) in files, by path,
// whose ids fall in first-last, the block user-namespaced sandboxes map
// their users onto.
func blockClashes(files map[string]string, first, last uint32) []string {
	var out []string
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, path := range paths {
		sub := strings.HasSuffix(path, "/subuid") || strings.HasSuffix(path, "/subgid")
		for _, line := range strings.Split(files[path], "\n") {
			fields := strings.Split(strings.TrimSpace(line), ":")
			if len(fields) < 3 || strings.HasPrefix(fields[0], "#") {
				continue
			}
			var lo, n uint64 = 0, 1
			var err error
			if sub {
				lo, err = strconv.ParseUint(fields[1], 10, 32)
				if err == nil {
					n, err = strconv.ParseUint(fields[2], 10, 32)
				}
			} else {
				lo, err = strconv.ParseUint(fields[2], 10, 32)
			}
			if err != nil || n == 0 || lo > uint64(last) || lo+n-1 < uint64(first) {
				continue
			}
			out = append(out, fmt.Sprintf("%s: %s", path, fields[0]))
		}
	}
	return out
}

// checkCgroups finds the cgroup layout and the controllers that enforce
// limits.memory, limits.pids and limits.cpu. On a v1 or hybrid host runc
// uses the v1 hierarchies, so those are what must carry the controllers.
func checkCgroups(_ context.Context, _ *env) result {
	var f findings
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		f.add(Fail, fmt.Sprintf("%s: %v", cgroupRoot, err), "mount the cgroup filesystem at "+cgroupRoot+" (systemd does this at boot)")
		return f.result("")
	}
	want := []string{"memory", "pids", "cpu"}
	var mode string
	var missing []string
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		mode = "cgroup v2"
		b, err := os.ReadFile(cgroupRoot + "/cgroup.controllers")
		if err != nil {
			f.add(Fail, fmt.Sprintf("cgroup v2 without a readable cgroup.controllers: %v", err), "run airlock doctor as root, and check the cgroup2 mount at "+cgroupRoot)
			return f.result("")
		}
		have := strings.Fields(string(b))
		for _, c := range want {
			if !slices.Contains(have, c) {
				missing = append(missing, c)
			}
		}
	} else {
		mode = "cgroup v1"
		var u unix.Statfs_t
		if unix.Statfs(cgroupRoot+"/unified", &u) == nil && u.Type == unix.CGROUP2_SUPER_MAGIC {
			mode = "cgroup v1 (hybrid: v2 at " + cgroupRoot + "/unified)"
		}
		for _, c := range want {
			var cs unix.Statfs_t
			if unix.Statfs(cgroupRoot+"/"+c, &cs) != nil || cs.Type != unix.CGROUP_SUPER_MAGIC {
				missing = append(missing, c)
			}
		}
		// Every job's memory plus swap is capped at its memory limit, so
		// that it never swaps; v1 keeps that cap in the memsw files, which
		// exist only with swap accounting on.
		if !slices.Contains(missing, "memory") {
			if _, err := os.Stat(cgroupRoot + "/memory/memory.memsw.limit_in_bytes"); err != nil {
				f.add(Fail, "cgroup v1 without swap accounting (no memory.memsw.limit_in_bytes): a job's memory+swap limit, equal to its memory limit so that it never swaps, cannot be applied",
					"boot with swapaccount=1 on the kernel command line, or move the host to cgroup v2")
			}
		}
	}
	if len(missing) > 0 {
		sev := Fail
		if len(missing) == 1 && missing[0] == "cpu" {
			// A missing cpu controller loses a fairness limit, not
			// containment: memory and pids still hold.
			sev = Warn
		}
		f.add(sev, fmt.Sprintf("%s without the %s controller, so profile limits on it are not enforced", mode, strings.Join(missing, ", ")),
			"enable the controller: on v2 add it to cgroup.subtree_control up the tree (systemd: DefaultMemoryAccounting, DefaultTasksAccounting); on v1 mount its hierarchy; check the kernel command line for cgroup_disable=")
	}
	return f.result(mode + "; " + strings.Join(want, ", ") + " controllers present")
}

// checkSeccomp checks that the kernel can install seccomp filters: every
// shipped profile sets isolation.seccomp.
func checkSeccomp(_ context.Context, _ *env) result {
	var f findings
	const fix = "use a kernel built with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER"
	status, err := os.ReadFile(procRoot + "/self/status")
	if err != nil {
		f.add(Fail, fmt.Sprintf("cannot read %s/self/status: %v", procRoot, err), "mount /proc")
		return f.result("")
	}
	if !strings.Contains(string(status), "\nSeccomp:") {
		f.add(Fail, "the kernel has no seccomp support (no Seccomp field in /proc/self/status)", fix)
		return f.result("")
	}
	b, err := os.ReadFile(procRoot + "/sys/kernel/seccomp/actions_avail")
	if err != nil {
		f.add(Fail, fmt.Sprintf("seccomp filter mode unavailable: %v", err), fix)
		return f.result("")
	}
	actions := strings.Fields(string(b))
	for _, a := range []string{"allow", "errno", "kill_process"} {
		if !slices.Contains(actions, a) {
			f.add(Fail, "seccomp filters cannot "+a, fix)
		}
	}
	return f.result("seccomp filters available (actions: " + strings.Join(actions, " ") + ")")
}

// checkNftables probes nf_tables over netlink, as the job network code
// uses it; the nft command is optional and only reported.
func checkNftables(ctx context.Context, _ *env) result {
	var f findings
	nft := "nft command not installed (optional: `nft list ruleset` helps debugging)"
	if out, err := command(ctx, "nft", "--version"); err == nil {
		nft = strings.TrimSpace(out)
	}
	c, err := nftables.New()
	if err == nil {
		_, err = c.ListTablesOfFamily(nftables.TableFamilyINet)
	}
	switch {
	case err == nil:
	case errors.Is(err, unix.EPERM):
		f.add(Warn, "cannot probe nf_tables without CAP_NET_ADMIN; "+nft, "run airlock doctor as root")
	default:
		f.add(Fail, fmt.Sprintf("nf_tables does not answer over netlink (%v): jobs with network.mode allowlist cannot be confined; %s", err, nft),
			"load the module (modprobe nf_tables) or use a kernel built with CONFIG_NF_TABLES and CONFIG_NF_TABLES_INET")
	}
	return f.result("nf_tables answers over netlink; " + nft)
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// firstLine returns the first line of s.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

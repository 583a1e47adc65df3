package doctor

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/airlock/airlock/sandbox/footprint"
)

// stateDir makes a state dir with airlockd's lock file in it, unheld, and
// returns its path with symlinks resolved, as /proc shows it.
func stateDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, lockName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// holdLock takes airlockd's lock on dir as airlockd does, and returns the
// release; the kernel drops the lock when the file is closed.
func holdLock(t *testing.T, dir string) (release func()) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return func() { f.Close() }
}

func TestReadOwners_AHeldStateDirLockIsALiveBroker(t *testing.T) {
	held, free := stateDir(t), stateDir(t)
	release := holdLock(t, held)

	o := readOwners(free)
	if st, who := o.of(footprint.InstanceID(held)); st != ownerLive || who != "airlockd pid "+strconv.Itoa(os.Getpid())+" (state dir "+held+")" {
		t.Errorf("held state dir's instance: %v %q, want live, naming this pid and %s", st, who, held)
	}
	if st, who := o.of(o.mine); st != ownerDead {
		t.Errorf("free state dir's instance: %v %q, want dead", st, who)
	}
	if st, _ := readOwners(held).of(footprint.InstanceID(held)); st != ownerLive {
		t.Errorf("held state dir checked as its own: %v, want live", st)
	}

	release()
	if st, who := readOwners(held).of(footprint.InstanceID(held)); st != ownerDead {
		t.Errorf("after the holder let go: %v %q, want dead", st, who)
	}
}

// TestReadOwners_FindsTheLockThroughASymlinkedStateDir: airlockd names its
// instance after the path it was given, while /proc shows the lock's
// resolved path; the state dir checked is matched by the lock's inode.
func TestReadOwners_FindsTheLockThroughASymlinkedStateDir(t *testing.T) {
	real := stateDir(t)
	link := filepath.Join(t.TempDir(), "state")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	holdLock(t, link)
	o := readOwners(link)
	if o.mine != footprint.InstanceID(link) {
		t.Fatalf("mine = %s, want the instance of %s as given", o.mine, link)
	}
	if st, who := o.of(o.mine); st != ownerLive {
		t.Errorf("symlinked state dir: %v %q, want live", st, who)
	}
}

func TestOwnersOf_SaysUnknownRatherThanDeadWhenItCannotSee(t *testing.T) {
	live := map[string]liveBroker{"aaaaaaaaaaaa": {pid: 42, stateDir: "/srv/a"}}
	tests := []struct {
		name     string
		o        owners
		instance string
		want     ownerState
	}{
		{"a held lock's instance", owners{live: live}, "aaaaaaaaaaaa", ownerLive},
		{"no holder, all seen", owners{live: live}, "bbbbbbbbbbbb", ownerDead},
		{"a holder unseen", owners{live: live, hidden: []int{7}}, "bbbbbbbbbbbb", ownerUnknown},
		{"a holder unseen, but the checked state dir's lock is free by its inode", owners{live: live, hidden: []int{7}, mine: "bbbbbbbbbbbb", mineKnown: true}, "bbbbbbbbbbbb", ownerDead},
		{"locks unreadable", owners{live: live, err: os.ErrPermission}, "aaaaaaaaaaaa", ownerUnknown},
		{"no instance, brokers running", owners{live: live}, "", ownerUnknown},
		{"no instance, no broker running", owners{live: map[string]liveBroker{}}, "", ownerDead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, who := tt.o.of(tt.instance); got != tt.want {
				t.Errorf("of(%q) = %v %q, want %v", tt.instance, got, who, tt.want)
			}
		})
	}
}

func TestParseLocks_KeepsOnlyHeldExclusiveFlocks(t *testing.T) {
	const locks = `1: FLOCK  ADVISORY  WRITE 17828 fe:00:9977953 0 EOF
1: -> FLOCK  ADVISORY  WRITE 300 fe:00:9977953 0 EOF
2: POSIX  ADVISORY  WRITE 400 fe:00:1 0 EOF
3: FLOCK  ADVISORY  READ 500 fe:00:2 0 EOF
4: OFDLCK ADVISORY  WRITE -1 fe:00:3 0 EOF
5: FLOCK  ADVISORY  WRITE 600 08:02:131090 0 EOF
`
	got, err := parseLocks(strings.NewReader(locks))
	if err != nil {
		t.Fatal(err)
	}
	want := []heldLock{{pid: 17828, ino: 9977953}, {pid: 600, ino: 131090}}
	if !slices.Equal(got, want) {
		t.Errorf("parseLocks = %v, want %v", got, want)
	}
}

func TestFlagValue_ReadsGoFlagSpellings(t *testing.T) {
	tests := []struct {
		args  []string
		want  string
		found bool
	}{
		{[]string{"--state-dir", "/a"}, "/a", true},
		{[]string{"-state-dir=/b", "--debug"}, "/b", true},
		{[]string{"--socket", "/s", "--state-dir=/a", "-state-dir", "/c"}, "/c", true},
		{[]string{"--state-dirx", "/a"}, "", false},
		{[]string{"--debug", "--egress-pool", "10.215.0.0/16", "--state-dir", "/a"}, "/a", true},
		{[]string{"--", "--state-dir", "/a"}, "", false},
		{[]string{"--state-dir"}, "", false},
	}
	for _, tt := range tests {
		if got, found := flagValue(tt.args, "state-dir"); got != tt.want || found != tt.found {
			t.Errorf("flagValue(%q) = %q, %v; want %q, %v", tt.args, got, found, tt.want, tt.found)
		}
	}
}

// testOwners: broker pid 42 runs on /srv/a, instance aaaaaaaaaaaa; the
// state dir checked, instance bbbbbbbbbbbb, has no broker.
func testOwners() *owners {
	return &owners{live: map[string]liveBroker{"aaaaaaaaaaaa": {pid: 42, stateDir: "/srv/a"}}, mine: "bbbbbbbbbbbb", mineKnown: true}
}

func TestLeftover_OnlyADeadBrokersAreLeftOversToRemove(t *testing.T) {
	const manual = "ip netns delete NAME"
	tests := []struct {
		name    string
		o       *owners
		items   []found
		ok      bool
		detail  []string
		fix     []string
		notFix  []string
		notText []string
	}{
		{
			name:    "a running broker's are its jobs'",
			o:       testOwners(),
			items:   []found{{"aaaaaaaaaaaa", "airlock-aaaaaaaaaaaa-00000001"}, {"aaaaaaaaaaaa", "airlock-aaaaaaaaaaaa-00000002"}},
			ok:      true,
			detail:  []string{"none left over", "2 things belong to running brokers' jobs, not left over: 2 to airlockd pid 42 (state dir /srv/a)"},
			notText: []string{"crash", "left by", "airlock-aaaaaaaaaaaa-0000000"},
		},
		{
			name:   "the checked state dir's dead broker",
			o:      testOwners(),
			items:  []found{{"bbbbbbbbbbbb", "airlock-bbbbbbbbbbbb-00000003"}, {"aaaaaaaaaaaa", "airlock-aaaaaaaaaaaa-00000001"}},
			detail: []string{"1 things left by brokers that no longer run: airlock-bbbbbbbbbbbb-00000003", "1 things belong to running brokers' jobs"},
			fix:    []string{"start airlockd with --state-dir /srv/b: its recovery on start removes them", manual},
		},
		{
			name:   "another state dir's dead broker",
			o:      testOwners(),
			items:  []found{{"cccccccccccc", "airlock-cccccccccccc-00000004"}},
			detail: []string{"left by brokers that no longer run: airlock-cccccccccccc-00000004"},
			fix:    []string{"start the airlockd of the state dir with instance cccccccccccc", manual},
			notFix: []string{"--state-dir /srv/b"},
		},
		{
			name:    "an owner that cannot be seen",
			o:       &owners{live: map[string]liveBroker{}, hidden: []int{7, 8}, mine: "bbbbbbbbbbbb", mineKnown: true},
			items:   []found{{"cccccccccccc", "airlock-cccccccccccc-00000004"}},
			detail:  []string{"whose broker cannot be told (the open files of lock holders pid 7, pid 8 cannot be read)"},
			fix:     []string{"remove nothing until the owner is known", "run airlock doctor as root"},
			notFix:  []string{manual, "start"},
			notText: []string{"left by"},
		},
		{
			name:    "no instance in the name while brokers run",
			o:       testOwners(),
			items:   []found{{"", "airlock-00000005"}},
			detail:  []string{"whose broker cannot be told"},
			notFix:  []string{manual},
			notText: []string{"left by"},
		},
		{
			name:   "no instance in the name and no broker running",
			o:      &owners{live: map[string]liveBroker{}, mine: "bbbbbbbbbbbb", mineKnown: true},
			items:  []found{{"", "airlock-00000005"}},
			detail: []string{"left by brokers that no longer run: airlock-00000005"},
			fix:    []string{"no airlockd's recovery removes names without an instance", manual},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &env{cfg: Config{StateDir: "/srv/b"}, owners: tt.o}
			r := leftover(e, "things", tt.items, manual)
			if r.ok != tt.ok || !r.ok && r.sev != Warn {
				t.Errorf("ok %v severity %s, want ok %v (or warn)", r.ok, r.sev, tt.ok)
			}
			for _, w := range tt.detail {
				if !strings.Contains(r.detail, w) {
					t.Errorf("detail %q lacks %q", r.detail, w)
				}
			}
			for _, w := range tt.fix {
				if !strings.Contains(r.fix, w) {
					t.Errorf("fix %q lacks %q", r.fix, w)
				}
			}
			for _, w := range tt.notFix {
				if strings.Contains(r.fix, w) {
					t.Errorf("fix %q has %q", r.fix, w)
				}
			}
			for _, w := range tt.notText {
				if strings.Contains(r.detail+r.fix, w) {
					t.Errorf("report %q / %q has %q", r.detail, r.fix, w)
				}
			}
		})
	}
}

// TestCheckLeftoverNetns_ARunningBrokersNamespacesAreNotLeftOvers: with a
// real lock held on one state dir, its instance's namespaces are reported
// as its jobs', and those of the state dir checked, whose lock is free, as
// left over; once the lock goes, the first are left over too. (Each state
// dir is the one checked when it is judged dead, so that the test holds
// unprivileged too, when other users' lock holders cannot be read.)
func TestCheckLeftoverNetns_ARunningBrokersNamespacesAreNotLeftOvers(t *testing.T) {
	running, checked := stateDir(t), stateDir(t)
	dir := t.TempDir()
	old := netnsDir
	netnsDir = dir
	t.Cleanup(func() { netnsDir = old })
	liveNS := "airlock-" + footprint.InstanceID(running) + "-0badcafe"
	deadNS := "airlock-" + footprint.InstanceID(checked) + "-deadbeef"
	for _, n := range []string{liveNS, deadNS, "other-ns"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	release := holdLock(t, running)

	r := checkLeftoverNetns(context.Background(), &env{cfg: Config{StateDir: checked}, owners: readOwners(checked)})
	if r.ok {
		t.Fatalf("passed with a dead broker's namespace: %s", r.detail)
	}
	leftPart, livePart, _ := strings.Cut(r.detail, "; ")
	if want := "1 job network namespaces in " + dir + " left by brokers that no longer run: " + deadNS; leftPart != want {
		t.Errorf("left over part %q, want %q", leftPart, want)
	}
	if want := "1 job network namespaces in " + dir + " belong to running brokers' jobs, not left over: 1 to airlockd pid " + strconv.Itoa(os.Getpid()) + " (state dir " + running + ")"; livePart != want {
		t.Errorf("running part %q, want %q", livePart, want)
	}
	if !strings.HasPrefix(r.fix, "start airlockd with --state-dir "+checked+": its recovery on start removes them") {
		t.Errorf("fix %q", r.fix)
	}

	release()
	r = checkLeftoverNetns(context.Background(), &env{cfg: Config{StateDir: running}, owners: readOwners(running)})
	if left, _, _ := strings.Cut(r.detail, "; "); !strings.Contains(left, "left by brokers that no longer run") || !strings.Contains(left, liveNS) {
		t.Errorf("after the broker stopped: %s", r.detail)
	}
}

func TestCheckStateDirLock_NamesTheHolder(t *testing.T) {
	dir := stateDir(t)
	r := checkStateDirLock(context.Background(), &env{cfg: Config{StateDir: dir}, owners: readOwners(dir)})
	if !r.ok || !strings.Contains(r.detail, "is not held: no broker runs on this state dir") {
		t.Errorf("free: ok %v %q", r.ok, r.detail)
	}
	holdLock(t, dir)
	r = checkStateDirLock(context.Background(), &env{cfg: Config{StateDir: dir}, owners: readOwners(dir)})
	if want := "airlockd pid " + strconv.Itoa(os.Getpid()) + " (state dir " + dir + ") holds " + filepath.Join(dir, lockName); !r.ok || !strings.Contains(r.detail, want) {
		t.Errorf("held: ok %v %q, want %q", r.ok, r.detail, want)
	}
}

func TestVethOwner_FromAliasOrItsNamespace(t *testing.T) {
	namespaces := []jobNamespace{
		{found: found{instance: "aaaaaaaaaaaa", name: "airlock-aaaaaaaaaaaa-0badcafe"}, short: "0badcafe"},
		{found: found{name: "airlock-deadbeef"}, short: "deadbeef"},
	}
	tests := []struct {
		name, alias, want string
	}{
		{"al-12345678", "airlock bbbbbbbbbbbb job j-1", "bbbbbbbbbbbb"},
		{"al-0badcafe", "", "aaaaaaaaaaaa"},
		{"al-deadbeef", "", ""},
		{"al-12345678", "airlock job j-1", ""},
		{"al-feedf00d", "", ""},
	}
	for _, tt := range tests {
		if got := vethOwner(tt.name, tt.alias, namespaces); got.instance != tt.want || got.name != tt.name {
			t.Errorf("vethOwner(%s, %q) = %+v, want instance %q", tt.name, tt.alias, got, tt.want)
		}
	}
}

func TestRunCgroups_OncePerRunWithItsInstance(t *testing.T) {
	root := t.TempDir()
	mk := func(p, procs string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p, "cgroup.procs"), []byte(procs), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("airlock/aaaaaaaaaaaa/airlock-r1", "")         // v2
	mk("memory/airlock/aaaaaaaaaaaa/airlock-r1", "9") // the same run on v1
	mk("airlock/airlock-r2", "")                      // no instance level
	got := runCgroups(root)
	want := []found{
		{"aaaaaaaaaaaa", "/airlock/aaaaaaaaaaaa/airlock-r1 (has processes)"},
		{"", "/airlock/airlock-r2"},
	}
	slices.SortFunc(got, func(a, b found) int { return strings.Compare(a.name, b.name) })
	if !slices.Equal(got, want) {
		t.Errorf("runCgroups = %+v, want %+v", got, want)
	}
}

func TestPoolClashes_SkipsDefaultRoutesAndThisBrokersJobVeths(t *testing.T) {
	pool := netip.MustParsePrefix("10.213.0.0/16")
	nets := []hostNet{
		{prefix: netip.MustParsePrefix("0.0.0.0/0"), what: "default route"},
		{prefix: netip.MustParsePrefix("192.168.1.0/24"), what: "lan"},
		{prefix: netip.MustParsePrefix("10.0.0.0/8"), what: "vpn"},
		{prefix: netip.MustParsePrefix("10.213.0.0/30"), what: "own job", job: true, instance: "mine"},
		{prefix: netip.MustParsePrefix("10.213.0.4/30"), what: "other broker's job", job: true, instance: "theirs"},
	}
	var got []string
	for _, c := range poolClashes(pool, nets, "mine") {
		got = append(got, c.what)
	}
	if want := []string{"vpn", "other broker's job"}; !slices.Equal(got, want) {
		t.Errorf("clashes %v, want %v", got, want)
	}
}

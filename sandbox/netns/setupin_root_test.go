package netns

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nsGetUserNS is ioctl NS_GET_USERNS: the user namespace that owns a
// namespace.
const nsGetUserNS = 0xb701

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestSetupIn_BuildsTheJobNetworkInATasksOwnNamespace: a task in a user
// namespace of its own, with a network namespace that user namespace owns
// (as runc makes for a user-namespaced task), gets the job's veth, address
// and rules in that very namespace, which Close then lets go.
func TestSetupIn_BuildsTheJobNetworkInATasksOwnNamespace(t *testing.T) {
	requireRoot(t)
	task := exec.Command("unshare", "--user", "--map-root-user", "--net", "sleep", "60")
	if err := task.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { task.Process.Kill(); task.Wait() })
	pid := strconv.Itoa(task.Process.Pid)
	taskNet, taskUser := "/proc/"+pid+"/ns/net", "/proc/"+pid+"/ns/user"
	// unshare has made its namespaces once they differ from ours.
	deadline := time.Now().Add(10 * time.Second)
	for inode(t, taskNet) == inode(t, "/proc/self/ns/net") || inode(t, taskUser) == inode(t, "/proc/self/ns/user") {
		if time.Now().After(deadline) || task.Process.Signal(unix.Signal(0)) != nil {
			t.Fatal("unshare did not make its namespaces")
		}
		runtime.Gosched()
	}

	pool, err := NewAddressPool(netip.MustParsePrefix("10.214.248.0/24"), "")
	if err != nil {
		t.Fatal(err)
	}
	n, err := Prepare(testID(t), pool, 3128)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		n.Close(ctx)
	})
	if err := n.SetupIn(context.Background(), taskNet); err != nil {
		t.Fatal(err)
	}
	if inode(t, n.Path) != inode(t, taskNet) {
		t.Fatalf("%s is not the task's network namespace", n.Path)
	}
	f, err := os.Open(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := unix.IoctlRetInt(int(f.Fd()), nsGetUserNS)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	err = unix.Fstat(owner, &st)
	unix.Close(owner)
	if err != nil || st.Ino != inode(t, taskUser) {
		t.Fatalf("the namespace's owner is not the task's user namespace (%v)", err)
	}
	h, err := handleIn(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	link, err := h.LinkByName(JobIf)
	if err != nil {
		t.Fatalf("no %s in the task's namespace: %v", JobIf, err)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IP.String() != n.JobIP.String() {
		t.Errorf("%s addresses %v (%v), want %s", JobIf, addrs, err, n.JobIP)
	}
	if _, err := n.DeniedPackets(); err != nil {
		t.Errorf("the rules are not in the task's namespace: %v", err)
	}

	ctx, cancel := cleanupCtx()
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.Path); !os.IsNotExist(err) {
		t.Errorf("%s is still there after Close: %v", n.Path, err)
	}
	if _, err := netlink.LinkByName(n.HostIf); err == nil {
		t.Errorf("host end %s is still there after Close", n.HostIf)
	}
}

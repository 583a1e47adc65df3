package sandbox

import "testing"

// The runc v2 shim names its socket by a hash of containerd's address, the
// namespace and the run ID; a killed shim's socket is found by that name.
// The value is the socket a containerd-shim-runc-v2 1.6 made for this
// address and ID.
func TestShimSocket_IsWhereTheShimPutsIt(t *testing.T) {
	got := shimSocket("/tmp/bench/state/containerd/containerd.sock", "shimx-1")
	const want = "/run/containerd/s/62126b4bb3692633fe53c4ffa27d1264b35bf1833cb039ef32ae8f3c078f0170"
	if got != want {
		t.Fatalf("shimSocket = %s, want %s", got, want)
	}
}

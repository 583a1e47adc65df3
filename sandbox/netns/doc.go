// Package netns gives each sandboxed job its own Linux network namespace.
//
// A job with network.mode allowlist gets a named netns (bind-mounted under
// /var/run/netns, as `ip netns add` does, so runc can join it by path), a
// veth pair whose host end carries the egress proxy's address, and an
// nftables table inside the job's netns that drops everything except TCP to
// that proxy. The rules are installed from the host before the task starts;
// the task has no CAP_NET_ADMIN over the namespace, so it cannot change them.
//
// Everything created here is named with an airlock prefix, so Reap can find
// what a crashed broker left behind.
package netns

#!/usr/bin/env bash
# airlockd-image.sh BIN OUT MKIMAGE builds airlockd's container image, the
# one deploy/kubernetes's DaemonSet runs, into the OCI image-layout tarball
# OUT, with no registry and no Docker: a root filesystem from Debian's
# packages (images/debian-rootfs.sh), make build's airlockd, airlock and
# airlock-agent from BIN in /usr/local/bin, and MKIMAGE (images/mkimage)
# to make the image, whose entrypoint is airlockd, run as root. The root
# filesystem is a temporary directory, removed on exit.
set -euo pipefail

bin=$1 out=$2 mkimage=$3
here=$(cd "$(dirname "$0")" && pwd)

# What airlockd runs (make deps installs the same on a host): containerd
# and its runc shim, the runtimes a profile may name, and the static
# busybox of the tools image. nftables and iproute2 are for whoever
# inspects a pod's jobs' rules and veths (airlockd itself speaks netlink).
# ca-certificates: the egress proxy checks https service upstreams against
# the system's CAs.
packages=containerd,runc,crun,runsc,nftables,busybox-static,iproute2,ca-certificates

for b in airlockd airlock airlock-agent; do
	[ -x "$bin/$b" ] || { echo "airlockd-image.sh: $bin/$b is missing: run make build" >&2; exit 1; }
done

root=$(mktemp -d /tmp/airlock-rootfs-XXXXXX)
trap 'rm -rf "$root"' EXIT

bash "$here/../../images/debian-rootfs.sh" "$root" "$packages"

# Side by side: airlockd builds the reader image from the airlock-agent
# next to it (--agent-binary's default).
for b in airlockd airlock airlock-agent; do
	install -D -m 0755 "$bin/$b" "$root/usr/local/bin/$b"
done

# What update-ca-certificates makes in ca-certificates' maintainer script,
# which mmdebstrap's extract variant does not run: the bundle of every CA
# the package ships, Debian's default.
mkdir -p "$root/etc/ssl/certs"
cat "$root"/usr/share/ca-certificates/mozilla/*.crt > "$root/etc/ssl/certs/ca-certificates.crt"

# Debian's /var/run is /run: the jobs' network namespaces are bound under
# /var/run/netns, and /run is the pod's writable emptyDir.
rm -rf "$root/var/run"
ln -s /run "$root/var/run"

# The DaemonSet's mountpoints (README.md, "Mounts"), so that none has to
# be made on a read-only root.
mkdir -p "$root"/var/lib/airlock "$root"/etc/airlock/{policies,token,tls,client-ca} "$root"/run "$root"/tmp

mkdir -p "$(dirname "$out")"
"$mkimage" -root "$root" -name airlockd -o "$out" -user 0:0 \
	-env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	-- /usr/local/bin/airlockd

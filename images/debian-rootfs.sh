#!/usr/bin/env bash
# debian-rootfs.sh ROOT PACKAGES extracts a minimal root filesystem from
# Debian's packages into the empty or missing directory ROOT, with no
# registry and no Docker: mmdebstrap's extract variant unpacks PACKAGES
# (comma-separated) and their dependencies, and runs no maintainer script.
# What no image reads is then removed: documentation, translations, the
# package manager's state and caches, and the device nodes mmdebstrap made
# (an image must not hold any: whoever runs it mounts its own /dev).
#
# DEBIAN_SUITE (default: the host's codename) and DEBIAN_MIRROR (default:
# mmdebstrap's own choice) say where the packages come from. Used by
# examples/agents/mkrootfs.sh and deploy/kubernetes/airlockd-image.sh.
set -euo pipefail

root=$1 packages=$2
suite=${DEBIAN_SUITE:-$(. /etc/os-release && echo "$VERSION_CODENAME")}

mmdebstrap --quiet --variant=extract --include="$packages" --format=directory \
	"$suite" "$root" ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"}

rm -rf "$root"/usr/share/{doc,man,info,locale,lintian} "$root"/var/{cache,lib/apt,lib/dpkg,log} \
	"$root"/dev
mkdir "$root/dev"

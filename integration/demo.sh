#!/usr/bin/env bash
# The README's demo: start airlockd with its embedded containerd in a
# throwaway state dir, summarize a page that carries a prompt injection,
# print the sanitized result, and leave nothing behind.
set -euo pipefail
bin=${1:?usage: demo.sh BIN_DIR}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/airlock-demo.XXXXXX)
# Searchable, not listable: ironclaw's user-namespaced sandboxes reach their
# rootfs below it as an unprivileged uid.
chmod 711 "$work"
pid=""
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		wait "$pid" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

umask 077
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token"
export AIRLOCK_TOKEN_FILE=$work/token AIRLOCK_SOCKET=$work/airlock.sock

echo "== starting airlockd (embedded containerd, state in $work/state)"
"$bin/airlockd" --state-dir "$work/state" --agent-binary "$bin/airlock-agent" 2>"$work/airlockd.log" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$AIRLOCK_SOCKET" ] && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/airlockd.log" >&2; exit 1; }
	sleep 0.1
done
[ -S "$AIRLOCK_SOCKET" ] || { echo "airlockd did not start" >&2; cat "$work/airlockd.log" >&2; exit 1; }

echo "== profiles"
"$bin/airlock" profiles
echo "== the page carries hidden instructions:"
grep -io 'ignore[^<]*' "$here/testdata/injected-page.html" | sed 's/^/   /'
echo "== spawn: summarize it in the vanilla sandbox"
"$bin/airlock" spawn --profile vanilla --task summarize \
	--content "$here/testdata/injected-page.html" \
	--schema "$here/testdata/summary.schema.json"
echo "== done; shutting down"

#!/usr/bin/env bash
# The README's demo: start airlockd with its embedded containerd in a
# throwaway state dir, summarize a page that carries a prompt injection,
# then ask a model-driven sub-agent about it (against the stand-in model on
# loopback: the demo stays offline), print the sanitized results, and leave
# nothing behind.
set -euo pipefail
bin=${1:?usage: demo.sh BIN_DIR}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/airlock-demo.XXXXXX)
# Searchable, not listable: ironclaw's user-namespaced sandboxes reach their
# rootfs below it as an unprivileged uid.
chmod 711 "$work"
pid=""
model=""
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		wait "$pid" || true
	fi
	if [ -n "$model" ] && kill -0 "$model" 2>/dev/null; then
		kill -TERM "$model"
		wait "$model" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

umask 077
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token"
export AIRLOCK_TOKEN_FILE=$work/token AIRLOCK_SOCKET=$work/airlock.sock

echo "== starting the stand-in model on loopback (OpenAI and Anthropic wire formats, TLS, a key)"
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/model.key"
"$bin/airlock-modelserver" --tls --ca-out "$work/model-ca.pem" --key-file "$work/model.key" \
	--ready-file "$work/model.url" 2>"$work/model.log" &
model=$!
for _ in $(seq 1 300); do
	[ -s "$work/model.url" ] && break
	kill -0 "$model" 2>/dev/null || { cat "$work/model.log" >&2; exit 1; }
	sleep 0.1
done
[ -s "$work/model.url" ] || { echo "the stand-in model did not start" >&2; exit 1; }
# The shipped profiles plus thinker, pointed at the stand-in.
mkdir -p "$work/policies"
cp "$here"/../policies/*.yaml "$work/policies/"
sed "s|upstream: https://127.0.0.1:8089|upstream: $(cat "$work/model.url")|" \
	"$here/../examples/agent/thinker.yaml" >"$work/policies/thinker.yaml"

echo "== starting airlockd (embedded containerd, state in $work/state)"
AIRLOCK_MODEL_KEY=$(cat "$work/model.key") "$bin/airlockd" --state-dir "$work/state" \
	--agent-binary "$bin/airlock-agent" --policy-dir "$work/policies" \
	--upstream-ca "$work/model-ca.pem" 2>"$work/airlockd.log" &
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
echo "== ask: a model-driven sub-agent reads it in the thinker sandbox"
echo "   (the model is reached only through the egress proxy, which adds its key;"
echo "    turns, tool calls and the verdict go to stderr, the sanitized answer to stdout)"
"$bin/airlock" ask --profile thinker --stream \
	--content "$here/testdata/injected-page.html" \
	"What is this page about? Quote its title."
echo "== to point thinker at a real model, change only the profile: upstream,"
echo "   the key's secretRef and model.name (docs/agent.md), and start airlockd"
echo "   with the key in its environment, e.g. AIRLOCK_MODEL_KEY=... bin/airlockd --policy-dir DIR"
echo "== done; shutting down"

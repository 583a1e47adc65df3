#!/usr/bin/env bash
# Runs make test three times in a row while airlock bench -c 4 loads the
# machine through a second airlockd of its own.
set -u
cd "$(dirname "$0")/.."
make build >/dev/null
L=${LOAD_DIR:-/tmp/airlock-load}; rm -rf $L; mkdir -p $L
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > $L/token; chmod 600 $L/token
bin/airlockd --state-dir $L/state --socket $L/a.sock --token-file $L/token \
  --egress-pool 10.215.0.0/16 --proxy-port 3140 --max-concurrent 8 > $L/airlockd.log 2>&1 &
AP=$!
for i in $(seq 1 300); do [ -S $L/a.sock ] && break; sleep 0.2; done
(
  n=0
  while [ ! -e $L/stop ]; do
    bin/airlock bench --socket $L/a.sock --token-file $L/token -c 4 -n 100 --no-baselines --profile ironclaw --warmup 0 > $L/bench.$n.log 2>&1 || echo "bench $n exit $?" >> $L/bench.errors
    n=$((n+1))
  done
  echo $n > $L/bench.rounds
) &
BP=$!
for run in 1 2 3; do
  start=$(date +%s)
  uptime > $L/load.$run.before
  make test > $L/maketest.$run.log 2>&1
  rc=$?
  end=$(date +%s)
  uptime > $L/load.$run.after
  echo "run $run: exit $rc in $((end-start)) s; load before: $(cat $L/load.$run.before); after: $(cat $L/load.$run.after)" | tee -a $L/summary
  [ $rc -ne 0 ] && break
done
touch $L/stop
wait $BP
kill -TERM $AP; wait $AP
echo "airlockd exit $?" >> $L/summary
echo "bench rounds: $(cat $L/bench.rounds)" >> $L/summary
echo "leftover netns: $(ip netns list 2>/dev/null | grep -c airlock)" >> $L/summary
echo "leftover mounts under $L: $(grep -c "$L" /proc/self/mountinfo)" >> $L/summary
# Shims of the last tasks exit a moment after airlockd; give them 30 s.
for i in $(seq 1 150); do pgrep -f containerd-shim >/dev/null || break; sleep 0.2; done
echo "leftover shims: $(pgrep -fc containerd-shim)" >> $L/summary
echo DONE >> $L/summary

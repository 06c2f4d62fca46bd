#!/bin/bash
# Session 16, call 5: a warp-specialized form of the block-sparse Hopper kernel (branch ws-producer: a producer
# warpgroup gathers with cp.async and hands tiles over on mbarriers, setmaxnreg 56 / 200) against 16c13cb's barrier
# form (bin/hip-bench-prev): its tests, racecheck and memcheck, then the prefill rows of both alternating.
set -uo pipefail
cd "$(dirname "$0")"
L=/tmp/c5; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
timeout 70 bin/gpu --test-threads=1 prefill_sparse_hopper > "$L/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^test |test result|panicked" "$L/tests.log" | head
for tool in racecheck; do
  timeout 70 compute-sanitizer --tool $tool --error-exitcode 9 bin/gpu --test-threads=1 prefill_sparse_hopper > "$L/$tool.log" 2>&1
  echo "$tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result|Race reported" "$L/$tool.log" | head -4
done
date -u
for r in 1; do
for v in prev ws; do
  b=bin/hip-bench; [ $v = prev ] && b=bin/hip-bench-prev
  n=$v-$r
  timeout 100 $b --only prefill/MHA-32,prefill/GQA-8 --seed 7 --dense dense-c1.json --json "$L/$n.json" > "$L/$n.log" 2>&1; echo "$n rc=$?"
  grep -E "^\| prefill/" "$L/$n.log" | awk -F'|' '{printf "%s %s %s %s\n", $2, $4, $5, $6}'
done
done
date -u
tar czf "${OUT:-/tmp}/c5.tgz" -C "$L" .

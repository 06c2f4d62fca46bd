#!/bin/bash
# Session 16, call 1: the block-sparse prefill attention on the Hopper pipeline (cuda/hopper/sparse.cuh) on the
# H200: its GPU tests against the CPU reference and the other prefill tests, memcheck and racecheck on it, then the
# prefill rows of the new kernel, of the classic kernel in the same binary (HIP_ATTN_SPARSE_KERNEL=classic) and of
# the previous build (436ca4d, bin/hip-bench-prev), alternating, beside dense cuDNN from the same call.
set -uo pipefail
cd "$(dirname "$0")"
L=/tmp/c1; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
timeout 200 bin/gpu --test-threads=1 prefill_sparse_hopper prefill_matches_cpu prefill_scan_tail prefill_bad_cu prefill_cu_seqlens_short nonfinite params_layout exact_ties > "$L/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^test |test result|panicked|left|right" "$L/tests.log" | head -30
date -u
for tool in memcheck racecheck; do
  timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 bin/gpu --test-threads=1 prefill_sparse_hopper > "$L/$tool.log" 2>&1
  echo "$tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result|Invalid|hazard" "$L/$tool.log" | head -5
done
date -u
timeout 150 python3 dense-baseline.py --prefill-only --json "$L/dense.json" > "$L/dense.log" 2>&1; echo "dense rc=$?"
grep cudnn "$L/dense.log"
date -u
for r in 1 2; do
  for v in prev classic new; do
    b=bin/hip-bench; [ $v = prev ] && b=bin/hip-bench-prev
    e=""; [ $v = classic ] && e="HIP_ATTN_SPARSE_KERNEL=classic"
    n=$v-$r
    env $e timeout 100 $b --only prefill/MHA-32,prefill/GQA-8 --seed 7 --dense "$L/dense.json" --json "$L/$n.json" > "$L/$n.log" 2>&1; echo "$n rc=$?"
    grep -E "^\| prefill" "$L/$n.log" | awk -F'|' '{printf "%s %s %s %s %s %s\n", $2, $3, $4, $5, $11, $13}'
  done
done
date -u
tar czf "${OUT:-/tmp}/c1.tgz" -C "$L" .

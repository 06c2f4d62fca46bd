#!/bin/bash
# Session 16, call 3: the block-sparse Hopper kernel with the key split at bq <= 32 and unmasked tiles: GPU tests,
# memcheck, racecheck per case of its test (call 2 found a hazard in hip_prefill_search in one of them), A/B
# against the classic kernel in the same binary, ncu at 8k.
set -uo pipefail
cd "$(dirname "$0")"
L=/tmp/c3; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
timeout 200 bin/gpu --test-threads=1 prefill_sparse_hopper prefill_matches_cpu prefill_scan_tail nonfinite > "$L/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^test |test result|panicked" "$L/tests.log" | head -30
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 bin/gpu --test-threads=1 prefill_sparse_hopper > "$L/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|test result" "$L/memcheck.log" | head -3
for c in 0 1 2 3 4 5 6 7; do
  HIP_ATTN_TEST_CASES=$c timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 bin/gpu --test-threads=1 prefill_sparse_hopper > "$L/racecheck-$c.log" 2>&1
  echo "racecheck case $c rc=$?"; grep -E "RACECHECK SUMMARY|Race reported" "$L/racecheck-$c.log" | head -3
done
date -u
for r in 1; do
  for v in classic new; do
    e=""; [ $v = classic ] && e="HIP_ATTN_SPARSE_KERNEL=classic"
    n=$v-$r
    env $e timeout 100 bin/hip-bench --only prefill/MHA-32,prefill/GQA-8 --seed 7 --dense dense-c1.json --json "$L/$n.json" > "$L/$n.log" 2>&1; echo "$n rc=$?"
    grep -E "^\| prefill/" "$L/$n.log" | awk -F'|' '{printf "%s %s %s %s\n", $2, $4, $5, $6}'
  done
done
date -u
timeout 60 ncu --clock-control none -k regex:'hip_prefill_attn_hopper_sparse' --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats \
    bin/hip-bench --only prefill/MHA-32/8k --seed 7 > "$L/ncu-8k.log" 2>&1
echo "ncu rc=$?"; grep -E "^  hip_prefill|Duration|L2 Cache Throughput|Compute \(SM\)|Warp Cycles Per Issued|Achieved Occupancy|Registers Per" "$L/ncu-8k.log" | head
date -u
tar czf "${OUT:-/tmp}/c3.tgz" -C "$L" .

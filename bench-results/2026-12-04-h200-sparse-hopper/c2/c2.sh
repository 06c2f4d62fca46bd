#!/bin/bash
# Session 16, call 2: the block-sparse Hopper kernel without warp specialization (every thread gathers, one CTA
# barrier per tile): GPU tests, sanitizers, A/B against the classic kernel in the same binary, ncu at 8k and 128k.
set -uo pipefail
cd "$(dirname "$0")"
L=/tmp/c2; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
timeout 200 bin/gpu --test-threads=1 prefill_sparse_hopper prefill_matches_cpu prefill_scan_tail nonfinite prefill_bad_cu > "$L/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^test |test result|panicked" "$L/tests.log" | head -30
for tool in memcheck racecheck; do
  timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 bin/gpu --test-threads=1 prefill_sparse_hopper > "$L/$tool.log" 2>&1
  echo "$tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result|Invalid|hazard" "$L/$tool.log" | head -5
done
date -u
for r in 1 2; do
  for v in classic new; do
    e=""; [ $v = classic ] && e="HIP_ATTN_SPARSE_KERNEL=classic"
    n=$v-$r
    env $e timeout 100 bin/hip-bench --only prefill/MHA-32,prefill/GQA-8 --seed 7 --dense dense-c1.json --json "$L/$n.json" > "$L/$n.log" 2>&1; echo "$n rc=$?"
    grep -E "^\| prefill" "$L/$n.log" | awk -F'|' '{printf "%s %s %s %s %s %s\n", $2, $3, $4, $5, $11, $13}'
  done
done
date -u
for T in 8k 128k; do
timeout 120 ncu --clock-control none -k regex:'hip_prefill_attn' --launch-skip 2 --launch-count 2 \
    --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
    bin/hip-bench --only prefill/MHA-32/$T --seed 7 > "$L/ncu-$T.log" 2>&1
echo "ncu $T rc=$?"; grep -E "^  hip_prefill|Duration|L2 Cache Throughput|DRAM Throughput|Compute \(SM\)|Warp Cycles Per Issued|Achieved Occupancy|Registers Per|Issued Ipc|Mem Busy|Max Bandwidth" "$L/ncu-$T.log" | head -40
done
date -u
tar czf "${OUT:-/tmp}/c2.tgz" -C "$L" .

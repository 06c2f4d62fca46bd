#!/bin/bash
# Session 16, call 4: the final build (block-sparse Hopper kernel with the key split; the search's prefix-sum
# totals 16-byte aligned): the GPU tests of every prefill kernel but the dense ones (unchanged), racecheck on the
# case that showed the search's hazard and on the sparse and FP8 tests, memcheck, then the prefill rows of the
# previous build (436ca4d) and this one, with and without --fp8-search, beside dense from call 1, and Nsight Compute
# on the new kernel at 128k.
set -uo pipefail
cd "$(dirname "$0")"
L=/tmp/c4; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
timeout 290 bin/gpu --test-threads=1 prefill_sparse_hopper prefill_matches_cpu prefill_scan_tail prefill_fp8_search prefill_128k prefill_bad_cu prefill_cu_seqlens_short deterministic concurrent nonfinite exact_ties params_layout > "$L/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^test |test result|panicked" "$L/tests.log" | head -30
date -u
HIP_ATTN_TEST_CASES=4 timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 bin/gpu --test-threads=1 prefill_sparse_hopper > "$L/racecheck-4.log" 2>&1
echo "racecheck case 4 rc=$?"; grep -E "RACECHECK SUMMARY|Race reported" "$L/racecheck-4.log" | head -3
for tool in racecheck memcheck; do
  timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 bin/gpu --test-threads=1 prefill_sparse_hopper prefill_fp8_search > "$L/$tool.log" 2>&1
  echo "$tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result|Race reported" "$L/$tool.log" | head -4
done
date -u
for v in prev new; do
  b=bin/hip-bench; [ $v = prev ] && b=bin/hip-bench-prev
  for f in "" "--fp8-search"; do
    n=$v${f:+-fp8}
    timeout 100 $b --only prefill/MHA-32,prefill/GQA-8 --seed 7 $f --dense dense-c1.json --json "$L/$n.json" > "$L/$n.log" 2>&1; echo "$n rc=$?"
    grep -E "^\| prefill/" "$L/$n.log" | awk -F'|' '{printf "%s %s %s %s\n", $2, $4, $5, $6}'
  done
done
date -u
timeout 60 ncu --clock-control none -k regex:'hip_prefill_attn_hopper_sparse' --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
    bin/hip-bench --only prefill/MHA-32/128k --seed 7 > "$L/ncu-128k.log" 2>&1
echo "ncu rc=$?"; grep -E "^  hip_prefill|Duration|L2 Cache Throughput|DRAM Throughput|Compute \(SM\)|Warp Cycles Per Issued|Achieved Occupancy|Registers Per|L2 Hit|Mem Busy" "$L/ncu-128k.log" | head -12
date -u
tar czf "${OUT:-/tmp}/c4.tgz" -C "$L" .

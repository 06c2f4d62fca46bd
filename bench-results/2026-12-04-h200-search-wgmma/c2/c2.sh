#!/bin/bash
# Session 14, call 2: sanitizers on the wgmma-scored prefill search, and its Nsight Compute profile beside main's.
set -uo pipefail
cd "$(dirname "$0")"
L=${OUT:-$PWD/out}/c2; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
for tool in memcheck racecheck; do
  timeout 170 compute-sanitizer --tool $tool --error-exitcode 9 bin/gpu --test-threads=1 prefill_matches_cpu_reference > "$L/san-$tool.log" 2>&1
  echo "$tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result|hazard" "$L/san-$tool.log" | head -5
  date -u
done
for v in head main; do
  b=bin/hip-bench; [ $v = main ] && b=bin/hip-bench-main
  timeout 100 ncu --clock-control none -k regex:hip_prefill_search --launch-skip 2 --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --section InstructionStats \
    $b --only prefill/MHA-32/128k --seed 7 > "$L/ncu-$v.log" 2>&1
  echo "ncu $v rc=$?"
  grep -E "Duration|Memory Throughput|L2 Cache Throughput|Compute \(SM\)|Issue Slots Busy|Warp Cycles Per Issued|Achieved Occupancy|Registers Per|Executed Instructions  |Stall" "$L/ncu-$v.log" | head -20
  date -u
done

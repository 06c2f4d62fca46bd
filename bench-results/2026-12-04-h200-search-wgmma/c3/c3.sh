#!/bin/bash
# Session 14, call 3: row-contiguous gathers (v2, head) against the first wgmma search (wg1) and main 98a19d7.
set -uo pipefail
cd "$(dirname "$0")"
L=${OUT:-$PWD/out}/c3; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
timeout 150 bin/gpu --test-threads=1 prefill exact_ties deterministic nonfinite > "$L/tests.log" 2>&1
echo "tests rc=$?"; grep -E "test result|panicked|FAILED|differ" "$L/tests.log" | head -10
date -u
OUT=$L/ab VARIANTS="main wg1 head" ONLY=prefill/MHA-32,prefill/GQA-8 ROUNDS=2 timeout 200 ./ab.sh > "$L/ab-prefill.log" 2>&1; echo "ab rc=$?"; cat "$L/ab-prefill.log"
date -u
timeout 60 ncu --clock-control none -k regex:hip_prefill_search --launch-skip 2 --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section InstructionStats --section MemoryWorkloadAnalysis \
    bin/hip-bench --only prefill/MHA-32/128k --seed 7 > "$L/ncu-head.log" 2>&1
echo "ncu rc=$?"; grep -E "Duration|L2 Cache Throughput|Compute \(SM\)|Warp Cycles Per Issued|Executed Instructions  |Mem Busy|Max Bandwidth|L2 Hit" "$L/ncu-head.log" | head -12
date -u

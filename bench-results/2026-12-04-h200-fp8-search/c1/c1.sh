#!/bin/bash
# Session 15, call 1: the FP8-scored prefill search (branch fp8-wg) on the H200: its GPU tests against the CPU
# reference, the sanitizers on them, then the prefill rows with and without --fp8-search in one process each,
# alternating, and the search kernel under Nsight Compute at 128k with the flag.
set -uo pipefail
cd "$(dirname "$0")"
L=${OUT:-$PWD/out}/c1; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
timeout 200 bin/gpu --test-threads=1 --nocapture prefill_fp8_search exact_ties prefill_matches_cpu > "$L/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^test |fp8|test result" "$L/tests.log" | head -40
date -u
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 bin/gpu --test-threads=1 prefill_fp8_search > "$L/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|test result|Invalid" "$L/memcheck.log" | head -5
timeout 150 compute-sanitizer --tool racecheck --error-exitcode 9 bin/gpu --test-threads=1 prefill_fp8_search > "$L/racecheck.log" 2>&1
echo "racecheck rc=$?"; grep -E "RACECHECK SUMMARY|test result|hazard" "$L/racecheck.log" | head -5
date -u
for r in 1 2; do
  timeout 100 bin/hip-bench --only prefill/MHA-32,prefill/GQA-8 --seed 7 --json "$L/plain$r.json" > "$L/plain$r.log" 2>&1; echo "plain$r rc=$?"
  grep -E "^\| prefill" "$L/plain$r.log"
  timeout 100 bin/hip-bench --only prefill/MHA-32,prefill/GQA-8 --seed 7 --fp8-search --json "$L/fp8$r.json" > "$L/fp8$r.log" 2>&1; echo "fp8$r rc=$?"
  grep -E "^\| prefill" "$L/fp8$r.log"
done
date -u
timeout 100 ncu --clock-control none -k regex:'hip_prefill_(search|k8)' --launch-skip 6 --launch-count 3 \
    --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats \
    bin/hip-bench --only prefill/MHA-32/128k --seed 7 --fp8-search > "$L/ncu-128k.log" 2>&1
echo "ncu rc=$?"; grep -E "hip_prefill|Duration|L2 Cache Throughput|DRAM Throughput|Compute \(SM\)|Warp Cycles Per Issued|Achieved Occupancy|Registers Per" "$L/ncu-128k.log" | head -30
date -u

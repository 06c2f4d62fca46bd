#!/bin/bash
# Session 14, call 6: 32-column tiles in 4 stages (v3, branch search-wg32) against 8e556af (64 columns, 2 stages) and
# main 98a19d7; then every GPU test and the prefill sanitizers on v3.
set -uo pipefail
cd "$(dirname "$0")"
L=${OUT:-$PWD/out}/c6; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
OUT=$L/ab VARIANTS="main head v3" ONLY=prefill/MHA-32,prefill/GQA-8 ROUNDS=2 timeout 150 ./ab.sh > "$L/ab-prefill.log" 2>&1; echo "ab rc=$?"; cat "$L/ab-prefill.log"
date -u
timeout 400 bin/gpu-v3 --test-threads=1 > "$L/tests-v3.log" 2>&1
echo "tests rc=$?"; grep -E "^test .*(FAILED|ok)$|test result|panicked" "$L/tests-v3.log" | tail -32
date -u
for tool in memcheck racecheck; do
  timeout 45 compute-sanitizer --tool $tool --error-exitcode 9 bin/gpu-v3 --test-threads=1 prefill_matches_cpu_reference > "$L/san-$tool.log" 2>&1
  echo "$tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result" "$L/san-$tool.log" | head -3
done
date -u

#!/bin/bash
# Session 14, call 4: every GPU test, the fuzz and the examples on the build with the wgmma-scored prefill search
# (row-contiguous gathers), then memcheck and racecheck on its prefill tests.
set -uo pipefail
cd "$(dirname "$0")"
export OUT=${OUT:-$PWD/out}/c4; mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
STEP_TIMEOUT=420 ./run.sh quick 2>&1 | tail -25
date -u
for tool in memcheck racecheck; do
  timeout 80 compute-sanitizer --tool $tool --error-exitcode 9 bin/gpu --test-threads=1 prefill_matches_cpu_reference prefill_scan_tail > "$OUT/san-$tool.log" 2>&1
  echo "$tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result" "$OUT/san-$tool.log" | head -4
done
date -u

#!/bin/bash
# Session 15, call 4: the fold split over all four warps when a pass has at most 32 rows (both wgmma scorings) and
# the FP8 key row as a base plus a stride: GPU tests and sanitizers on the new build, then the prefill rows of the
# previous build (868416b, bin/hip-bench-prev) and the new one alternating, with and without --fp8-search.
set -uo pipefail
cd "$(dirname "$0")"
L=${OUT:-$PWD/out}/c4; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
timeout 300 bin/gpu --test-threads=1 --nocapture prefill_fp8_search exact_ties prefill_matches_cpu prefill_scan_tail prefill_128k > "$L/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^test |test result" "$L/tests.log" | head -30
for tool in memcheck racecheck; do
  timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 bin/gpu --test-threads=1 prefill_fp8_search prefill_matches_cpu > "$L/$tool.log" 2>&1
  echo "$tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result" "$L/$tool.log" | head -3
done
date -u
for r in 1 2; do
  for v in prev new; do
    b=bin/hip-bench; [ $v = prev ] && b=bin/hip-bench-prev
    for f in "" "--fp8-search"; do
      n=$v${f:+-fp8}-$r
      timeout 100 $b --only prefill/MHA-32,prefill/GQA-8 --seed 7 $f --json "$L/$n.json" > "$L/$n.log" 2>&1; echo "$n rc=$?"
      grep -E "^\| prefill" "$L/$n.log" | awk -F'|' '{printf "%s %s %s %s\n", $3, $4, $5, $11}'
    done
  done
done
date -u

#!/bin/bash
# Session 14, call 1: the wgmma-scored prefill search (branch search-wg) against main 98a19d7.
set -uo pipefail
cd "$(dirname "$0")"
L=${OUT:-$PWD/out}/c1; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > "$L/gpu.txt" 2>&1; cat "$L/gpu.txt"
date -u
timeout 170 bin/gpu --test-threads=1 prefill exact_ties deterministic nonfinite > "$L/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^test |test result|panicked|differ" "$L/tests.log" | head -40
date -u
OUT=$L/ab VARIANTS="main head" ONLY=prefill ROUNDS=2 timeout 200 ./ab.sh > "$L/ab-prefill.log" 2>&1; echo "ab rc=$?"; cat "$L/ab-prefill.log"
date -u
OUT=$L/abd VARIANTS="head main" ONLY=decode-cached/MHA-32,decode-search/MHA-32 ROUNDS=1 timeout 90 ./ab.sh > "$L/ab-decode.log" 2>&1; echo "abd rc=$?"; cat "$L/ab-decode.log"
date -u
OUT=$L timeout 90 bash floors/run.sh > "$L/floors-run.log" 2>&1; echo "floors rc=$?"; grep -v "^#" "$L/floors-run.log" | tail -20; grep "^#" "$L/floors-run.log" | head -20
date -u

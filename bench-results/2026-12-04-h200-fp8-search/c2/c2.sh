#!/bin/bash
# Session 15, call 2: the committed build of the FP8-scored search (280cb5d, the parameter block's new fields last):
# its GPU tests, the parameter layout and the default prefill test again, memcheck on the FP8 test, then dense
# prefill and the prefill rows with and without --fp8-search beside it, all in this one call.
set -uo pipefail
cd "$(dirname "$0")"
L=${OUT:-$PWD/out}/c2; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
timeout 200 bin/gpu --test-threads=1 --nocapture prefill_fp8_search exact_ties prefill_matches_cpu params_layout prefill_scan_tail > "$L/tests.log" 2>&1
echo "tests rc=$?"; grep -E "^test |fp8 search|test result" "$L/tests.log" | head -30
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 bin/gpu --test-threads=1 prefill_fp8_search > "$L/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|test result" "$L/memcheck.log" | head -3
date -u
timeout 150 python3 dense-baseline.py --prefill-only --json "$L/dense.json" > "$L/dense.log" 2>&1; echo "dense rc=$?"; tail -8 "$L/dense.log"
date -u
timeout 100 bin/hip-bench --only prefill/MHA-32,prefill/GQA-8 --seed 7 --dense "$L/dense.json" --json "$L/plain.json" > "$L/plain.log" 2>&1; echo "plain rc=$?"
grep -E "^\| prefill" "$L/plain.log"
timeout 100 bin/hip-bench --only prefill/MHA-32,prefill/GQA-8 --seed 7 --fp8-search --dense "$L/dense.json" --json "$L/fp8.json" > "$L/fp8.log" 2>&1; echo "fp8 rc=$?"
grep -E "^\| prefill" "$L/fp8.log"; sed -n '/^### Dense attention/,$p' "$L/fp8.log" | head -20
date -u

#!/usr/bin/env bash
# Call w5 (2026-12-04 session 11): head (ea9af48, w4's) under racecheck; then dense decode once and head's decode
# table beside it in the same call.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
TO=80 t racecheck $S --tool racecheck --racecheck-report hazard --racecheck-detect-level warn --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups
TO=60 t dense python3 dense-baseline.py --decode-only --json $L/dense.json
TO=80 t bench-head bin/hip-bench --only decode-search,decode-cached --dense $L/dense.json --json $L/bench-head.json
sed -n '/^### Dense attention/,$p' $L/bench-head.log | grep -E "graph" | awk -F'|' '{print $2 "|" $4 "|" $5 "|" $6 "|" $8}' | head -14
cd $OUT && tar czf logs.tgz l && rm -rf l

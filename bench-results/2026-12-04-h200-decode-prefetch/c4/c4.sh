#!/usr/bin/env bash
# Call 4 (2026-12-04 session 9): the decode table of head (54c2ad0) beside dense decode in the same call
# (dense-baseline.py --decode-only, then hip-bench --dense), and racecheck / synccheck on the step kernel's reuse
# path (decode_head_groups, refresh 2), whose record reads changed.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
TO=60 t dense python3 dense-baseline.py --decode-only --json $L/dense.json
TO=80 t bench-dec bin/hip-bench --only decode-search,decode-cached --dense $L/dense.json --json $L/bench-dec.json
grep -E "seed|^\| decode" $L/bench-dec.log | head -30
sed -n '/^### Dense attention/,$p' $L/bench-dec.log | grep -E "graph" | head -20
TO=90 t racecheck $S --tool racecheck --racecheck-report hazard --racecheck-detect-level warn --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups
TO=40 t synccheck $S --tool synccheck --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups
cd $OUT && tar czf logs.tgz l && rm -rf l

#!/usr/bin/env bash
# Call 6 (2026-12-04 session 9): head = the step kernel staging a share's second trip in shared memory (cp.async
# while the first trip's loads are in flight); p = main e615474 (partials pushed into rank 0). A/B of the decode
# rows; dense decode once, then the decode table of both builds beside it; racecheck, memcheck and synccheck on the
# step kernel's paths; run.sh quick (every GPU test, the fuzz, the examples) on head.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
t0=$(date +%s)
OUT=$L/ab VARIANTS="p head" ONLY=decode-search,decode-cached ROUNDS=2 timeout 90 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt | grep -E "==|MHA-32"
TO=30 t dense python3 dense-baseline.py --decode-only --json $L/dense.json
TO=30 t bench-head bin/hip-bench --only decode-search,decode-cached --dense $L/dense.json --json $L/bench-head.json
TO=30 t bench-p bin/hip-bench-p --only decode-search,decode-cached --dense $L/dense.json --json $L/bench-p.json
for v in head p; do echo "-- $v"; sed -n '/^### Dense attention/,$p' $L/bench-$v.log | grep -E "graph" | awk -F'|' '{print $2 "|" $4 "|" $7 "|" $8}' | head -14; done
TO=40 t racecheck $S --tool racecheck --racecheck-report hazard --racecheck-detect-level warn --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups
TO=40 t memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster decode_search_abort decode_head_groups decode_mask_state
TO=30 t synccheck $S --tool synccheck --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups decode_cluster decode_search_abort
t0=$(date +%s); OUT=$L/quick STEP_TIMEOUT=225 timeout 235 ./run.sh quick > $L/quick.txt 2>&1; echo "== quick rc=$? $(( $(date +%s)-t0 ))s"; grep -E "PASS|FAIL" $L/quick.txt | tail -12; grep -h "test result" $L/quick/gpu-tests.log
cd $OUT && tar czf logs.tgz l && rm -rf l

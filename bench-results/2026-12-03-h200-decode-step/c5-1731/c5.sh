#!/usr/bin/env bash
# Call 5 (2026-12-03 session 8): every GPU test, the fuzz test and the examples on the build of main e957dba (the
# one-kernel cluster decode step, batch-invariant decode back on the attention kernels); racecheck and synccheck on
# decode_head_groups (refresh 2: the step kernel's reuse path, and the shared-mask cluster search); then branch
# dec-nobar (e1: a reused record's step written after the step kernel's last cluster barrier) against head.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
OUT=$L/quick STEP_TIMEOUT=280 timeout 300 ./run.sh quick > $L/quick.txt 2>&1; echo "== quick rc=$?"; grep -E "PASS|FAIL" $L/quick.txt | tail -10; grep -h "test result" $L/quick/gpu-tests.log
TO=70 t racecheck $S --tool racecheck --racecheck-report hazard --racecheck-detect-level warn --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups
TO=30 t synccheck $S --tool synccheck --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups
OUT=$L/ab VARIANTS="head e1" ONLY=decode-cached ROUNDS=2 timeout 40 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$?"; grep -E "==|graph" $L/ab.txt
cd $OUT && tar czf logs.tgz l && rm -rf l

#!/usr/bin/env bash
# Call p3 (2026-12-04 session 12): the selection with interpolation probes and mask placement (head) against main
# (2cfdca2): the exact-tie test, A/B of the searching decode rows, and ncu source counters of head's step kernel.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
TO=120 t ties bin/gpu --test-threads=1 --nocapture exact_ties
t0=$(date +%s)
OUT=$L/ab VARIANTS="main head" ONLY=decode-search ROUNDS=2 timeout 150 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt | cut -c1-90
S="--section InstructionStats --section SourceCounters --section WarpStateStats --section SpeedOfLight"
timeout 120 ncu --clock-control none -k 'regex:^hip_decode_step_wide$' --launch-skip 40 --launch-count 1 $S --import-source no --export $OUT/step-head bin/hip-bench --only decode-search/MHA-32/128k --seed 7 > $L/ncu.log 2>&1; echo "== ncu rc=$?"
ncu --import $OUT/step-head.ncu-rep --page source --print-source sass --csv > $OUT/source-step-head.csv 2>&1; gzip -f $OUT/source-step-head.csv; rm -f $OUT/step-head.ncu-rep
cd $OUT && tar czf logs.tgz l && rm -rf l

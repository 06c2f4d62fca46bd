#!/usr/bin/env bash
# Call v4 (2026-12-04 session 10): head = the step kernel keeping its rounds in registers where the V stage holds
# fewer than 8 (head_dim 64, large k; the same code as main there), plus decode_matches' new case whose shares take
# two V-stage trips (head_dim 128, 16/4 heads, masks per q head, k 768). Decode GPU tests; memcheck and synccheck on
# decode_matches.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
TO=110 t tests bin/gpu --test-threads=1 --nocapture decode_matches decode_cluster decode_head_groups decode_with_one_split
grep -E "k 768|k 2048" $L/tests.log | head -4
TO=80 t memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 decode_matches
TO=60 t synccheck $S --tool synccheck --error-exitcode 1 bin/gpu --test-threads=1 decode_matches
cd $OUT && tar czf logs.tgz l && rm -rf l

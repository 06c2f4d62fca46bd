#!/usr/bin/env bash
# Call 5 (2026-12-04 session 9): head = the step kernel's partials pushed into rank 0's shared memory (one cluster
# barrier at the end instead of two, rank 0 combining from its own shared memory; the others leave after
# arriving), f1 = main 54c2ad0. A/B of the decode rows; decode GPU tests, the GPU fuzz; memcheck, racecheck and
# synccheck on the step kernel's paths (reuse, search, a bad page, bad input).
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
t0=$(date +%s)
OUT=$L/ab VARIANTS="f1 head" ONLY=decode-search,decode-cached ROUNDS=2 timeout 100 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt
TO=150 t tests bin/gpu --test-threads=1 decode_matches decode_with_one_split decode_128k_cache decode_cluster decode_head_groups decode_search_abort decode_mask_state cuda_graph_replays_decode nonfinite sharded_decode
TO=30 t fuzz bin/gpu_fuzz; grep -h "gpu_fuzz:" $L/fuzz.log | tail -1
TO=90 t memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster decode_search_abort decode_head_groups decode_mask_state
TO=30 t memcheck-fuzz $S --tool memcheck --error-exitcode 1 bin/gpu_fuzz
TO=80 t racecheck $S --tool racecheck --racecheck-report hazard --racecheck-detect-level warn --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups
TO=60 t synccheck $S --tool synccheck --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups decode_cluster decode_search_abort
cd $OUT && tar czf logs.tgz l && rm -rf l

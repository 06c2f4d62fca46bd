#!/usr/bin/env bash
# Call v1 (2026-12-04 session 10): head = the step kernel's value rows through shared memory (cp.async), key rows in
# registers, 11 rounds per trip, so a k=512 share is one trip; main = main dfc8210's kernels. A/B of the MHA-32
# decode rows; decode GPU tests, the GPU fuzz; memcheck, racecheck and synccheck on the step kernel's paths.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
t0=$(date +%s)
OUT=$L/ab VARIANTS="main head" ONLY=decode-search/MHA-32,decode-cached/MHA-32 ROUNDS=3 timeout 120 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt | cut -c1-80
TO=150 t tests bin/gpu --test-threads=1 decode_matches decode_with_one_split decode_128k_cache decode_cluster decode_head_groups decode_search_abort decode_mask_state cuda_graph_replays_decode nonfinite sharded_decode
TO=30 t fuzz bin/gpu_fuzz; grep -h "gpu_fuzz:" $L/fuzz.log | tail -1
TO=90 t memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 decode_matches decode_cluster decode_search_abort decode_head_groups decode_mask_state
TO=30 t memcheck-fuzz $S --tool memcheck --error-exitcode 1 bin/gpu_fuzz
TO=80 t racecheck $S --tool racecheck --racecheck-report hazard --racecheck-detect-level warn --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups
TO=60 t synccheck $S --tool synccheck --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups decode_cluster decode_search_abort
cd $OUT && tar czf logs.tgz l && rm -rf l

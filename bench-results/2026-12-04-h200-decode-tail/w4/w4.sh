#!/usr/bin/env bash
# Call w4 (2026-12-04 session 11): A/B of main (58c496a's kernels, w2's head) / head (ea9af48: the step kernel's
# epilogue and combine compute each weight once; every decode attention kernel's epilogue too), every
# decode-cached row and MHA-32's decode-search rows, three rounds; head's decode GPU tests, the GPU fuzz, memcheck
# and synccheck.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
t0=$(date +%s)
OUT=$L/ab VARIANTS="main head" ONLY=decode-search/MHA-32,decode-cached ROUNDS=3 timeout 200 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt | cut -c1-90
TO=170 t tests bin/gpu --test-threads=1 decode_matches decode_with_one_split decode_128k_cache decode_cluster decode_head_groups decode_search_abort decode_mask_state cuda_graph_replays_decode nonfinite sharded_decode deterministic
TO=40 t fuzz bin/gpu_fuzz; grep -h "gpu_fuzz:" $L/fuzz.log | tail -1
TO=110 t memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 decode_matches decode_cluster decode_search_abort decode_head_groups decode_mask_state nonfinite
TO=80 t synccheck $S --tool synccheck --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups decode_cluster decode_search_abort nonfinite
cd $OUT && tar czf logs.tgz l && rm -rf l

#!/usr/bin/env bash
# Call 1 (2026-12-03 session 7): head = branch dec-fused (the cluster decode step in one kernel, hip_decode_step_wide),
# r4 = branch search-resolve4 6f6b226 (decode search derives key rows per group of 4 tiles), base = main 8f8cd62.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|SYNCCHECK|hazard|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
TO=140 t head-tests bin/gpu --test-threads=1 decode_matches decode_with_one_split decode_128k_cache decode_cluster decode_search_abort decode_mask_state cuda_graph_replays_decode deterministic nonfinite sharded_decode
TO=50 t head-memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster decode_search_abort
TO=50 t head-racecheck $S --tool racecheck --racecheck-report hazard --racecheck-detect-level warn --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster
TO=40 t head-synccheck $S --tool synccheck --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster
OUT=$L/ab VARIANTS="base head r4" ONLY=decode-search,decode-cached ROUNDS=2 timeout 130 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$?"; cat $L/ab.txt
TO=80 t r4-tests bin/gpu-r4 --test-threads=1 decode_matches decode_cluster decode_search_abort deterministic
OUT=$L/ab2 VARIANTS="base r4" ONLY=prefill/MHA-32 ROUNDS=2 timeout 70 ./ab.sh > $L/ab2.txt 2>&1; echo "== ab2 rc=$?"; cat $L/ab2.txt
cd $OUT && tar czf logs.tgz l && rm -rf l

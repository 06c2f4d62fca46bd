#!/usr/bin/env bash
# Call 3 (2026-12-03 session 8): head = dec-fused plus the cluster kernel chosen by mask (hip_decode_step_wide for
# masks of one q head, hip_decode_search_wide then the attention kernels for a shared GQA mask); base = main
# 8f8cd62; r4 = search-resolve4 6f6b226 (the decode search of head without the step kernel).
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|SYNCCHECK|hazard|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
OUT=$L/ab VARIANTS="base r4 head" ONLY=decode-search,decode-cached ROUNDS=2 timeout 130 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$?"; grep -E "==|graph" $L/ab.txt
TO=170 t head-tests bin/gpu --test-threads=1 decode_matches decode_with_one_split decode_128k_cache decode_cluster decode_head_groups decode_search_abort decode_mask_state cuda_graph_replays_decode deterministic nonfinite sharded_decode
TO=80 t head-memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster decode_search_abort decode_head_groups
TO=90 t head-racecheck $S --tool racecheck --racecheck-report hazard --racecheck-detect-level warn --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster
TO=40 t head-synccheck $S --tool synccheck --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster
TO=40 t dense python3 dense-baseline.py --decode-only --json $L/dense.json
TO=45 t bench-dec bin/hip-bench --only decode-search,decode-cached --dense $L/dense.json --json $L/bench-dec.json
sed -n '/^### Dense attention/,$p' $L/bench-dec.log | grep -E "graph" | head -40
cd $OUT && tar czf logs.tgz l && rm -rf l

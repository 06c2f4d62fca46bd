#!/usr/bin/env bash
# Call 2 (2026-12-03 session 7): head = branch dec-fused (a0cec7d plus the byte count of hip-bench) (the cluster decode step in one kernel, a shared
# GQA mask's heads 4 at a time, merged with search-resolve4), base = main 8f8cd62.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|SYNCCHECK|hazard|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
OUT=$L/ab VARIANTS="base head" ONLY=decode-search,decode-cached ROUNDS=2 timeout 90 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$?"; grep -E "==|GQA|graph" $L/ab.txt
TO=150 t head-tests bin/gpu --test-threads=1 decode_matches decode_with_one_split decode_128k_cache decode_cluster decode_step_kernel decode_search_abort decode_mask_state cuda_graph_replays_decode deterministic nonfinite sharded_decode
TO=50 t head-memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster decode_search_abort decode_step_kernel
TO=90 t head-racecheck $S --tool racecheck --racecheck-report hazard --racecheck-detect-level warn --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster
TO=45 t head-synccheck $S --tool synccheck --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster
TO=50 t dense python3 dense-baseline.py --decode-only --json $L/dense.json
TO=60 t bench-dec bin/hip-bench --only decode-search,decode-cached --dense $L/dense.json --json $L/bench-dec.json
sed -n '/^### Dense attention/,$p' $L/bench-dec.log | grep -E "decode" | head -40
cd $OUT && tar czf logs.tgz l && rm -rf l

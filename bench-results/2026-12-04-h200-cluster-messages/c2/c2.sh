#!/usr/bin/env bash
# Call c2 (2026-12-04 session 13): as c1, head with the exchange as messages straight into the keys (a "ready"
# message after each reset instead of a cluster arrive; no merge, no receive buffer).
# A/B of the decode rows (two rounds) and prefill MHA-32 (one) against main; then the decode and prefill GPU tests
# (k = 2048 among them), the exact-tie test, the GPU fuzz, memcheck and racecheck on the cluster kernels.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
TO=200 t tests bin/gpu --test-threads=1 exact_ties decode_matches decode_cluster decode_search_abort decode_head_groups decode_128k_cache decode_bad_page cuda_graph_replays_decode prefill_matches deterministic
t0=$(date +%s)
OUT=$L/ab VARIANTS="main head" ONLY=decode-search,decode-cached ROUNDS=2 timeout 150 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt | cut -c1-90
t0=$(date +%s)
OUT=$L/abp VARIANTS="main head" ONLY=prefill/MHA-32 ROUNDS=1 timeout 100 ./ab.sh > $L/abp.txt 2>&1; echo "== abp rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|prefill" $L/abp.txt | cut -c1-90
TO=30 t fuzz bin/gpu_fuzz; grep -h "gpu_fuzz:" $L/fuzz.log | tail -1
TO=100 t memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster decode_search_abort exact_ties
TO=80 t racecheck $S --tool racecheck --racecheck-report hazard --racecheck-detect-level warn --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups decode_search_abort
cd $OUT && tar czf logs.tgz l && rm -rf l

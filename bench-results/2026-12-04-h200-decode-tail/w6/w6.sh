#!/usr/bin/env bash
# Call w6 (2026-12-04 session 11): A/B of main (ea9af48's kernels) / head (every CTA of the decode search's cluster
# selects from all-gathered keys: one cluster barrier per iteration), decode-search and decode-cached rows, two
# rounds; head's decode GPU tests, the GPU fuzz, memcheck, synccheck, racecheck; dense decode and head's table.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
t0=$(date +%s)
OUT=$L/ab VARIANTS="main head" ONLY=decode-search,decode-cached ROUNDS=2 timeout 150 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt | cut -c1-90
TO=150 t tests bin/gpu --test-threads=1 decode_matches decode_with_one_split decode_128k_cache decode_cluster decode_head_groups decode_search_abort decode_mask_state cuda_graph_replays_decode nonfinite sharded_decode deterministic
TO=30 t fuzz bin/gpu_fuzz; grep -h "gpu_fuzz:" $L/fuzz.log | tail -1
TO=70 t memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 decode_matches decode_cluster decode_search_abort decode_head_groups
TO=40 t synccheck $S --tool synccheck --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster decode_search_abort decode_head_groups
TO=40 t racecheck $S --tool racecheck --racecheck-report hazard --racecheck-detect-level warn --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups
TO=30 t dense python3 dense-baseline.py --decode-only --json $L/dense.json
TO=40 t bench-head bin/hip-bench --only decode-search,decode-cached --dense $L/dense.json --json $L/bench-head.json
sed -n '/^### Dense attention/,$p' $L/bench-head.log | grep -E "graph" | awk -F'|' '{print $2 "|" $4 "|" $5 "|" $6 "|" $8}' | head -14
cd $OUT && tar czf logs.tgz l && rm -rf l

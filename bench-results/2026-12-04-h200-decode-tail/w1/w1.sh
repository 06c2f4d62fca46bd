#!/usr/bin/env bash
# Call w1 (2026-12-04 session 11): A/B of main 2b6bca1 / q (the step kernel's query load overlaps its page-table
# reads; Tk from the search) / qb (+ a reused record skips the list's barrier, the refresh division before the
# record check's barrier) / head (+ one CTA barrier for a split's verdicts and its key groups' stage), every
# decode-cached row and MHA-32's decode-search rows; then head's decode GPU tests.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
t0=$(date +%s)
OUT=$L/ab VARIANTS="main q qb head" ONLY=decode-search/MHA-32,decode-cached ROUNDS=2 timeout 330 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt | cut -c1-90
TO=170 t tests bin/gpu --test-threads=1 decode_matches decode_with_one_split decode_128k_cache decode_cluster decode_head_groups decode_search_abort decode_mask_state cuda_graph_replays_decode nonfinite sharded_decode deterministic
cd $OUT && tar czf logs.tgz l && rm -rf l

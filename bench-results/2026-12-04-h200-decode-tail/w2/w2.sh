#!/usr/bin/env bash
# Call w2 (2026-12-04 session 11): A/B of main 2b6bca1 / s0 (the step kernel alone takes its query as stored and
# scales it after the page-table reads; Tk from the search; a reused record skips the list's barrier; the refresh
# division before the record check's barrier: attention kernels byte-identical to main) / head (+ one CTA barrier
# for a split's verdicts and its key groups' stage, in every decode kernel), every decode-cached row and MHA-32's
# decode-search rows; then head's decode GPU tests and the GPU fuzz.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
t0=$(date +%s)
OUT=$L/ab VARIANTS="main s0 head" ONLY=decode-search/MHA-32,decode-cached ROUNDS=3 timeout 260 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt | cut -c1-90
TO=170 t tests bin/gpu --test-threads=1 decode_matches decode_with_one_split decode_128k_cache decode_cluster decode_head_groups decode_search_abort decode_mask_state cuda_graph_replays_decode nonfinite sharded_decode deterministic
TO=40 t fuzz bin/gpu_fuzz; grep -h "gpu_fuzz:" $L/fuzz.log | tail -1
cd $OUT && tar czf logs.tgz l && rm -rf l

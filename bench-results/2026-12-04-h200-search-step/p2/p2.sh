#!/usr/bin/env bash
# Call p2 (2026-12-04 session 12): the selection by warp-wide bisection (head) against main (2cfdca2): the exact-tie
# test, the decode and prefill GPU tests against the CPU reference, then A/B of the decode rows and prefill MHA-32.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
TO=120 t ties bin/gpu --test-threads=1 --nocapture exact_ties
grep -q "test result: ok" $L/ties.log || { tail -30 $L/ties.log; cd $OUT && tar czf logs.tgz l; exit 1; }
TO=200 t tests bin/gpu --test-threads=1 decode_matches decode_cluster decode_search_abort decode_head_groups cuda_graph_replays_decode prefill_matches prefill_scan_tail deterministic
t0=$(date +%s)
OUT=$L/ab VARIANTS="main head" ONLY=decode-search,decode-cached ROUNDS=2 timeout 150 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt | cut -c1-90
t0=$(date +%s)
OUT=$L/abp VARIANTS="main head" ONLY=prefill/MHA-32 ROUNDS=1 timeout 200 ./ab.sh > $L/abp.txt 2>&1; echo "== abp rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|prefill" $L/abp.txt | cut -c1-90
cd $OUT && tar czf logs.tgz l && rm -rf l

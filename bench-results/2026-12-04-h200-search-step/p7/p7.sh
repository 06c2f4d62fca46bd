#!/usr/bin/env bash
# Call p7 (2026-12-04 session 12): head = main + the radix passes' matches issued before their atomics, against
# main (2cfdca2): A/B of the decode rows (two rounds) and prefill MHA-32 (one); where head's searching step at
# 128k is faster, the decode and prefill GPU tests, the exact-tie test, the GPU fuzz, memcheck and racecheck.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
t0=$(date +%s)
OUT=$L/ab VARIANTS="main head" ONLY=decode-search,decode-cached ROUNDS=2 timeout 150 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt | cut -c1-90
t0=$(date +%s)
OUT=$L/abp VARIANTS="main head" ONLY=prefill/MHA-32 ROUNDS=1 timeout 200 ./ab.sh > $L/abp.txt 2>&1; echo "== abp rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|prefill" $L/abp.txt | cut -c1-90
row() { awk -v a="$1" -v b="$2" '$0 ~ a {f=1} $0 ~ b {f=0} f && index($0, "search every step") && index($0, "MHA-32 | 128k"){print $0}' $L/ab.txt | head -1 | awk -F'|' '{print $4+0}'; }
m=$(row "== main round 1" "== head round 1"); h=$(row "== head round 1" "== main round 2"); echo "== main $m head $h"
awk -v m="$m" -v h="$h" 'BEGIN{exit !(h < m - 0.3)}' || { cd $OUT && tar czf logs.tgz l; exit 0; }
TO=200 t tests bin/gpu --test-threads=1 exact_ties decode_matches decode_cluster decode_search_abort decode_head_groups cuda_graph_replays_decode prefill_matches prefill_scan_tail deterministic
TO=30 t fuzz bin/gpu_fuzz; grep -h "gpu_fuzz:" $L/fuzz.log | tail -1
TO=90 t memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster decode_search_abort prefill_matches
TO=60 t racecheck $S --tool racecheck --racecheck-report hazard --racecheck-detect-level warn --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups
cd $OUT && tar czf logs.tgz l && rm -rf l

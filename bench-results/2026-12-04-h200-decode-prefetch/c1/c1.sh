#!/usr/bin/env bash
# Call 1 (2026-12-04 session 9): decode A/B. base = main 9809199; pf0 = the decode search issuing the record's
# reads (length, header, block list) at once; head = pf0 + L2 prefetch of the next trip's K/V rows in the decode
# attention loops (HIP_DPF 1); pf2 = the same two trips ahead. Then the decode GPU tests and the fuzz on head.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
t0=$(date +%s)
OUT=$L/ab VARIANTS="base pf0 head pf2" ONLY=decode-search,decode-cached ROUNDS=2 timeout 300 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt
TO=170 t head-tests bin/gpu --test-threads=1 decode_matches decode_with_one_split decode_128k_cache decode_cluster decode_head_groups decode_search_abort decode_mask_state cuda_graph_replays_decode deterministic nonfinite sharded_decode scan_decode
TO=90 t fuzz bin/gpu_fuzz
grep -h "gpu_fuzz:" $L/fuzz.log | tail -2
cd $OUT && tar czf logs.tgz l && rm -rf l

#!/usr/bin/env bash
# Call 2 (2026-12-03 session 6): head = branch search-resolve4 (the mask search derives each key column's row once
# per 4 tiles), dn = branch dec-nowait (cached decode steps whose attention does not wait for the search), base =
# main b01332b. A/B of the three in alternating rounds, GPU tests of both branches, memcheck.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|SYNCCHECK|hazard|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
OUT=$L/ab VARIANTS="base head dn" ONLY=prefill/MHA-32,prefill/GQA-8,decode-search,decode-cached ROUNDS=2 timeout 150 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$?"; cat $L/ab.txt
TO=130 t r4-tests bin/gpu --test-threads=1 prefill_matches prefill_scan_tail prefill_128k decode_matches decode_cluster decode_search_abort decode_bad_page nonfinite deterministic
TO=150 t dn-tests bin/gpu-dn --test-threads=1 decode_matches decode_with_one_split decode_record_spoiled decode_mask_state decode_bad_page decode_cluster cuda_graph_replays deterministic nonfinite
TO=40 t r4-memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 prefill_matches decode_cluster
TO=50 t dn-memcheck $S --tool memcheck --error-exitcode 1 bin/gpu-dn --test-threads=1 decode_matches decode_record_spoiled
cd $OUT && tar czf logs.tgz l && rm -rf l

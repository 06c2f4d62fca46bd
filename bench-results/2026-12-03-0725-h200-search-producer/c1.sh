#!/usr/bin/env bash
# Call 1 (2026-12-03 session 6): the mask search's key gathers as bulk copies from a producer warp (branch
# search-bulk; head = producer warp with cp.async and mbarriers, v1 = producer warp with bulk copies): GPU tests, A/B, sanitizers.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|SYNCCHECK|hazard|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
TO=120 t search-tests bin/gpu --test-threads=1 prefill_matches prefill_scan_tail prefill_128k decode_matches decode_cluster decode_search_abort decode_bad_page nonfinite deterministic scan_decode_matches
OUT=$L/ab VARIANTS="base head v1" ONLY=prefill/MHA-32,prefill/GQA-8/128k,decode-search ROUNDS=2 timeout 180 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$?"; cat $L/ab.txt
TO=50 t san-memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 prefill_matches decode_cluster prefill_scan_tail
N=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
TO=100 t ncu-search $N --clock-control none -k regex:^hip_prefill_search$ --launch-count 1 --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats bin/hip-bench --only prefill/MHA-32/128k --seed 7 --json /dev/null
grep -E "Duration|Throughput|Issue Slots Busy|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issued Warp" $L/ncu-search.log | head -20
TO=30 t hopper bin/gpu_hopper --test-threads=1
TO=50 t rest bin/gpu --test-threads=1 --skip prefill_matches --skip prefill_scan_tail --skip prefill_128k --skip decode_matches --skip decode_cluster --skip decode_search_abort --skip decode_bad_page --skip nonfinite --skip deterministic --skip scan_decode_matches
cd $OUT && tar czf logs.tgz l && rm -rf l

#!/usr/bin/env bash
# Call c3 (2026-12-04 session 13): head = c2's messages with a CTA barrier after the sends (c2's racecheck found the
# sends' reads of sm.todo racing select_branches' histogram zeroing). A/B against main (three rounds of decode,
# one of prefill), ncu of the cached step at 128k on both (c2 measured it 0.4 us slower on head), then the GPU
# tests, fuzz, memcheck and racecheck.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
t0=$(date +%s)
OUT=$L/ab VARIANTS="main head" ONLY=decode-search,decode-cached ROUNDS=3 timeout 150 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt | cut -c1-90
t0=$(date +%s)
OUT=$L/abp VARIANTS="main head" ONLY=prefill/MHA-32 ROUNDS=1 timeout 100 ./ab.sh > $L/abp.txt 2>&1; echo "== abp rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|prefill" $L/abp.txt | cut -c1-90
N=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
for v in main head; do b=bin/hip-bench-$v; [ $v = head ] && b=bin/hip-bench
  timeout 120 $N --clock-control none -k 'regex:^hip_decode_step_wide$' --launch-skip 40 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section InstructionStats --section LaunchStats --section Occupancy --section SchedulerStats $b --only decode-cached/MHA-32/128k --seed 7 > $L/ncu-$v.log 2>&1; echo "== ncu $v rc=$?"
  grep -E "Duration|Executed Instructions  |Warp Cycles Per Issued|Stall|Registers Per|Achieved Occupancy|Issued Ipc|No Eligible" $L/ncu-$v.log | head -14
done
TO=200 t tests bin/gpu --test-threads=1 exact_ties decode_matches decode_cluster decode_search_abort decode_head_groups decode_128k_cache decode_bad_page cuda_graph_replays_decode prefill_matches deterministic
TO=30 t fuzz bin/gpu_fuzz; grep -h "gpu_fuzz:" $L/fuzz.log | tail -1
TO=60 t memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 decode_cluster decode_search_abort exact_ties
TO=120 t racecheck $S --tool racecheck --racecheck-report hazard --racecheck-detect-level warn --error-exitcode 1 bin/gpu --test-threads=1 decode_head_groups decode_search_abort
cd $OUT && tar czf logs.tgz l && rm -rf l

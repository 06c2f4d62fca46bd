#!/usr/bin/env bash
# Call 2 (2026-12-04 session 9): head = the decode search's record reads at once (pf0) + the L2 prefetch a trip
# ahead only for shared GQA masks over more than two trips. A/B against base (main 9809199) and pf0; every GPU
# test and the examples (run.sh quick); memcheck on the decode tests of both changes; the GPU fuzz.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
t0=$(date +%s)
OUT=$L/ab VARIANTS="base pf0 head" ONLY=decode-search,decode-cached ROUNDS=2 timeout 150 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt
TO=30 t fuzz bin/gpu_fuzz; grep -h "gpu_fuzz:" $L/fuzz.log | tail -1
TO=120 t memcheck $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 decode_with_one_split decode_cluster decode_mask_state decode_head_groups
t0=$(date +%s); OUT=$L/quick STEP_TIMEOUT=250 timeout 270 ./run.sh quick > $L/quick.txt 2>&1; echo "== quick rc=$? $(( $(date +%s)-t0 ))s"; grep -E "PASS|FAIL" $L/quick.txt | tail -12; grep -h "test result" $L/quick/gpu-tests.log
cd $OUT && tar czf logs.tgz l && rm -rf l

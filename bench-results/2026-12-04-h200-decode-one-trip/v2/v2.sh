#!/usr/bin/env bash
# Call v2 (2026-12-04 session 10): the final build of branch step-one-trip (head; kernels byte-identical to v1's
# head) beside main dfc8210's kernels (main): dense decode once, then the decode table of both builds beside it in
# the same call; Nsight Compute of head's cached MHA-32 128k step kernel (caches warm, as c3 of the session before);
# run.sh quick (every GPU test, the fuzz, the CPU tests, the C, C++ and Go examples on the CUDA backend).
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
TO=60 t dense python3 dense-baseline.py --decode-only --json $L/dense.json
TO=80 t bench-head bin/hip-bench --only decode-search,decode-cached --dense $L/dense.json --json $L/bench-head.json
TO=80 t bench-main bin/hip-bench-main --only decode-search,decode-cached --dense $L/dense.json --json $L/bench-main.json
for v in head main; do echo "-- $v"; grep -E "^\| decode" $L/bench-$v.log | grep graph | awk -F'|' '{print $3 "|" $4 "|" $5 "|" $12}' | cut -c1-70; sed -n '/^### Dense attention/,$p' $L/bench-$v.log | grep -E "graph" | awk -F'|' '{print $2 "|" $4 "|" $7 "|" $8}' | head -14; done
only=decode-cached/MHA-32/128k; n=$(echo $only | tr '/' '-')
timeout 90 "$NCU" --clock-control none --cache-control none --kernel-name regex:hip_decode_step_wide --launch-skip 100 --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats \
    --section MemoryWorkloadAnalysis --section SchedulerStats \
    bin/hip-bench --only $only --budget 20 > $L/ncu-warm-$n.log 2>&1
echo "== ncu rc=$?"
grep -E "Duration|Throughput|Achieved Occupancy|L2 Hit|Registers|Warp Cycles Per Issued|Stall" $L/ncu-warm-$n.log | head -16
t0=$(date +%s); OUT=$L/quick STEP_TIMEOUT=225 timeout 235 ./run.sh quick > $L/quick.txt 2>&1; echo "== quick rc=$? $(( $(date +%s)-t0 ))s"; grep -E "PASS|FAIL" $L/quick.txt | tail -12; grep -h "test result" $L/quick/gpu-tests.log
cd $OUT && tar czf logs.tgz l && rm -rf l

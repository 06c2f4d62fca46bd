#!/usr/bin/env bash
# Call p5 (2026-12-04 session 12): main's kernels (2cfdca2) with the exact-tie test: the packed runner's quick mode
# (every GPU test, the GPU fuzz, CPU tests, examples on the CUDA backend), then Nsight Compute of the two prefill
# kernels at 8k and 128k (MHA-32), where issue 15's prefill targets are bound.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
t0=$(date +%s); OUT=$L/quick timeout 420 ./run.sh quick > $L/quick.txt 2>&1; echo "== quick rc=$? $(( $(date +%s)-t0 ))s"; grep -E "^(PASS|FAIL)" $L/quick.txt
grep -h "exact ties\|ties k\|ties:" $L/quick/gpu-tests.log | head -6
S="--section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats --section SchedulerStats"
for len in 8k 128k; do
  timeout 100 ncu --clock-control none -k 'regex:^hip_prefill_(search|attn)$' --launch-skip 6 --launch-count 2 $S bin/hip-bench --only prefill/MHA-32/$len --seed 7 > $L/ncu-prefill-$len.log 2>&1; echo "== ncu $len rc=$?"
  grep -E "hip_prefill_|Duration|DRAM Throughput|L2 Cache Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issued Warp Per" $L/ncu-prefill-$len.log | grep -v "^\s*$" | head -24
done
cd $OUT && tar czf logs.tgz l && rm -rf l

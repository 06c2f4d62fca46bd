#!/usr/bin/env bash
# Call 3 (2026-12-04 session 9): the decode rows' bounds. micro.py: a one-kernel graph replay's floor and the
# gather bandwidth of a batch-16 cached step's rows (scattered vs contiguous); Nsight Compute of the cached MHA-32
# 128k step kernel with warm caches (--cache-control none: as in the replayed step) on head (54c2ad0).
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t0=$(date +%s); timeout 200 python3 micro.py $L/micro.json > $L/micro.log 2>&1; echo "== micro rc=$? $(( $(date +%s)-t0 ))s"; tail -30 $L/micro.log
only=decode-cached/MHA-32/128k; n=$(echo $only | tr '/' '-')
timeout 120 "$NCU" --clock-control none --cache-control none --kernel-name regex:hip_decode_step_wide --launch-skip 100 --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats \
    --section MemoryWorkloadAnalysis --section SchedulerStats \
    bin/hip-bench --only $only --budget 20 > $L/ncu-warm-$n.log 2>&1
echo "== ncu rc=$?"
grep -E "Duration|Throughput|Achieved Occupancy|L2 Hit|L1/TEX Hit|Issued Ipc|No Eligible|Warp Cycles Per Issued|Stall" $L/ncu-warm-$n.log | head -30
cd $OUT && tar czf logs.tgz l && rm -rf l

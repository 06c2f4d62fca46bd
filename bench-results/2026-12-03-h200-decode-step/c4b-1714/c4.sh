#!/usr/bin/env bash
# Call 4 (2026-12-03 session 8): Nsight Compute profile of hip_decode_step_wide (build of 7a641c6), one launch each,
# clocks not locked: a cached-mask step (the 101st launch: the first ones search each input set), MHA-32 128k and 1M; the searching step is in c4a (issue 15's decode targets).
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
for only in decode-cached/MHA-32/128k decode-cached/MHA-32/1M; do
    n=$(echo $only | tr '/' '-')
    timeout 120 "$NCU" --clock-control none --kernel-name regex:hip_decode_step_wide --launch-skip 100 --launch-count 1 \
        --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats \
        --section MemoryWorkloadAnalysis --section SchedulerStats \
        bin/hip-bench --only $only --budget 20 > $L/ncu-$n.log 2>&1
    echo "== $only rc=$?"
    grep -E "Duration|Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy|Block Limit|L2 Hit|Issued Ipc|No Eligible|Warp Cycles Per Issued|Grid Size|Cluster" $L/ncu-$n.log | head -30
done
cd $OUT && tar czf logs.tgz l && rm -rf l

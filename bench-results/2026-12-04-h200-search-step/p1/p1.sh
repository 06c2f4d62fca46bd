#!/usr/bin/env bash
# Call p1 (2026-12-04 session 12): Nsight Compute of main's (2cfdca2) searching decode step at 128k (MHA-32,
# hip_decode_step_wide, source counters: where each round's time goes) and of batch 16's attention kernel.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
S="--section InstructionStats --section SourceCounters --section WarpStateStats --section SchedulerStats --section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis"
t0=$(date +%s)
timeout 200 ncu --clock-control none -k 'regex:^hip_decode_step_wide$' --launch-skip 40 --launch-count 1 $S --import-source no --export $OUT/step-search-128k bin/hip-bench --only decode-search/MHA-32/128k --seed 7 > $L/ncu-step.log 2>&1; echo "== ncu step rc=$? $(( $(date +%s)-t0 ))s"
timeout 150 ncu --clock-control none -k 'regex:^hip_decode_attn_direct$' --launch-skip 40 --launch-count 1 $S --export $OUT/b16-32k bin/hip-bench --only decode-cached-b16/MHA-32/32k --seed 7 > $L/ncu-b16.log 2>&1; echo "== ncu b16 rc=$? $(( $(date +%s)-t0 ))s"
for r in step-search-128k b16-32k; do
  ncu --import $OUT/$r.ncu-rep --page details --print-details all > $OUT/details-$r.txt 2>&1
  ncu --import $OUT/$r.ncu-rep --page source --print-source sass --csv > $OUT/source-$r.csv 2>&1; echo "== $r $(wc -l < $OUT/source-$r.csv) lines"; gzip -f $OUT/source-$r.csv
done
grep -E "Duration|DRAM Throughput|L2 Cache Throughput|Compute \(SM\)|Registers Per|Achieved Occupancy|Issued Ipc|Warp Cycles Per Issued" $OUT/details-*.txt | head -40
cd $OUT && tar czf logs.tgz l && rm -rf l

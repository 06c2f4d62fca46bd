#!/usr/bin/env bash
# Call C: Nsight Compute on the three prefill kernels that bound issue 15's targets (one launch each, clocks left
# alone): the 128k mask search and block-sparse attention, and the Hopper dense kernel at exact 32k.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S="--section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis"
p() { local n=$1 k=$2 only=$3; timeout 100 ncu --clock-control none -k "regex:^$k\$" --launch-skip 3 --launch-count 1 $S bin/hip-bench --only "$only" --seed 7 --budget 30 > $L/ncu-$n.log 2>&1; echo "== $n rc=$?"
  grep -E "^\s+(Duration|Memory Throughput|DRAM Throughput|L1/TEX Cache Throughput|L2 Cache Throughput|Compute \(SM\) Throughput|Registers Per Thread|Achieved Occupancy|Theoretical Occupancy|Block Limit|Issue Slots Busy|Issued Ipc Active|Warp Cycles Per Issued|No Eligible|Executed Ipc|Dynamic Shared|Static Shared|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|Grid Size|Block Size)" $L/ncu-$n.log | sed 's/  */ /g' | head -n 30
  grep -E "^\s+(WRN|OPT|INF)" -A2 $L/ncu-$n.log | sed 's/  */ /g' | cut -c1-300 | head -n 24; }
p search hip_prefill_search prefill/MHA-32/128k
p sparse hip_prefill_attn prefill/MHA-32/128k
p hopper hip_prefill_attn_hopper exact-window/MHA-32
cd $OUT && tar czf logs.tgz l && rm -rf l

#!/usr/bin/env bash
# Nsight Compute on one cached-mask decode step (steady state: after every input set's first, searching, step).
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S="--section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis"
p() { local n=$1 k=$2 only=$3 skip=$4 cnt=$5; shift 5
  timeout 80 ncu --clock-control none -k "regex:$k" --launch-skip $skip --launch-count $cnt $S bin/hip-bench --only "$only" --seed 7 --budget 20 "$@" > $L/ncu-$n.log 2>&1; echo "== $n rc=$?"
  grep -E "^  [a-z_]+ \(|^\s+(Duration|DRAM Throughput|L2 Cache Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Warp Cycles Per Issued)" $L/ncu-$n.log | sed 's/  */ /g' | head -n 24; }
p dcached '^hip_decode_' decode-cached/MHA-32/128k 150 3
p dcached1m '^hip_decode_' decode-cached/MHA-32/1M 150 3
cd $OUT && tar czf logs.tgz l && rm -rf l

#!/usr/bin/env bash
# Final call: the whole benchmark beside dense attention (run.sh bench), then Nsight Compute on what bounds each
# missed target of issue 15 (one launch each; decode: one step's kernels), and on the FP8-scored search of branch
# k8-search (bin/hip-bench-k8) beside the default's.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
OUT=$L/bench STEP_TIMEOUT=200 timeout 230 ./run.sh bench 2>&1 | tail -n 45
S="--section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis"
p() { local n=$1 k=$2 only=$3 skip=$4 cnt=$5 b=${B:-bin/hip-bench}; shift 5
  timeout 80 ncu --clock-control none -k "regex:$k" --launch-skip $skip --launch-count $cnt $S $b --only "$only" --seed 7 --budget 20 "$@" > $L/ncu-$n.log 2>&1; echo "== $n rc=$?"
  grep -E "^  [a-z_]+ \(|^\s+(Duration|Memory Throughput|DRAM Throughput|L2 Cache Throughput|Compute \(SM\) Throughput|Registers Per Thread|Achieved Occupancy|Issue Slots Busy|Warp Cycles Per Issued|L2 Hit|Grid Size)" $L/ncu-$n.log | sed 's/  */ /g' | head -n 40; }
p search128k '^hip_prefill_search$' prefill/MHA-32/128k 3 1
B=bin/hip-bench-k8 p k8search '^hip_prefill_search$' prefill/MHA-32/128k 3 1 --fp8-search
B=bin/hip-bench-k8 p k8copy '^hip_prefill_k8_' prefill/MHA-32/128k 6 2 --fp8-search
p search8k '^hip_prefill_(search|attn)$' prefill/MHA-32/8k 6 2
p dcached '^hip_decode_' decode-cached/MHA-32/128k 30 3
p dsearch '^hip_decode_' decode-search/MHA-32/128k 30 3
p db16 '^hip_decode_' decode-cached-b16/MHA-32/32k 30 3
cd $OUT && tar czf logs.tgz l && rm -rf l

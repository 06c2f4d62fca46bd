#!/bin/bash
# Session 14, call 5: the prefill rows of 8e556af's build beside dense prefill measured in the same call, and the
# 8k prefill kernels under Nsight Compute.
set -uo pipefail
cd "$(dirname "$0")"
L=${OUT:-$PWD/out}/c5; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
timeout 150 python3 dense-baseline.py --prefill-only --json "$L/dense.json" > "$L/dense.log" 2>&1; echo "dense rc=$?"; tail -12 "$L/dense.log"
date -u
timeout 200 bin/hip-bench --only prefill --seed 7 --dense "$L/dense.json" --json "$L/bench.json" > "$L/bench.log" 2>&1; echo "bench rc=$?"
grep -E "^\| prefill" "$L/bench.log"; sed -n '/^### Dense attention/,$p' "$L/bench.log" | head -30
date -u
timeout 90 ncu --clock-control none -k regex:'hip_prefill_(search|attn)$' --launch-skip 4 --launch-count 2 \
    --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats \
    bin/hip-bench --only prefill/MHA-32/8k --seed 7 > "$L/ncu-8k.log" 2>&1
echo "ncu rc=$?"; grep -E "hip_prefill|Duration|L2 Cache Throughput|DRAM Throughput|Compute \(SM\)|Warp Cycles Per Issued|Achieved Occupancy|Registers Per" "$L/ncu-8k.log" | head -24
date -u

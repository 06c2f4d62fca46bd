#!/bin/bash
# Session 14, call 7: where 8e556af's prefill search waits (Nsight Compute stall reasons and sampled stall locations),
# MHA-32 128k, one launch.
set -uo pipefail
cd "$(dirname "$0")"
L=${OUT:-$PWD/out}/c7; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
timeout 150 ncu --clock-control none -k regex:hip_prefill_search --launch-skip 2 --launch-count 1 \
    --section WarpStateStats --section SourceCounters \
    --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio \
    bin/hip-bench --only prefill/MHA-32/128k --seed 7 > "$L/ncu-stalls.log" 2>&1
echo "ncu rc=$?"
grep -E "stalled_.*ratio" "$L/ncu-stalls.log" | awk '$NF+0 > 0.1' | sort -k3 -n -r | head -20
sed -n '/Warp Stall Sampling/,+30p' "$L/ncu-stalls.log" | head -40
date -u

#!/usr/bin/env bash
# Kernel profile of the three hot kernels with Nsight Compute (the GPU machine has it at /usr/local/cuda/bin/ncu):
# one launch each, from hip-bench runs of the shapes of docs/BENCHMARK-PROTOCOL.md. Run from the repo root after
# scripts/gpu-pack.sh; reports go to $OUT (or dist/gpu/out), a digest to stdout.
set -uo pipefail
cd "$(dirname "$0")/../dist/gpu"
export LD_LIBRARY_PATH="$PWD/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
LOG=${OUT:-$PWD/out}
mkdir -p "$LOG"
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for k in ${KERNELS:-decode_search prefill_search prefill_attn}; do
    case $k in decode_search) only=decode-search/MHA-32/128k ;; *) only=prefill/MHA-32/32k ;; esac
    timeout 150 "$NCU" --kernel-name "regex:hip_$k" --launch-skip 3 --launch-count 1 --section SpeedOfLight \
        --section WarpStateStats --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
        bin/hip-bench --only "$only" --budget 20 >"$LOG/ncu-$k.txt" 2>&1
    echo "== hip_$k"
    grep -E "Duration|Throughput|Registers Per|Achieved Occupancy|Block Limit (Reg|Shared)|L2 Hit|Local Memory Spilling Req" \
        "$LOG/ncu-$k.txt" | head -20
done

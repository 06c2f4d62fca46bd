#!/bin/bash
# Session 15, call 3: where the FP8-scored search spends its time (build 868416b): Nsight Compute's stall reasons
# and its per-instruction source view (SASS, CSV) of hip_prefill_search at 32k with --fp8-search, and every prefill
# kernel at 8k and 128k with the flag (durations, throughputs).
set -uo pipefail
cd "$(dirname "$0")"
L=${OUT:-$PWD/out}/c3; mkdir -p "$L"
export LD_LIBRARY_PATH=$PWD/bin; export PATH=$PATH:/usr/local/cuda/bin
date -u
timeout 150 ncu --clock-control none -k regex:hip_prefill_search --launch-skip 2 --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section InstructionStats --section SourceCounters \
    --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,smsp__inst_executed.sum \
    bin/hip-bench --only prefill/MHA-32/32k --seed 7 --fp8-search > "$L/ncu-32k-details.log" 2>&1
echo "details rc=$?"; grep -E "Duration|Warp Cycles Per Issued|inst_executed.sum|stalled_(wait|barrier|short_scoreboard|long_scoreboard|math|mio|lg|no_instruction|dispatch|branch|membar|sleeping|tex|drain|gmma|selected|not_selected)_per" "$L/ncu-32k-details.log" | head -40
date -u
timeout 200 ncu --clock-control none -k regex:hip_prefill_search --launch-skip 2 --launch-count 1 \
    --section SourceCounters --page source --print-source sass --csv \
    bin/hip-bench --only prefill/MHA-32/32k --seed 7 --fp8-search > "$L/ncu-32k-source.csv" 2>&1
echo "source rc=$?"; wc -l "$L/ncu-32k-source.csv"; gzip -f "$L/ncu-32k-source.csv"
date -u
for t in 8k 128k; do
  timeout 120 ncu --clock-control none -k regex:'hip_prefill_(k8|search|attn)' --launch-skip 10 --launch-count 5 \
      --section SpeedOfLight bin/hip-bench --only prefill/MHA-32/$t --seed 7 --fp8-search > "$L/ncu-$t.log" 2>&1
  echo "$t rc=$?"; grep -E "^  hip_prefill|Duration|L2 Cache Throughput|DRAM Throughput|Compute \(SM\)" "$L/ncu-$t.log" | head -24
done
date -u

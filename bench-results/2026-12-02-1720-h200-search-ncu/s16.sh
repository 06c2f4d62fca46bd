#!/usr/bin/env bash
# Where the default prefill search's instructions and stalls go (for the next restructure): ncu on hip_prefill_search at 32k and 128k.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S="--section InstructionStats --section SourceCounters --section WarpStateStats --section SchedulerStats --section SpeedOfLight --section Occupancy"
for len in 32k 128k; do
  timeout 120 ncu --clock-control none -k 'regex:^hip_prefill_search$' --launch-skip 3 --launch-count 1 $S --export $OUT/search-$len bin/hip-bench --only prefill/MHA-32/$len --seed 7 --budget 20 > $L/ncu-$len.log 2>&1; echo "== ncu $len rc=$?"
  sed -n '/Section: Instruction Statistics/,/Section: Launch/p;/Section: Source Counters/,$p' $L/ncu-$len.log | grep -v "^\s*$" | head -n 70
done
ls -la $OUT
cd $OUT && tar czf logs.tgz l && rm -rf l

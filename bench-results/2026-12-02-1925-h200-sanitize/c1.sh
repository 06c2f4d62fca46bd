#!/usr/bin/env bash
# Call 1 (2026-12-02 session 5): compute-sanitizer on the Hopper dense kernel with pv_tile (gap from the last
# session), decode tests on the trimmed decode workspace (4aa4fdd).
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|ERROR SUMMARY|RACECHECK SUMMARY|SYNCCHECK|hazard|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
export HIP_ATTN_TEST_CASES=6,8,9,10,11,12
for tool in memcheck racecheck synccheck; do
  o=(--tool $tool --error-exitcode 1); [ $tool = racecheck ] && o+=(--racecheck-report hazard --racecheck-detect-level warn)
  TO=240 t san-$tool-hopper $S "${o[@]}" bin/gpu --test-threads=1 --nocapture prefill_dense_hopper
done
unset HIP_ATTN_TEST_CASES
TO=300 t decode-tests bin/gpu --test-threads=1 decode_ cuda_graph graph_replays deterministic concurrent sharded out_of_memory
TO=120 t san-memcheck-decode $S --tool memcheck --error-exitcode 1 bin/gpu --test-threads=1 decode_matches decode_with_one_split deterministic
cd $OUT && tar czf logs.tgz l && rm -rf l

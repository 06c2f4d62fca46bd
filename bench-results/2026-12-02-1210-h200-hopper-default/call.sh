#!/usr/bin/env bash
# Call A: Hopper dense kernel by default (its test timed per case, sanitizers on its one-sequence cases, all GPU
# tests, C/C++ examples on CUDA), then the sharded decode of issue 16 (run.sh shard).
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
t() { local n=$1; shift; local t0=$SECONDS; timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $((SECONDS-t0))s"; }
TO=100 t hopper-test bin/gpu --test-threads=1 --nocapture prefill_dense_hopper
grep -h "checked after\|(Hopper\|(Classic\|panicked\|test result" $L/hopper-test.log | cut -c44-170
for tool in memcheck racecheck synccheck; do
  o=(--tool $tool --error-exitcode 1); [ $tool = racecheck ] && o+=(--racecheck-detect-level warn)
  TO=70 t san-$tool env HIP_ATTN_TEST_CASES=8,9,10,11,12 "$SAN" "${o[@]}" bin/gpu --test-threads=1 --nocapture prefill_dense_hopper
  grep -h "ERROR SUMMARY\|RACECHECK SUMMARY\|hazard\|Invalid\|test result" $L/san-$tool.log | cut -c1-120 | sort | uniq -c | head -n 6
done
TO=240 t gpu-all bin/gpu --test-threads=1 --skip prefill_dense_hopper
grep -h "FAILED\|panicked\|test result" $L/gpu-all.log | tail -n 12
TO=20 t ex-c env HIP_ATTN_BACKEND=cuda bin/example_c; TO=20 t ex-cpp env HIP_ATTN_BACKEND=cuda bin/example_cpp
OUT=$L/shard STEP_TIMEOUT=100 timeout 150 ./run.sh shard 2>&1 | tail -n 40
cd $OUT && tar czf logs.tgz l && rm -rf l

#!/usr/bin/env bash
# HIP_ATTN_FLAG_FP8_SEARCH_SCORES on the GPU: its test against the CPU reference (the copy byte for byte, masks,
# outputs, records), the prefill regression tests, prefill rows default vs K8 (hardware e4m3 conversion vs the
# software one, bin/hip-bench-soft) beside dense, then sanitizers on the new kernels.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
timeout 150 bin/gpu --test-threads=1 --nocapture prefill_fp8 params_layout > $L/fp8-test.log 2>&1; echo "== fp8 test rc=$?"
grep -h "fp8 search case\|panicked\|test result" $L/fp8-test.log | cut -c1-200 | head -n 20
timeout 200 bin/gpu --test-threads=1 prefill_matches prefill_scan_tail nonfinite deterministic > $L/regress.log 2>&1; echo "== regress rc=$?"
grep -h "panicked\|test result\|^test " $L/regress.log | head -n 12
timeout 90 python3 dense-baseline.py --prefill-only --json $L/dense.json > $L/dense.log 2>&1; echo "== dense rc=$?"
for v in head-K8 soft-K8 head; do
  b=bin/hip-bench; o=(--fp8-search); [ $v = soft-K8 ] && b=bin/hip-bench-soft; [ $v = head ] && o=()
  timeout 100 $b --only prefill/MHA-32,prefill/GQA-8 --seed 7 --budget 70 ${o[@]+"${o[@]}"} --dense $L/dense.json --json $L/bench-$v.json > $L/bench-$v.log 2>&1; echo "== bench $v rc=$?"
  grep -E "^\| prefill" $L/bench-$v.log | cut -d'|' -f2-6,11 | head -n 8
  sed -n '/^### Dense attention/,$p' $L/bench-$v.log | grep "^| prefill" | cut -d'|' -f2,4,6,7,8 | head -n 8
done
for tool in memcheck racecheck; do
  o=(--tool $tool --error-exitcode 1); [ $tool = racecheck ] && o+=(--racecheck-detect-level warn)
  timeout 120 "$SAN" "${o[@]}" bin/gpu --test-threads=1 --nocapture prefill_fp8 > $L/san-$tool.log 2>&1; echo "== fp8 $tool rc=$?"
  grep -h "ERROR SUMMARY\|RACECHECK SUMMARY\|test result" $L/san-$tool.log | cut -c1-100
done
cd $OUT && tar czf logs.tgz l && rm -rf l

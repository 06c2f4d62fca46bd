#!/usr/bin/env bash
# Pingpong branch (hopper-pingpong f9f56be): the library Hopper kernel's GPU test (all 13 cases), the prototype's
# f64 check, sanitizers on the Hopper cases and on the classic prefill kernels (last session's gap), then the exact
# rows A/B (main 2b73272 vs branch) beside PyTorch dense prefill from the same call.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
timeout 150 bin/gpu --test-threads=1 --nocapture prefill_dense_hopper > $L/test.log 2>&1; echo "== test rc=$?"
grep -h "Hopper\|panicked\|test result" $L/test.log | cut -c1-170 | tail -n 16
timeout 90 bin/gpu_hopper --nocapture --test-threads=1 hopper_kernel_compiles hopper_matches_f64_reference > $L/f64.log 2>&1; echo "== f64 rc=$?"
grep -h "HOPPER\|SKIP\|panicked\|test result\|err" $L/f64.log | head -n 12
for tool in memcheck racecheck synccheck; do
  o=(--tool $tool --error-exitcode 1); [ $tool = racecheck ] && o+=(--racecheck-detect-level warn)
  HIP_ATTN_TEST_CASES=6,8,9,10,11,12 timeout 40 "$SAN" "${o[@]}" bin/gpu --test-threads=1 --nocapture prefill_dense_hopper > $L/san-$tool.log 2>&1; echo "== hopper $tool rc=$?"
  grep -h "ERROR SUMMARY\|RACECHECK SUMMARY\|test result" $L/san-$tool.log | cut -c1-100
done
for tool in memcheck racecheck; do
  o=(--tool $tool --error-exitcode 1); [ $tool = racecheck ] && o+=(--racecheck-detect-level warn)
  timeout 100 "$SAN" "${o[@]}" bin/gpu --test-threads=1 prefill_matches > $L/san-classic-$tool.log 2>&1; echo "== classic prefill $tool rc=$?"
  grep -h "ERROR SUMMARY\|RACECHECK SUMMARY\|test result" $L/san-classic-$tool.log | cut -c1-100
done
timeout 100 python3 dense-baseline.py --prefill-only --json $L/dense.json > $L/dense.log 2>&1; echo "== dense rc=$?"
for r in 1 2; do for v in main head; do b=bin/hip-bench-$v; [ $v = head ] && b=bin/hip-bench
  timeout 60 $b --only exact-window/MHA-32,exact-k --seed 7 --budget 30 --dense $L/dense.json --json $L/exact-$v-$r.json > $L/exact-$v-$r.log 2>&1; echo "== $v $r rc=$?"
  grep -E "^\| prefill, exact" $L/exact-$v-$r.log | cut -d'|' -f2-6,11 | head -n 8
done; done
sed -n '/^### Dense attention/,$p' $L/exact-head-2.log | head -n 20
cd $OUT && tar czf logs.tgz l && rm -rf l

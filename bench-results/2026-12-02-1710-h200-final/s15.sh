#!/usr/bin/env bash
# Final build of the session (main 16dd0da: ctx-cold's 9 programs + pv_tile): every tests/gpu.rs test (Hopper cases 0,6,9,12), examples on CUDA, cold ctx-create.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
t0=$(date +%s); el() { echo "   [$(( $(date +%s) - t0 )) s]"; }
CUDA_CACHE_DISABLE=1 timeout 40 bin/hip-bench --only ctx-create --seed 7 > $L/ctx.log 2>&1; echo "== ctx-create rc=$?"
grep -E "^\| context" $L/ctx.log | cut -d'|' -f2,5,12,13; grep -o "kernels[^|]*NVRTC[^|]*" $L/ctx.log | head -1; el
for e in example_c example_cpp example_go_test; do a=""; [ $e = example_go_test ] && a="-test.v"
  HIP_ATTN_BACKEND=cuda timeout 30 bin/$e $a > $L/$e-cuda.log 2>&1; echo "== $e cuda rc=$?"; done; el
HIP_ATTN_TEST_CASES=0,6,9,12 timeout 400 bin/gpu --test-threads=1 --nocapture > $L/gpu.log 2>&1; echo "== gpu rc=$?"; el
grep -h "^test .* ok$\|panicked\|FAILED\|test result" $L/gpu.log | cut -c1-170 | tail -n 8
grep -c "^ok$\| ok$" $L/gpu.log; grep -h "^test " $L/gpu.log | tail -n 2 | cut -c1-120
cd $OUT && tar czf logs.tgz l && rm -rf l

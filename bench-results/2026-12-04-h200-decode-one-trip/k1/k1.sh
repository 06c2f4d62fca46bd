#!/usr/bin/env bash
# Call k1 (2026-12-04 session 10): where a cached decode step's 13.4 us go. Knock-out builds of the step kernel
# (ko1: returns at entry; ko2: after the record check; ko3: no K/V main loop; ko4: rank 0 returns before the
# combine) beside main (head), decode-cached MHA-32 rows, alternating; and the launch floor of a one-kernel graph.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $L/gpu.txt
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
t0=$(date +%s); $NVCC -O2 -arch=sm_90a -o floor floor.cu > $L/nvcc.log 2>&1 && ./floor > $L/floor.txt 2>&1; echo "== floor rc=$? $(( $(date +%s)-t0 ))s"; cat $L/floor.txt
t0=$(date +%s)
OUT=$L/ab VARIANTS="head ko1 ko2 ko3 ko4" ONLY=decode-cached/MHA-32 ROUNDS=2 timeout 200 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt
cd $OUT && tar czf logs.tgz l && rm -rf l

#!/usr/bin/env bash
# Call c6 (2026-12-04 session 13): a prototype, timing only (no tests: the session's device time is nearly spent).
# head = main (7d6e753) with the step kernel's tree search out of line (__noinline__, the kernel's parameter block
# __grid_constant__), so that a cached step's code is the kernel's alone; main = 7d6e753. Decode rows, two rounds.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
t0=$(date +%s)
OUT=$L/ab VARIANTS="main head" ONLY=decode-search/mha,decode-cached/mha,decode-cached-b16/mha ROUNDS=2 timeout 120 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt | cut -c1-100
cd $OUT && tar czf logs.tgz l && rm -rf l

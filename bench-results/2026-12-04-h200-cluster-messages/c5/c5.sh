#!/usr/bin/env bash
# Call c5 (2026-12-04 session 13): the match groups at the largest budget. hip-bench's new row decode-search-k2048
# (MHA-32, 128k, k 2048: KB 1024) on main = 9d05729 (every match of a thread's 16 keys at once, f9db2c2) and head =
# 0e4454c (matches in groups of four), both with the row's hip-bench commit (fc78f1c), two rounds alternating.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
t0=$(date +%s)
OUT=$L/ab VARIANTS="main head" ONLY=decode-search-k2048 ROUNDS=2 timeout 170 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|decode" $L/ab.txt | cut -c1-100
cd $OUT && tar czf logs.tgz l && rm -rf l

#!/usr/bin/env bash
# Call k2 (2026-12-04 session 10): the cached step's main loop (7.8 us of 13.2 by k1) split: ko3 (no main loop),
# ko5 (main loop run twice: the second pass with code and translations warm), ko6 (every key reads row 0 of the
# sequence: same code, data hot) beside main (head); decode-cached MHA-32, alternating.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
t0=$(date +%s)
OUT=$L/ab VARIANTS="head ko3 ko5 ko6" ONLY=decode-cached/MHA-32 ROUNDS=2 timeout 200 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt | cut -c1-75
cd $OUT && tar czf logs.tgz l && rm -rf l

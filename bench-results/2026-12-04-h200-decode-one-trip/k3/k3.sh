#!/usr/bin/env bash
# Call k3 (2026-12-04 session 10): ko7 (each CTA of the step attends half its share: one trip); ks11 (the search's
# selection keeps every chunk's left branch: no radix select); ks12 (the search gathers row 0 for every column:
# same code, data hot) beside main (head); decode-cached and decode-search MHA-32, alternating.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
t0=$(date +%s)
OUT=$L/ab VARIANTS="head ko7 ks11 ks12" ONLY=decode-cached/MHA-32,decode-search/MHA-32 ROUNDS=2 timeout 280 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$? $(( $(date +%s)-t0 ))s"; grep -E "==|graph" $L/ab.txt | cut -c1-75
cd $OUT && tar czf logs.tgz l && rm -rf l

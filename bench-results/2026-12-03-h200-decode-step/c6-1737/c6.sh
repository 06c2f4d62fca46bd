#!/usr/bin/env bash
# Call 6 (2026-12-03 session 8): branch dec-nobar (e1) decode tests (the refresh counter's paths), and a second A/B round.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
timeout 60 bin/gpu-e1 --test-threads=1 decode_matches decode_mask_state cuda_graph_replays_decode decode_with_one > $L/e1-tests.log 2>&1; echo "== e1-tests rc=$?"; grep "test result\|FAILED\|panicked" $L/e1-tests.log
OUT=$L/ab VARIANTS="e1 head" ONLY=decode-cached/MHA-32 ROUNDS=1 timeout 30 ./ab.sh > $L/ab.txt 2>&1; echo "== ab rc=$?"; grep -E "==|graph" $L/ab.txt
cd $OUT && tar czf logs.tgz l && rm -rf l

#!/usr/bin/env bash
# Call c4 (2026-12-04 session 13): main's final kernels (8623ac6: the matches in groups of four; the cluster
# messages not merged). The GPU tests that c2 and c3 did not run (those ran on head builds with this commit's
# selection), the GPU fuzz, and the C and C++ examples on the CUDA backend.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|panicked|FAILED|failed" $L/$n.log | sort | uniq -c | head -8; }
TO=300 t tests bin/gpu --test-threads=1 --skip exact_ties --skip decode_matches --skip decode_cluster --skip decode_search_abort --skip decode_head_groups --skip decode_128k_cache --skip decode_bad_page --skip cuda_graph_replays_decode --skip prefill_matches --skip deterministic
grep -E "^test " $L/tests.log | sed 's/^test //' | tr '\n' ';'; echo
TO=30 t fuzz bin/gpu_fuzz
TO=30 t ex-c env HIP_ATTN_BACKEND=cuda bin/example_c
TO=30 t ex-cpp env HIP_ATTN_BACKEND=cuda bin/example_cpp
cd $OUT && tar czf logs.tgz l && rm -rf l

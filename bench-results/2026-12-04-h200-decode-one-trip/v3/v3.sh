#!/usr/bin/env bash
# Call v3 (2026-12-04 session 10): the rest of run.sh quick on v2's head, whose run the call's own time limit cut
# (v2's gpu-tests step stopped in scan_decode_matches_cpu_reference after 24 tests passed): the GPU tests from there
# on, and the C++ and Go examples on the CUDA backend.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
t() { local n=$1; shift; local t0=$(date +%s); timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $(( $(date +%s)-t0 ))s"; grep -E "test result|panicked|FAILED|failed|PASS|ok$" $L/$n.log | sort | uniq -c | head -8; }
TO=150 t tests bin/gpu --test-threads=1 scan_decode_matches scan_decode_selects sharded_decode
TO=60 t example-cpp env HIP_ATTN_BACKEND=cuda bin/example_cpp
TO=60 t example-go env HIP_ATTN_BACKEND=cuda bin/example_go_test -test.v
cd $OUT && tar czf logs.tgz l && rm -rf l

#!/usr/bin/env bash
# Call B: the GPU tests call A ran out of time for; PyTorch dense prefill and hip-bench --dense in the same call
# (Hopper dense kernel by default); A/B of the prefill online-softmax split (656330e) against the build without it.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
t() { local n=$1; shift; local t0=$SECONDS; timeout ${TO:-200} "$@" > $L/$n.log 2>&1; echo "== $n rc=$? $((SECONDS-t0))s"; }
TO=170 t gpu-rest bin/gpu --test-threads=1 prefill_matches_cpu_reference prefill_scan_tail scan_decode
grep -h "^test \|FAILED\|panicked\|test result" $L/gpu-rest.log | tail -n 12
TO=80 t dense python3 dense-baseline.py --prefill-only --json $L/dense.json
grep -h "^|" $L/dense.log | head -n 20
row() { grep -E "^\| (prefill|exact)" $L/$1.log | awk -F'|' '{print $2 "|" $3 "|" $4 "|" $5 "|" $6 "|" $11}'; }
TO=130 t head bin/hip-bench --only prefill/MHA-32,exact-window/MHA-32 --seed 7 --dense $L/dense.json --json $L/head.json; row head
sed -n '/^### Dense attention/,$p' $L/head.log | head -n 14
TO=75 t base bin/hip-bench-base --only prefill/MHA-32 --seed 7 --json $L/base.json; row base
TO=75 t head2 bin/hip-bench --only prefill/MHA-32 --seed 7 --json $L/head2.json; row head2
cd $OUT && tar czf logs.tgz l && rm -rf l

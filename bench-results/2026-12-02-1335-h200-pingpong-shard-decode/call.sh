#!/usr/bin/env bash
# Final call: the Hopper prototype's variants with consumer pingpong (run.sh hopper: f64 check, timing table),
# the sharded example's NCCL path with a one-rank communicator and decode at 4M tokens in 2 shards, and the decode
# rows beside PyTorch's dense decode in the same call.
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD/bin; L=$OUT/l; mkdir -p $L
OUT=$L/hopper STEP_TIMEOUT=120 timeout 150 ./run.sh hopper 2>&1 | tail -n 30
nccl_dir=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$nccl_dir" NCCL_NVLS_ENABLE=0
echo "== NCCL one rank ($nccl_dir)"; HIP_ATTN_BACKEND=cuda HIP_ATTN_EXAMPLE_NCCL=1 timeout 40 bin/sharded_decode 1 2>&1 | tail -n 6
echo "== 4M in 2 shards"; HIP_ATTN_BACKEND=cuda timeout 60 bin/sharded_decode --bench 4194304 2 2>&1 | tail -n 6
timeout 40 python3 dense-baseline.py --decode-only --json $L/dense-decode.json > $L/dense-decode.log 2>&1; echo "dense rc=$?"
timeout 70 bin/hip-bench --only decode-cached/MHA-32 --seed 7 --budget 50 --dense $L/dense-decode.json --json $L/decode.json > $L/decode.log 2>&1; echo "decode rc=$?"
sed -n '/^### Dense attention/,$p' $L/decode.log | grep "^| decode" | cut -d'|' -f2,4,5,7,8 | head -n 12
cd $OUT && tar czf logs.tgz l && rm -rf l

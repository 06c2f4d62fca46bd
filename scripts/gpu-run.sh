#!/usr/bin/env bash
# Runner packed by scripts/gpu-pack.sh. Modes: quick (GPU tests), full (tests + sanitizers + benchmark),
# bench (benchmark only: PyTorch's dense attention first where python3 has torch, then hip-bench --dense with it, so
# every prefill and decode row has its dense time and ratio from the same device call; WITH_512K=1 adds prefill 512k
# to both), exact (the exact-attention rows, HIP_ATTN_DENSE_KERNEL=classic and the default (Hopper where compiled), beside dense prefill), sanitize (compute-sanitizer memcheck, racecheck, initcheck on the small GPU tests;
# SAN_TOOLS="racecheck" picks tools), fuzz (tests/gpu_fuzz.rs, hostile device index data, under memcheck),
# scan (SCAN selection: PyTorch's dense attention where torch is installed, then hip-bench --scan --dense and
# --quality-gpu),
# race (racecheck on one cluster-search test, the first hazards, and the SASS of hip_decode_search_wide around
# their PCs, to find the exchange the sanitizer objects to), hopper (the standalone sm_90a prototype of issue 15:
# f64-reference check, then its timing table beside the library's exact paths; docs/HOPPER-NOTES.md), shard
# (context parallelism, issue 16: the sharded GPU test, the sharded example on the CUDA backend, with NCCL when
# libnccl.so.2 is found and there are GPUs for the shards, and decode at 2M tokens in 2 shards timed per shard and
# for the merge; SHARD_TOKENS="2097152 4194304" picks the lengths), ctx (cold context creation: hip-bench --only
# ctx-create three times with NVRTC's own cache off (CUDA_CACHE_DISABLE=1, else a later process only reloads what
# an earlier one compiled), then the GPU test of the kernel cache).
set -uo pipefail
cd "$(dirname "$0")"
export LD_LIBRARY_PATH="$PWD/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
LOG=${OUT:-$PWD/out}
mkdir -p "$LOG"
mode=${1:-quick}
summary=()
step() {   # step NAME CMD...: runs CMD, keeps its log, records PASS/FAIL
    local name=$1; shift
    local t0=$SECONDS
    # A hung kernel must not eat the whole device call: each step has its own limit.
    if timeout "${STEP_TIMEOUT:-300}" "$@" >"$LOG/$name.log" 2>&1; then summary+=("PASS $name ($((SECONDS - t0)) s)"); else summary+=("FAIL $name ($((SECONDS - t0)) s): see $name.log"); tail -n 40 "$LOG/$name.log"; fi
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOG/device.txt"
SANITIZER=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
# Tests that are small enough for the sanitizers (the 128k ones are not: they would take many minutes), every
# prefill and decode kernel among them (SCAN's too); the cluster decode search of issue 12 (its configurations,
# the abort on a bad page, a record of another configuration) in a step of its own.
SMALL="prefill_matches decode_matches decode_with_one_split merge_matches device_index prefill_bad_cu_seqlens cuda_graph
params_layout deterministic concurrent nonfinite scan_decode_matches scan_decode_selects prefill_scan_tail"
CLUSTER="decode_cluster_search_configs decode_search_abort_on_a_bad_page decode_mask_state_of_another_configuration"
sanitizer_summary() {   # the sanitizer's own summary lines of step $1
    grep -h "ERROR SUMMARY\|RACECHECK SUMMARY\|hazard\|Invalid\|Uninitialized" "$LOG/$1.log" 2>/dev/null | sort | uniq -c | head -n 20
}
case $mode in
quick|full)
    # (the whole suite took ~310 s on the H200 on 2026-12-04, past the 300 s default)
    STEP_TIMEOUT=${STEP_TIMEOUT:-540} step gpu-tests bin/gpu --test-threads=1 --nocapture
    step gpu-fuzz bin/gpu_fuzz --nocapture
    step cpu-tests sh -c 'for t in dense mask decode merge bad_input; do bin/$t || exit 1; done'
    step example-c bin/example_c
    step example-c-cuda env HIP_ATTN_BACKEND=cuda bin/example_c
    step example-cpp-cuda env HIP_ATTN_BACKEND=cuda bin/example_cpp
    [ -x bin/example_go_test ] && step example-go-cuda env HIP_ATTN_BACKEND=cuda bin/example_go_test -test.v
    [ -x bin/example_zig ] && step example-zig-cuda env HIP_ATTN_BACKEND=cuda bin/example_zig
    ;;
esac
case $mode in
sanitize|full)
    for tool in ${SAN_TOOLS:-memcheck racecheck initcheck}; do
        opts=(--tool "$tool" --error-exitcode 1)
        # Every hazard listed (as the issue's report did), warnings included.
        [ "$tool" = racecheck ] && opts+=(--racecheck-report hazard --racecheck-detect-level warn)
        step "sanitizer-$tool" "$SANITIZER" "${opts[@]}" bin/gpu --test-threads=1 $SMALL
        step "sanitizer-$tool-cluster" "$SANITIZER" "${opts[@]}" bin/gpu --test-threads=1 --nocapture $CLUSTER
        for s in "sanitizer-$tool" "sanitizer-$tool-cluster"; do echo "--- $s"; sanitizer_summary "$s"; done
    done
    ;;
esac
case $mode in
fuzz)
    # >= 200 generated cases in one run (seed printed; HIP_ATTN_GPU_FUZZ_SEED / _CASES repeat or widen it), each
    # bounded by the test's watchdog (slower under memcheck: 60 s a case).
    STEP_TIMEOUT=${STEP_TIMEOUT:-540} step fuzz-memcheck env HIP_ATTN_GPU_FUZZ_CASE_S=${HIP_ATTN_GPU_FUZZ_CASE_S:-60} \
        "$SANITIZER" --tool memcheck --error-exitcode 1 bin/gpu_fuzz --nocapture
    echo "--- fuzz-memcheck"; sanitizer_summary fuzz-memcheck
    grep -h "gpu_fuzz:" "$LOG/fuzz-memcheck.log" 2>/dev/null
    ;;
esac
case $mode in
race)
    # One test, one configuration's kernels: the kernel cache then holds few cubins (files: 88-byte header, then the
    # cubin; src/cuda/cache.rs), and every hazard's "+0x..." offset reads against the SASS printed here.
    export XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/hip-attn-race-cache}
    STEP_TIMEOUT=${STEP_TIMEOUT:-240} step racecheck-cluster "$SANITIZER" --tool racecheck --racecheck-report hazard \
        --print-limit 30 --error-exitcode 1 bin/gpu --test-threads=1 --exact decode_cluster_search_configs
    grep -h -A6 "hazard detected" "$LOG/racecheck-cluster.log" | head -n 60
    grep -h "RACECHECK SUMMARY" "$LOG/racecheck-cluster.log"
    for f in "$XDG_CACHE_HOME"/hip-attn/*.cubin; do
        tail -c +89 "$f" > "$LOG/k.cubin"
        if cuobjdump -sass -fun hip_decode_search_wide "$LOG/k.cubin" > "$LOG/sass-$(basename "$f" .cubin | cut -c1-12).txt" 2>/dev/null; then
            echo "--- SASS of hip_decode_search_wide in $(basename "$f") (st/ld.shared::cluster and barriers):"
            grep -n "BAR\|UCGABAR\|ST.*DSMEM\|STS\|LDS" "$LOG"/sass-"$(basename "$f" .cubin | cut -c1-12)".txt | head -n 40
        fi
    done
    ;;
esac
case $mode in
hopper)
    step hopper-check bin/gpu_hopper --nocapture --test-threads=1 hopper_kernel_compiles hopper_matches_f64_reference
    grep -h "HOPPER_STAGES\|SKIP\|panicked\|failures" "$LOG/hopper-check.log" | head -n 30
    STEP_TIMEOUT=${STEP_TIMEOUT:-420} step hopper-timing bin/gpu_hopper --nocapture --test-threads=1 --include-ignored \
        --exact hopper_timing
    grep -h "hopper table\|hopper fa3\|library exact\|SKIP\|panicked\|T=" "$LOG/hopper-timing.log" | head -n 30
    ;;
esac
dense=()   # hip-bench's --dense FILE, once dense_baseline has measured
dense_baseline() {   # dense_baseline NAME [dense-baseline.py options]: PyTorch's dense rows into $LOG/NAME.json
    local name=$1; shift
    if ! python3 -c 'import torch' 2>/dev/null; then
        summary+=("SKIP $name: python3 has no torch, hip-bench runs without --dense"); return
    fi
    step "$name" python3 dense-baseline.py --json "$LOG/$name.json" "$@"
    # The script rewrites its JSON after every row: rows measured before a failure or the time limit still count.
    [ -s "$LOG/$name.json" ] && dense=(--dense "$LOG/$name.json")
}
with512=()
[ -n "${WITH_512K:-}" ] && with512=(--with-512k)
case $mode in
bench|full)
    if [ -x bin/hip-bench ]; then
        dense_baseline dense-baseline ${with512[@]+"${with512[@]}"}
        step bench bin/hip-bench --json "$LOG/hip-bench.json" ${dense[@]+"${dense[@]}"} ${with512[@]+"${with512[@]}"}
        # The ratio table (it follows the main table on stdout).
        sed -n '/^### Dense attention/,$p' "$LOG/bench.log" | head -n 80
    fi
    ;;
esac
case $mode in
exact)
    dense_baseline dense-baseline --prefill-only
    step bench-exact-classic env HIP_ATTN_DENSE_KERNEL=classic bin/hip-bench --only exact \
        --json "$LOG/hip-bench-exact-classic.json" ${dense[@]+"${dense[@]}"}
    step bench-exact-hopper bin/hip-bench --only exact \
        --json "$LOG/hip-bench-exact-hopper.json" ${dense[@]+"${dense[@]}"}
    for s in bench-exact-classic bench-exact-hopper; do
        echo "--- $s"; grep -h "^| prefill, exact\|^| exact" "$LOG/$s.log" | head -n 20
    done
    ;;
esac
case $mode in
shard)
    step shard-cpu-tests bin/shard
    step shard-gpu-test bin/gpu --test-threads=1 --nocapture --exact sharded_decode_matches_cpu_reference
    grep -h "sharded\|SKIP\|panicked" "$LOG/shard-gpu-test.log" | head -n 20
    # NCCL is loaded by the example at run time: the system's, or python3's nvidia-nccl wheel.
    nccl_dir=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null)
    if [ -n "$nccl_dir" ] && [ -e "$nccl_dir/libnccl.so.2" ]; then
        echo "NCCL: $nccl_dir/libnccl.so.2"; export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$nccl_dir"
    elif ldconfig -p 2>/dev/null | grep -q libnccl.so.2; then
        echo "NCCL: $(ldconfig -p | grep -m1 libnccl.so.2)"
    else
        echo "NCCL: libnccl.so.2 not found (the example runs its shards one after another)"
    fi
    export NCCL_NVLS_ENABLE=0
    step shard-example-cuda env HIP_ATTN_BACKEND=cuda bin/sharded_decode 2
    # The NCCL path on one GPU: one shard, a communicator of one rank (init, all-gather, merge, destroy).
    [ -n "$nccl_dir" ] && step shard-example-nccl-1rank env HIP_ATTN_BACKEND=cuda HIP_ATTN_EXAMPLE_NCCL=1 bin/sharded_decode 1 &&
        grep -h "NCCL\|MATCH\|max" "$LOG/shard-example-nccl-1rank.log" | head -n 6
    grep -h "shard\|MATCH\|max" "$LOG/shard-example-cuda.log" | head -n 10
    for t in ${SHARD_TOKENS:-2097152}; do
        STEP_TIMEOUT=${STEP_TIMEOUT:-420} step "shard-bench-$t" env HIP_ATTN_BACKEND=cuda bin/sharded_decode --bench "$t" 2
        cat "$LOG/shard-bench-$t.log" | head -n 10
    done
    ;;
esac
case $mode in
ctx)
    echo "CPU cores: $(nproc)"
    for i in 1 2 3; do
        step "ctx-create-$i" env CUDA_CACHE_DISABLE=1 bin/hip-bench --only ctx-create --json "$LOG/hip-bench-ctx-$i.json"
        grep -h "ctx-create\|compiled with NVRTC" "$LOG/ctx-create-$i.log" | cut -c1-400 | tail -n 4
    done
    step gpu-kernel-cache env CUDA_CACHE_DISABLE=1 bin/gpu kernel_cache_and_creation_time --nocapture
    grep -h "modules\|context creation" "$LOG/gpu-kernel-cache.log" | tail -n 12
    ;;
esac
case $mode in
scan)
    dense_baseline dense-baseline
    step bench-scan bin/hip-bench --scan --json "$LOG/hip-bench-scan.json" ${dense[@]+"${dense[@]}"}
    step quality-gpu bin/hip-bench --quality-gpu --json "$LOG/hip-quality-gpu.json"
    ;;
esac
printf '%s\n' "----- summary ($mode)" "${summary[@]}"
grep -h "rel L2\|match\|cold\|replays" "$LOG"/gpu-tests.log 2>/dev/null | tail -n 40

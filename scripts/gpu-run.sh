#!/usr/bin/env bash
# Runner packed by scripts/gpu-pack.sh. Modes: quick (GPU tests), full (tests + sanitizers + benchmark),
# bench (benchmark only), sanitize (compute-sanitizer memcheck, racecheck, initcheck on the GPU tests).
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
# Tests that are small enough for the sanitizers (the 128k ones are not: they would take many minutes).
SMALL="prefill_matches decode_matches merge_matches device_index cuda_graph params_layout deterministic concurrent scan_decode_matches scan_decode_selects prefill_scan_tail"
case $mode in
quick|full)
    step gpu-tests bin/gpu --test-threads=1 --nocapture
    step cpu-tests sh -c 'for t in dense mask decode merge bad_input; do bin/$t || exit 1; done'
    step example-c bin/example_c
    step example-cpp-cuda env HIP_ATTN_BACKEND=cuda bin/example_cpp
    [ -x bin/example_go_test ] && step example-go-cuda env HIP_ATTN_BACKEND=cuda bin/example_go_test -test.v
    [ -x bin/example_zig ] && step example-zig-cuda env HIP_ATTN_BACKEND=cuda bin/example_zig
    ;;
esac
case $mode in
sanitize|full)
    for tool in memcheck racecheck initcheck; do
        step "sanitizer-$tool" "$SANITIZER" --tool "$tool" --error-exitcode 1 bin/gpu --test-threads=1 $SMALL
    done
    ;;
esac
case $mode in
bench|full) [ -x bin/hip-bench ] && step bench bin/hip-bench --json "$LOG/hip-bench.json" ;;
esac
printf '%s\n' "----- summary ($mode)" "${summary[@]}"
grep -h "rel L2\|match\|cold\|replays" "$LOG"/gpu-tests.log 2>/dev/null | tail -n 40

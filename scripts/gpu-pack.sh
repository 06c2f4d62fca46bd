#!/usr/bin/env bash
# Builds everything a GPU machine needs to check and time hip-attn, and packs it with a runner into dist/gpu/
# (git-ignored). The folder runs on a machine with the CUDA driver and no Rust toolchain: copy it, run
# `dist/gpu/run.sh [quick|full|bench|exact|scan|sanitize|fuzz|race|hopper]`, read the summary at the end (logs go to $OUT or dist/gpu/out).
set -euo pipefail
cd "$(dirname "$0")/.."
DIST=dist/gpu
rm -rf "$DIST"
mkdir -p "$DIST/bin"

# The workspace's default members: the library and tools/hip-bench (one invocation, so both use one build of the
# library).
cargo build --release --lib --bins
ln -sf libhip_attn.so target/release/libhip_attn.so.1
cp target/release/libhip_attn.so "$DIST/bin/libhip_attn.so.1"
cp target/release/hip-bench "$DIST/bin/"

# Test executables, by target name, from cargo's own report of what it built.
cargo test --release --no-run --message-format=json 2>/dev/null | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        name = m["target"]["name"]
        if name in ("gpu", "gpu_fuzz", "gpu_hopper", "decode", "dense", "mask", "merge", "bad_input", "shard"):
            shutil.copy(m["executable"], sys.argv[1] + "/" + name)
' "$DIST/bin"

# The C and C++ examples pick the backend from HIP_ATTN_BACKEND, so they also run the CUDA backend end to end.
cc -std=c11 -Wall -Wextra -Werror -O2 -Iinclude examples/c/example.c -Ltarget/release -lhip_attn -lm -ldl -o "$DIST/bin/example_c"
c++ -std=c++17 -Wall -Wextra -Werror -O2 -Iinclude -Iexamples/cpp examples/cpp/example.cpp -Ltarget/release -lhip_attn -ldl \
    -o "$DIST/bin/example_cpp"
c++ -std=c++17 -Wall -Wextra -Werror -O2 -Iinclude -Iexamples/cpp examples/cpp/sharded_decode.cpp -Ltarget/release \
    -lhip_attn -ldl -o "$DIST/bin/sharded_decode"
# The Go and Zig examples also take the backend from HIP_ATTN_BACKEND; built where their toolchains are found (Zig:
# on PATH or as $ZIG, e.g. the one .ci/run installs; its first build takes a few minutes).
SCRATCH=target/gpu-pack
if command -v go >/dev/null; then
    (cd examples/go && CGO_CFLAGS="-I$PWD/../../include" CGO_LDFLAGS="-L$PWD/../../target/release" \
        GOCACHE="$PWD/../../$SCRATCH/go-cache" GOPATH="$PWD/../../$SCRATCH/go-path" go test -c -o "../../$DIST/bin/example_go_test" .)
fi
ZIG=${ZIG:-$(command -v zig || true)}
if [ -n "$ZIG" ]; then
    rm -rf "$SCRATCH/prefix"
    make --no-print-directory install-only LIBDIR="$PWD/target/release" PREFIX="$PWD/$SCRATCH/prefix" >/dev/null
    (cd examples/zig && "$ZIG" build install -Dlibdir="$PWD/../../$SCRATCH/prefix/lib" --cache-dir "../../$SCRATCH/zig-cache" \
        --prefix "../../$SCRATCH/zig-out")
    cp "$SCRATCH/zig-out/bin/hip_attn_example" "$DIST/bin/example_zig"
fi
# Debug info is most of each binary's size; the device tool carries at most 64 MiB.
strip --strip-debug "$DIST"/bin/*
cp scripts/gpu-run.sh "$DIST/run.sh"
cp scripts/gpu-ab.sh "$DIST/ab.sh"
cp scripts/dense-baseline.py "$DIST/"
du -sh "$DIST"

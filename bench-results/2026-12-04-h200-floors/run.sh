#!/usr/bin/env bash
# Builds and runs the H200 memory-floor microbenchmark; the log lands next to this script and,
# when the device runner sets $OUT, in $OUT too (only $OUT comes back from the device machine).
set -euo pipefail
cd "$(dirname "$0")"
status=0
{ nvcc -O3 -std=c++17 -arch=sm_90a -o floors floors.cu && ./floors; } 2>&1 | tee floors.log || status=$?
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  cp floors.log "$OUT/floors.log"
fi
exit "$status"

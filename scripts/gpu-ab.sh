#!/usr/bin/env bash
# A/B timing on a GPU machine, packed by scripts/gpu-pack.sh as dist/gpu/ab.sh: runs hip-bench binaries built from
# different commits (copied beside the packed one as bin/hip-bench-NAME; "head" is bin/hip-bench itself) in
# alternating rounds in one call, with the same seed, and prints each run's rows. Sub-microsecond decode
# differences and few-percent kernel changes are only trusted from such runs (separate calls land on different
# machines).
#   VARIANTS="old head" ONLY=decode-cached-b16 ROUNDS=2 dist/gpu/ab.sh     (logs and JSON go to $OUT or ./out)
set -uo pipefail
cd "$(dirname "$0")"
export LD_LIBRARY_PATH="$PWD/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
LOG=${OUT:-$PWD/out}
mkdir -p "$LOG"
ONLY=${ONLY:-decode-cached}
for r in $(seq 1 "${ROUNDS:-2}"); do
    for v in ${VARIANTS:-head}; do
        b=bin/hip-bench-$v
        [ "$v" = head ] && b=bin/hip-bench
        "$b" --only "$ONLY" --seed "${SEED:-7}" --json "$LOG/$v-$r.json" >"$LOG/$v-$r.md" 2>"$LOG/$v-$r.err" || echo "FAIL $v round $r"
        echo "== $v round $r"
        grep -E "^\| (decode|prefill|context)" "$LOG/$v-$r.md" | awk -F'|' '{print $2 "|" $3 "|" $4 "|" $5 "|" $6 "|" $11}'
    done
done

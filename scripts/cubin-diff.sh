#!/usr/bin/env bash
# Compares two directories of cubins written by HIP_ATTN_DUMP_CUBINS (tests/kernels_compile.rs), file by file:
#
#   HIP_ATTN_DUMP_CUBINS=/tmp/old cargo test --release --test kernels_compile   # on the old tree
#   HIP_ATTN_DUMP_CUBINS=/tmp/new cargo test --release --test kernels_compile   # on the new tree
#   scripts/cubin-diff.sh /tmp/old /tmp/new
#
# A cubin that is not byte-identical is broken down by ELF section, so the report says which kernels' code
# (.text.<kernel>), resources (.nv.info.<kernel>) or constants changed, and which sections exist on one side only.
# Exit status 0 only when every cubin is byte-identical and both sides hold the same variants.
# To read the SASS itself on a machine without the CUDA toolkit: `pip download --no-deps
# nvidia-cuda-cuobjdump==13.5.37`, unzip the wheel, and run its nvidia/cu13/bin/cuobjdump with `-sass -fun KERNEL
# FILE.cubin` (instructions) or `-res-usage FILE.cubin` (registers, shared memory), so a kernel change's instruction
# count and register use can be checked before any GPU time is spent.
set -euo pipefail
if [ $# -ne 2 ] || [ ! -d "$1" ] || [ ! -d "$2" ]; then
    echo "usage: $0 OLD_DIR NEW_DIR (directories of .cubin files)" >&2
    exit 2
fi
exec python3 - "$1" "$2" <<'PY'
import os, struct, sys

def sections(path):
    """{name: bytes} of a 64-bit little-endian ELF (a cubin)."""
    b = open(path, "rb").read()
    if b[:4] != b"\x7fELF" or b[4] != 2 or b[5] != 1:
        sys.exit(f"{path}: not a 64-bit little-endian ELF")
    shoff, = struct.unpack_from("<Q", b, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", b, 0x3A)
    hdrs = [struct.unpack_from("<IIQQQQIIQQ", b, shoff + i * shentsize) for i in range(shnum)]
    strtab = hdrs[shstrndx]
    def name(off):
        s = b[strtab[4] + off:]
        return s[:s.index(b"\0")].decode()
    out = {}
    for i, h in enumerate(hdrs):
        nm, typ, off, size = name(h[0]), h[1], h[4], h[5]
        data = b"" if typ == 8 else b[off:off + size]  # SHT_NOBITS has no bytes in the file
        out[nm or f"<section {i}>"] = data
    return out

old_dir, new_dir = sys.argv[1], sys.argv[2]
old = {f for f in os.listdir(old_dir) if f.endswith(".cubin")}
new = {f for f in os.listdir(new_dir) if f.endswith(".cubin")}
bad = False
for f in sorted(old ^ new):
    print(f"only in {'OLD' if f in old else 'NEW'}: {f}")
    bad = True
same = 0
for f in sorted(old & new):
    a, b = (open(os.path.join(d, f), "rb").read() for d in (old_dir, new_dir))
    if a == b:
        same += 1
        continue
    bad = True
    sa, sb = sections(os.path.join(old_dir, f)), sections(os.path.join(new_dir, f))
    print(f"DIFFERS: {f} ({len(a)} -> {len(b)} bytes)")
    for s in sorted(set(sa) | set(sb)):
        if s not in sb:
            print(f"    section only in OLD: {s}")
        elif s not in sa:
            print(f"    section only in NEW: {s}")
        elif sa[s] != sb[s]:
            print(f"    section differs: {s} ({len(sa[s])} -> {len(sb[s])} bytes)")
    kept = [s for s in sa if s.startswith(".text.") and s in sb]
    if all(sa[s] == sb[s] for s in kept):
        print(f"    the code of every kernel on both sides ({len(kept)}) is byte-identical")
print(f"{same} of {len(old | new)} cubins byte-identical")
sys.exit(1 if bad else 0)
PY

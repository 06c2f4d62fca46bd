"""Dense attention baseline: PyTorch scaled_dot_product_attention (flash and cuDNN backends) on every prefill and
decode shape that hip-bench times (tools/hip-bench/src/workloads.rs and scan.rs), so that each hip-bench row has a
dense row measured on the same card in the same device call (docs/BENCHMARK-PROTOCOL.md).

Shapes: head_dim 128, bf16; MHA-32 (32 q / 32 kv heads) and GQA-8 (32 q / 8 kv heads, enable_gqa). Prefill: one
causal sequence of T tokens, T = 8k, 32k, 128k (and 512k with --with-512k). Decode: one query per sequence over T
keys (is_causal=False: the newest query sees every key), T = 32k, 128k, 1M at batch 1 and 32k at batch 16.
Timing: CUDA events around every run after warm-up (3 runs; 1 at 512k), median of 20 runs (10 at 128k and above, 5 at 512k; decode 50).

Output: one Markdown row per (backend, shape) on stdout; a backend the installed torch refuses for a shape is
reported as unavailable (and kept going). Options:
  --json FILE    also write every row as JSON (hip-bench --dense FILE reads it)
  --dry-run      list the shapes, import nothing (no torch needed); with --json, write the rows without times
  --decode-only  the decode rows alone
  --prefill-only the prefill rows alone
  --with-512k    add prefill 512k (as hip-bench --with-512k)
Runs on the GPU machine only (PyTorch is there), except --dry-run."""
import datetime
import json
import statistics
import sys

HEAD_DIM = 128
BACKENDS = ("flash", "cudnn")
HEADS = ((32, 32), (32, 8))  # (q heads, kv heads): MHA-32, GQA-8
K = 1024


def shapes(decode_only=False, with_512k=False, prefill_only=False):
    """Every (kind, tokens, heads, kv_heads, batch, causal) that hip-bench's prefill and decode rows use."""
    out = []
    if not decode_only:
        for t in (8 * K, 32 * K, 128 * K) + ((512 * K,) if with_512k else ()):
            for hq, hkv in HEADS:
                out.append(("prefill", t, hq, hkv, 1, True))
    for t, batch in () if prefill_only else ((32 * K, 1), (128 * K, 1), (1024 * K, 1), (32 * K, 16)):
        for hq, hkv in HEADS:
            out.append(("decode", t, hq, hkv, batch, False))
    return out


def runs_for(kind, t):
    if kind == "decode":
        return 50
    return 20 if t < 128 * K else 10 if t < 512 * K else 5


def label(t):
    return f"{t // (1024 * K)}M" if t % (1024 * K) == 0 else f"{t // K}k"


def row(backend, shape, median_ms, runs, error):
    kind, t, hq, hkv, batch, causal = shape
    return {"backend": backend, "kind": kind, "tokens": t, "heads": hq, "kv_heads": hkv, "head_dim": HEAD_DIM,
            "batch": batch, "causal": causal, "median_ms": median_ms, "runs": runs, "error": error}


def markdown_row(r):
    shape = f"{r['heads']}/{r['kv_heads']} heads" + (f" x{r['batch']}" if r["batch"] > 1 else "")
    ms = f"{r['median_ms']:.4f}" if r["median_ms"] is not None else r["error"]
    return f"| {r['backend']} | {r['kind']} {label(r['tokens'])} | {shape} | {ms} |"


def time_ms(torch, fn, runs, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def measure(shape_list, emit):
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
    g = torch.Generator(device="cuda").manual_seed(1)
    for shape in shape_list:
        kind, t, hq, hkv, batch, causal = shape
        tq = t if kind == "prefill" else 1
        q = torch.randn(batch, hq, tq, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=g)
        k, v = (torch.randn(batch, hkv, t, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=g)
                for _ in range(2))
        gqa = {"enable_gqa": True} if hkv != hq else {}
        runs = runs_for(kind, t)
        for name in BACKENDS:
            def call():
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, **gqa)
            try:
                with sdpa_kernel(backends[name]):
                    # One warm-up run at 512k (seconds each) keeps --with-512k within a device step's time limit.
                    r = row(name, shape, time_ms(torch, call, runs, warmup=1 if t >= 512 * K else 3), runs, None)
            except Exception as e:  # a backend the installed torch refuses for this shape: say so, keep going
                r = row(name, shape, None, 0, f"unavailable: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            emit(r)
        del q, k, v
        torch.cuda.empty_cache()


def main(argv):
    json_path = None
    if "--json" in argv:
        i = argv.index("--json")
        if i + 1 >= len(argv):
            sys.exit("dense-baseline.py: --json needs a file name")
        json_path = argv[i + 1]
    known = {"--json", "--dry-run", "--decode-only", "--prefill-only", "--with-512k"}
    unknown = [a for a in argv if a.startswith("--") and a not in known]
    if unknown:
        sys.exit(f"dense-baseline.py: unknown option {unknown[0]}")
    dry = "--dry-run" in argv
    shape_list = shapes("--decode-only" in argv, "--with-512k" in argv, "--prefill-only" in argv)
    if dry:
        device, version = "none (dry run)", "none (dry run)"
    else:
        import torch

        device, version = torch.cuda.get_device_name(), torch.__version__
        print(f"device: {device}, torch {version}")
    doc = {"tool": "dense-baseline.py", "device": device, "torch": version,
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), "dry_run": dry,
           "rows": []}

    def emit(r):
        doc["rows"].append(r)
        print(markdown_row(r), flush=True)
        # Rewritten after every row: a run cut short by the caller's time limit still leaves the rows it measured.
        if json_path:
            with open(json_path, "w") as f:
                json.dump(doc, f, indent=1)
                f.write("\n")

    print("| dense backend | work | shape | median ms |\n|---|---|---|---|", flush=True)
    if dry:
        for shape in shape_list:
            for name in BACKENDS:
                emit(row(name, shape, None, 0, "dry run: not measured"))
    else:
        measure(shape_list, emit)
    if json_path:
        print(f"wrote {json_path} ({len(doc['rows'])} rows)", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Dense attention baseline for BENCHMARKS.md: PyTorch scaled_dot_product_attention (flash and cuDNN backends)
on the MHA-32 shapes of docs/BENCHMARK-PROTOCOL.md (32 heads, head_dim 128, bf16, batch 1, causal). CUDA events
after warm-up, median of 20 runs; prints one Markdown row per (backend, length). Runs on the GPU machine only
(PyTorch is there).
--decode-only: the dense decode rows alone (32k, 128k, 1M), the baseline of hip-bench --scan's ratios."""
import statistics
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def time_ms(fn, runs=20, warmup=3):
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


def main():
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| dense backend | work | median ms |\n|---|---|---|")
    g = torch.Generator(device="cuda").manual_seed(1)
    for t in () if "--decode-only" in sys.argv else (8192, 32768, 131072):
        q, k, v = (torch.randn(1, 32, t, 128, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3))
        for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
            try:
                with sdpa_kernel(be):
                    ms = time_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True),
                                 runs=20 if t < 131072 else 10)
                print(f"| {name} | prefill {t // 1024}k | {ms:.3f} |")
            except Exception as e:  # a backend the installed torch lacks: say so, keep going
                print(f"| {name} | prefill {t // 1024}k | unavailable: {type(e).__name__} |")
            sys.stdout.flush()
        del q, k, v
    # Dense decode: one query against a 32k / 128k / 1M cache (flash-decoding class kernels in torch).
    for t in (32768, 131072, 1048576):
        q = torch.randn(1, 32, 1, 128, device="cuda", dtype=torch.bfloat16, generator=g)
        k, v = (torch.randn(1, 32, t, 128, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(2))
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            ms = time_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v), runs=50)
        print(f"| flash | decode {t // 1024}k | {ms:.4f} |")
        sys.stdout.flush()
        del q, k, v


if __name__ == "__main__":
    main()

"""Two bounds for issue 15's decode rows, measured beside hip-bench on the same card (2026-12-04, session 9).

1. Launch floor: a CUDA graph of one small kernel, replayed with one event pair around each replay (hip-bench's
   method for the decode graph rows), median of 300 after warm-up.
2. Gather bandwidth: the K and V rows a cached MHA-32 batch-16 step at 32k reads (per sequence and head: 4 sink
   tokens, 256 blocks of 2 tokens at random, the last 128 tokens; paged, page size 64, pages shuffled, layout
   [page][token][head][128] bf16 as hip-bench's cache), read by a Triton kernel (one program per sequence and
   head, like our 512 CTAs) that sums them, against the same kernel reading the same number of rows laid out
   contiguously. Four index sets rotate so that a round reads ~4x the L2.
"""
import json, sys, torch, triton, triton.language as tl

dev = torch.device("cuda")
res = {"gpu": torch.cuda.get_device_name(0)}

def med_time(fn, n=300, warm=20):
    for _ in range(warm):
        fn(0)
    ts = []
    for i in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(i); b.record(); b.synchronize()
        ts.append(a.elapsed_time(b) * 1000.0)
    ts.sort()
    return ts[len(ts) // 2]

# 1. launch floor
for n in (1, 32768):
    x = torch.zeros(n, device=dev)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        x.add_(1); torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            x.add_(1)
    torch.cuda.synchronize()
    res[f"graph_replay_one_kernel_{n}_elems_us"] = med_time(lambda i: g.replay())

# 2. gather bandwidth
@triton.jit
def gather_sum(K, V, IDX, OUT, n_per, H: tl.constexpr, D: tl.constexpr, BLK: tl.constexpr):
    pid = tl.program_id(0)
    h = pid % H
    offs_d = tl.arange(0, D)
    acc = tl.zeros([D], dtype=tl.float32)
    for start in range(0, n_per, BLK):
        i = start + tl.arange(0, BLK)
        m = i < n_per
        tok = tl.load(IDX + pid * n_per + i, mask=m, other=0).to(tl.int64)
        row = tok * H + h
        k = tl.load(K + row[:, None] * D + offs_d[None, :], mask=m[:, None], other=0.0)
        v = tl.load(V + row[:, None] * D + offs_d[None, :], mask=m[:, None], other=0.0)
        acc += tl.sum(k.to(tl.float32) + v.to(tl.float32), axis=0)
    tl.store(OUT + pid * D + offs_d, acc)

B, H, D, T, PS = 16, 32, 128, 32768, 64
pages_per_seq = T // PS
g = torch.Generator(device="cpu").manual_seed(7)
perm = torch.randperm(B * pages_per_seq, generator=g)
K = torch.randn(B * T * H * D, device=dev, dtype=torch.bfloat16)
V = torch.randn(B * T * H * D, device=dev, dtype=torch.bfloat16)
def index_set():
    rows = []
    for b in range(B):
        for h in range(H):
            blocks = torch.randperm((T - 132) // 2, generator=g)[:256].sort().values
            toks = torch.cat([torch.arange(4), 4 + (blocks[:, None] * 2 + torch.arange(2)).flatten(), torch.arange(T - 128, T)])
            phys = perm[b * pages_per_seq + toks // PS] * PS + toks % PS
            rows.append(phys)
    return torch.stack(rows).to(torch.int32).to(dev)
sets = [index_set() for _ in range(4)]
n_per = sets[0].shape[1]
nbytes = B * H * n_per * 2 * D * 2
res["gather_rows_per_head"] = n_per
res["gather_bytes_MB"] = nbytes / 1e6
out = torch.empty(B * H * D, device=dev, dtype=torch.float32)
contig = [torch.arange(B * H * n_per, device=dev, dtype=torch.int32).view(B * H, n_per) + s * B * H * n_per for s in range(4)]
best = {}
for blk in (32, 64):
    for nw in (4, 8):
        for ns in (2, 3, 4):
            for kind, idx, hh in (("paged_scattered", sets, H), ("contiguous", contig, 1)):
                f = lambda i: gather_sum[(B * H,)](K, V, idx[i % 4], out, n_per, H=hh, D=D, BLK=blk, num_warps=nw, num_stages=ns)
                t = med_time(f, n=100, warm=5)
                res[f"gather_{kind}_blk{blk}_w{nw}_s{ns}_us"] = t
                if kind not in best or t < best[kind][0]:
                    best[kind] = (t, blk, nw, ns)
for kind, (t, blk, nw, ns) in best.items():
    res[f"best_{kind}"] = {"us": t, "TB_s": nbytes / t / 1e6, "blk": blk, "warps": nw, "stages": ns}
json.dump(res, open(sys.argv[1], "w"), indent=1)
print(json.dumps({k: v for k, v in res.items() if not k.startswith("gather_")}, indent=1))

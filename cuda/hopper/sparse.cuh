// hip_prefill_attn_hopper_sparse: the block-sparse prefill attention (hip_prefill_attn's job: same inputs, key
// lists, outputs and rules) on the Hopper pipeline of fa3.cuh, gathering the key list's rows. The host picks it only
// for bf16, head_dim 128, sm_90a and bq <= HIP_ATTN_HOPPER_SPARSE_MAX_BQ (backend.rs); every other call keeps
// hip_prefill_attn. Included by hip_attn.cu after fa3.cuh.
//
// One CTA of one warpgroup (HIP_ATTN_HOPPER_SPARSE_THREADS threads) per (query block, q head): 64 query rows, the
// block's rows first. At bq <= 32 rows 32-63 repeat rows 0-31 for a key split (HsGeo below); otherwise rows past the
// block hold zero queries, and their warps join the MMAs and skip the softmax.
// Per tile of HS_KEYS keys of the key list: S = Q K^T on wgmma with Q as register fragments, the classic kernel's
// masking and online softmax (mask.cuh, softmax.cuh: a warp's wgmma accumulator is mma.sync's C fragment), then
// O += P V on wgmma with P from registers; the epilogue is the classic kernel's (epilogue.cuh).
// The gather: every thread copies 16-byte chunk tid % 16 of 8 key rows of each tile with cp.async, straight into
// the 128-byte swizzled layout wgmma reads (chunk c of row r at chunk c ^ (r % 8)), HS_STAGES - 1 tiles ahead of
// the one computed; one CTA barrier per tile publishes a landed tile and frees the stage the next copies fill.
// The selected blocks are a few tokens each (bk), so tiles are gathered by rows rather than by tensor copies; a
// warp-specialized form (one producer warp issuing every copy, mbarrier hand-offs) took twice the classic kernel's
// time (its one warp issues the tile's 2048 copies; BENCHMARKS.md optimization log, 2026-12-04).

static_assert(HIP_HEAD_DIM == HOPPER_D, "the Hopper block-sparse kernel is built for head_dim 128 only");
static_assert(HIP_BQ <= HIP_ATTN_HOPPER_SPARSE_MAX_BQ && HIP_ATTN_HOPPER_SPARSE_MAX_BQ == 64,
              "a query block is at most the 64 rows of one warpgroup MMA");

#define HS_KEYS HIP_ATTN_HOPPER_SPARSE_KEYS
#define HS_STAGES HIP_ATTN_HOPPER_SPARSE_STAGES
#define HS_THREADS HIP_ATTN_HOPPER_SPARSE_THREADS
// Bytes of one 64-column half of a K or V tile (HS_KEYS rows of 128 bytes), and of the tile.
#define HS_HALF (HS_KEYS * 128)
#define HS_TILE (2 * HS_HALF)
#define HS_SMEM_BYTES hip_contract::hopper_sparse_smem(HS_STAGES, HS_KEYS, HIP_HEAD_DIM, hip::KBX)

static_assert(HS_KEYS == 64 && HS_THREADS == 128, "one warpgroup; 16 threads per key row, 8 rows each per tile");
static_assert(HS_STAGES >= 2, "the copies run at least one tile ahead");

// Shared-memory map: the K tiles of the stages, their V tiles (each on a 1024-byte boundary: the swizzle pattern
// repeats every 8 rows of 128 bytes), the stages' key positions and flags, the block list; hopper_sparse_smem in
// src/contract.rs is its size with the alignment slack.
struct hs_smem {
    unsigned k, v;
    int* kpos;    // [HS_STAGES][HS_KEYS]
    int* vis;     // [HS_STAGES][4]: per copying warp, whether every query of the block sees all its rows of the tile
    int* blocks;  // [KBX]
};

static __device__ __forceinline__ hs_smem hs_smem_map(unsigned char* dyn) {
    hs_smem sm;
    const unsigned base = smem_u32(dyn);
    const unsigned pad = (1024u - (base & 1023u)) & 1023u;
    sm.k = base + pad;
    sm.v = sm.k + HS_STAGES * HS_TILE;
    sm.kpos = reinterpret_cast<int*>(dyn + pad + 2 * HS_STAGES * HS_TILE);
    sm.vis = sm.kpos + HS_STAGES * HS_KEYS;
    sm.blocks = sm.vis + HS_STAGES * 4;
    return sm;
}
static_assert(1024 + 2 * HS_STAGES * HS_TILE + 4 * HS_STAGES * (HS_KEYS + 4) + 4 * hip::KBX <= HS_SMEM_BYTES,
              "the shared-memory layout fits in hip_contract::hopper_sparse_smem");

// With bq <= 32 the block has at most 32 rows: warps 2 and 3 repeat the rows of warps 0 and 1 and take the second
// half of every tile's keys (a key split, as hip_prefill_attn's), so that all four warps share the softmax; their
// states are merged at the end. The epilogue's view of that tiling: one 16-row m-tile per warp, RG row groups.
struct HsGeo {
    static constexpr int MT = 1;
    static constexpr int KS = hip::BQ <= 32 ? 2 : 1;  // key splits
    static constexpr int RG = 4 / KS;                 // row groups of 16 rows
    static constexpr int KW = HS_KEYS / KS;           // keys per warp per tile
};

// Masking and online softmax of this warp's part H of a score tile (sc: all HS_KEYS columns of its 16 rows) into
// P fragments pf (zero for the other parts' keys). unmasked (warp-uniform): every query sees every key of the tile.
template <int H>
static __device__ __forceinline__ void hs_softmax(float (&sc)[HS_KEYS / 8][4], hip::u32 (&pf)[HS_KEYS / 16][4],
                                                  bool unmasked, const int* kpos, const int (&lim)[2], float sl2,
                                                  int tq, float (&mrow)[2], float (&lrow)[2],
                                                  float (&o)[hip::D / 8][4]) {
    constexpr int KW = HsGeo::KW;
    float(&part)[KW / 8][4] = *reinterpret_cast<float(*)[KW / 8][4]>(&sc[H * KW / 8][0]);
    hip::u32(&pp)[KW / 16][4] = *reinterpret_cast<hip::u32(*)[KW / 16][4]>(&pf[H * KW / 16][0]);
#pragma unroll
    for (int kk = 0; kk < HS_KEYS / 16; ++kk)
        if (kk / (KW / 16) != H) pf[kk][0] = pf[kk][1] = pf[kk][2] = pf[kk][3] = 0u;
    float mx[2] = {HIP_NEG_INF, HIP_NEG_INF};
    hip::prefill_mask_tile<KW>(part, mx, unmasked, kpos + H * KW, lim, sl2, tq);
    hip::prefill_online_softmax<KW>(part, mx, mrow, lrow, o, pp);
}

extern "C" __global__ void __launch_bounds__(HS_THREADS)
    hip_prefill_attn_hopper_sparse(const __grid_constant__ hip_prefill_params p) {
    using namespace hip;
    extern __shared__ __align__(16) unsigned char hs_dyn_smem[];
    const int j = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

    PrefillSeq s;
    const bool ok = prefill_seq(p, b, s);  // a barrier: every thread is still here
    // The dense kernels take the sequences with bad bounds and those whose every block is selected.
    if (!ok || prefill_seq_dense(p, s)) return;
    const long long slot = s.q_range_ok ? (long long)s.q0 / BQ + b + j : -1;
    if (slot < 0 || slot >= p.slots) {
        prefill_skip_block<BQ, HS_THREADS>(p, s, ok, j, h, tid);
        return;
    }
    if ((long long)j * BQ >= s.Tq) return;

    const PrefillBlock blk = prefill_block<BQ>(p, s, j, h);
    const int first = blk.first, len = blk.len, p0 = blk.p0;

    const hs_smem sm = hs_smem_map(hs_dyn_smem);
    const KeyList kl = prefill_sparse_keys<HS_THREADS>(p, s, slot, blk, sm.blocks, tid);
    const int ntiles = ceil_div(kl.size(), HS_KEYS);
    __syncthreads();  // publishes the block list

    // The gather: thread tid copies chunk c = tid % 16 (half c / 8, 16-byte chunk c % 8 of its 128-byte row) of rows
    // 8 i + rs, i < 8, rs = tid / 16 = 2 warp + lane / 16: its swizzled chunk is the same in all of them. Lanes
    // 2 i' + rsub (< 16) of a warp resolve the key positions of its rows 8 i' + 2 warp + rsub, which the other
    // lanes take by shuffle and lanes < 16 store for the masking.
    // A tile needs no mask where each of its keys lies at or before the block's first query (causal), or exists.
    const int vis_lim = CAUSAL ? p0 : INVALID_POS - 1;
    const int c = tid & 15, rs = tid >> 4;
    const elem_t* kc =
        (const elem_t*)p.k + (long long)s.k0 * p.k_tok_stride + (long long)blk.kvh * p.k_head_stride + c * 8;
    const elem_t* vc =
        (const elem_t*)p.v + (long long)s.k0 * p.v_tok_stride + (long long)blk.kvh * p.v_head_stride + c * 8;
    const unsigned cdst = (c >> 3) * HS_HALF + rs * 128 + (((c & 7) ^ rs) << 4);  // + 8 i * 128 for row 8 i + rs
    const int prow = 8 * ((lane >> 1) & 7) + 2 * warp + (lane & 1);
    auto issue = [&](int t) {
        if (t < ntiles) {
            const int st = t % HS_STAGES;
            const int mypos = kl.pos(t * HS_KEYS + prow);
            if (lane < 16) sm.kpos[st * HS_KEYS + prow] = mypos;
            const bool vis = __all_sync(0xffffffffu, mypos <= vis_lim);
            if (lane == 0) sm.vis[st * 4 + warp] = vis;
            const unsigned kd = sm.k + st * HS_TILE + cdst, vd = sm.v + st * HS_TILE + cdst;
#pragma unroll
            for (int i = 0; i < HS_KEYS / 8; ++i) {
                const int pos = __shfl_sync(0xffffffffu, mypos, 2 * i + (lane >> 4));
                const bool v = pos != INVALID_POS;
                cp_async16(kd + i * 8 * 128, kc + (v ? pos * p.k_tok_stride : 0), v);
                cp_async16(vd + i * 8 * 128, vc + (v ? pos * p.v_tok_stride : 0), v);
            }
        }
        cp_async_commit();  // also past the last tile, so that the wait counts stay uniform
    };

    const int g = lane >> 2, tq = lane & 3;
    const int ks = warp / HsGeo::RG, r = warp % HsGeo::RG;  // key split, row group
    const int row0 = 16 * r;                                // the warp's first row of the block
    const bool active = row0 < len;                         // warp-uniform

    // Q as m16n8k16 A fragments (what wgmma takes from registers): k-step kk, rows g and g + 8 of the warp,
    // columns 16 kk + 2 tq (+1) and + 8.
    u32 qf[D / 16][4];
    {
        const elem_t* qg = (const elem_t*)p.q + (long long)(s.q0 + first) * p.q_tok_stride +
                           (long long)h * p.q_head_stride + 2 * tq;
        const int ra = row0 + g, rb = ra + 8;
        const u32* qa = (const u32*)(qg + (long long)ra * p.q_tok_stride);
        const u32* qb = (const u32*)(qg + (long long)rb * p.q_tok_stride);
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            qf[kk][0] = ra < len ? qa[8 * kk] : 0u;
            qf[kk][1] = rb < len ? qb[8 * kk] : 0u;
            qf[kk][2] = ra < len ? qa[8 * kk + 4] : 0u;
            qf[kk][3] = rb < len ? qb[8 * kk + 4] : 0u;
        }
    }
    // Query rows of this lane (g and g + 8); padded rows borrow the last query's position.
    int lim[2];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) lim[hh] = CAUSAL ? p0 + cmin(row0 + g + 8 * hh, len - 1) : INVALID_POS - 1;
    const float sl2 = p.scale * LOG2E;

    // o[n] is n-tile n (8 columns) of the warp's 16 rows: the accumulator of m64n64 for 64-column half n / 8.
    float o[1][D / 8][4];
    float mrow[1][2] = {{HIP_NEG_INF, HIP_NEG_INF}}, lrow[1][2] = {{0.f, 0.f}};
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) o[0][n][i] = 0.f;

#pragma unroll
    for (int t = 0; t < HS_STAGES - 1; ++t) issue(t);
    for (int t = 0; t < ntiles; ++t) {
        const int st = t % HS_STAGES;
        cp_async_wait<HS_STAGES - 2>();  // this thread's copies of tile t landed
        fence_proxy_async_smem();        // ordered before the wgmma reads (async proxy)
        __syncthreads();                 // tile t published; every warp is done with tile t - 1's stage
        const unsigned kt = sm.k + st * HS_TILE, vt = sm.v + st * HS_TILE;

        // S (the warp's 16 rows x 64 keys) = Q K^T: k-step kk is 32 bytes into the 128-byte rows of half kk / 4.
        float sc[HS_KEYS / 8][4];
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk)
            wgmma_rs_n64<true>(&sc[0][0], qf[kk], gmma_desc(kt + (kk / 4) * HS_HALF + (kk % 4) * 32, 16, 1024), kk > 0);
        wgmma_commit();
        issue(t + HS_STAGES - 1);  // into tile t - 1's stage, while the MMAs run
        wgmma_wait<0>();
        pin<HS_KEYS / 2>(&sc[0][0]);

        u32 pf[HS_KEYS / 16][4];
        if (active) {
            const int4 v4 = *reinterpret_cast<const int4*>(&sm.vis[st * 4]);
            const bool unmasked = v4.x & v4.y & v4.z & v4.w;
            const int* kp = &sm.kpos[st * HS_KEYS];
            if (ks == 0) hs_softmax<0>(sc, pf, unmasked, kp, lim, sl2, tq, mrow[0], lrow[0], o[0]);
            else if (HsGeo::KS > 1)
                hs_softmax<HsGeo::KS - 1>(sc, pf, unmasked, kp, lim, sl2, tq, mrow[0], lrow[0], o[0]);
        } else {
#pragma unroll
            for (int kk = 0; kk < HS_KEYS / 16; ++kk) pf[kk][0] = pf[kk][1] = pf[kk][2] = pf[kk][3] = 0u;
        }

        // O += P V: keys 16 kk .. 16 kk + 15 are rows 16 kk.. of each half of the V tile (fa3.cuh's issue_pv).
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < HS_KEYS / 16; ++kk)
#pragma unroll
            for (int h2 = 0; h2 < 2; ++h2)
                wgmma_pv(&o[0][8 * h2][0], pf[kk], gmma_desc(vt + h2 * HS_HALF + kk * 2048, 1024, 1024));
        wgmma_commit();
        wgmma_wait<0>();
        pin<D / 2>(&o[0][0][0]);
    }
    cp_async_wait<0>();

#pragma unroll
    for (int hh = 0; hh < 2; ++hh) lrow[0][hh] = quad_sum(lrow[0][hh]);
    // (the K stages, idle now that every copy has landed, hold the merge's scratch)
    static_assert((HsGeo::KS - 1) * HsGeo::RG * 16 * (D + 2) * 4 <= HS_STAGES * HS_TILE, "merge scratch fits");
    float* scratch = reinterpret_cast<float*>(hs_dyn_smem + (sm.k - smem_u32(hs_dyn_smem)));
    if (HsGeo::KS > 1) prefill_merge_splits<HsGeo>(o, mrow, lrow, scratch, ks, r, g, tq);
    if (ks == 0)
        prefill_write_rows<HsGeo>(o, mrow, lrow, p, (elem_t*)p.o, (float*)p.lse, s.q0, first, h, row0, len, g, tq);
}

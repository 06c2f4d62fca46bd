// Prefill attention (FlashAttention-2 style): one CTA per query tile and q head gathers key tiles from the HiP key
// list with cp.async and computes S = QK^T and O += PV with mma.sync. prefill_attn runs the stages in order: the
// main loop over key tiles, in each tile the gather of the next tile (prefill_gather), S = QK^T (prefill_qk),
// the masking (mask.cuh), the online softmax (softmax.cuh, log2 domain) and O += PV (prefill_pv), then the epilogue
// (epilogue.cuh: merge of the key splits, row normalization, LSE). The loop, its barriers and the cp.async waits
// stay here, where the order of the stages is visible. The gather and MMA stages compile to the same cubins as
// when they were inline; the softmax as a function changed only the schedule, and a GPU A/B measured no change.
// Included by attention.cuh.
#ifndef HIP_ATTN_ATTN_PREFILL_CUH
#define HIP_ATTN_ATTN_PREFILL_CUH

namespace hip {

// ---------------------------------------------------------------------------------------------------------------
// Prefill geometry for a CTA of QT query rows: QT = BQ for the block-sparse kernel (one CTA per query block), or
// the dense kernel's larger tile (hip_contract::dense_rows) when every query block attends every key it may see, so
// that one gathered K/V tile serves four times the rows. Warps are (row group r, key split s): a row group is
// 16 * MT query rows (QT padded to that; MT below). With one or two row groups, two warps share each row group
// and split every key tile in halves (merging their softmax states at the end), so the default BQ = 32 still
// runs 4 warps per CTA.
// K and V tiles are double-buffered: tile t+1 is in flight (cp.async) while tile t is computed.
// The dense kernel (head_dim <= 128) gives each warp MT = 2 m-tiles (32 rows), as FlashAttention-2 does: every K
// and V fragment read from shared memory then feeds two MMAs, which halves the shared-memory traffic per FLOP
// that one 16-row m-tile per warp spends (the kernel's limit at 8 warps of 16 rows). Q then stays in shared memory
// (its fragments no longer fit in registers beside two m-tiles of O) and 4-warp CTAs run two per SM.
template <int QT, bool DENSE>
struct PfGeo {
    static constexpr int MT = DENSE && D <= 128 ? 2 : 1;  // 16-row m-tiles per warp
    static constexpr int THREADS = DENSE ? hip_contract::dense_threads(D) : hip_contract::prefill_threads(QT, D);
    static constexpr int WARPS = THREADS / 32;
    static constexpr int BQP = round_up(QT, 16 * MT);
    static constexpr int RG = BQP / (16 * MT);                     // row groups (of 16 * MT rows)
    static constexpr int TK = hip_contract::prefill_keys(D);        // keys per stage
    static constexpr int KS = WARPS / RG;                          // key splits inside a tile
    static constexpr int KW = TK / KS;                             // keys per warp per tile
    // Threads per gathered key row: the largest power of two that THREADS / TK allows, at most one per 16-byte
    // chunk (where that ratio is not a power of two, e.g. 96 threads for 32 keys, some threads sit the copies out).
    static constexpr int SUBS = cmin(D / 8, prev_pow2(cmax(1, THREADS / TK)));
    // CTAs per SM the register budget is sized for: with a key split (half the score tile per warp) up to
    // head_dim 128, 128 registers per thread (no spills on sm_90 at BQ <= 32: 4 CTAs instead of the 3 that ~157
    // registers allowed); else the compiler's choice (without the split, a 128 cap spills 40-100 bytes; 8-warp
    // CTAs capped so ran 6% slower than one CTA of ~168 registers per SM).
    // (Two m-tiles per warp: two CTAs of up to 255 registers.)
    static constexpr int MIN_CTAS = MT == 2 ? 2 : D <= 128 && KS == 2 ? cmax(1, 65536 / (THREADS * 128)) : 1;
    static_assert(WARPS == RG * (DENSE ? 1 : hip_contract::prefill_ksplit(QT, D)), "thread macros disagree with the tiling");
    static_assert(MT == 1 || KS == 1, "two m-tiles per warp only without a key split");
    static_assert(KW % 16 == 0, "each warp needs whole 16-key k-steps for P.V");
    static_assert(MT > 1 || BQP * ROW <= 4 * TK * ROW, "Q staging must fit in the K/V stage buffers");
    static_assert((KS - 1) * RG * 16 * (D + 2) * 4 <= 4 * TK * ROW * 2, "split merge scratch must fit in K/V stages");
};

template <int QT, bool DENSE>
struct PrefillSmem {
    using G = PfGeo<QT, DENSE>;
    alignas(16) elem_t kv[2][2][G::TK * ROW];      // [stage][K, V] (first: Q staging when MT == 1; last:
                                                   // split-merge scratch)
    alignas(16) elem_t q[G::MT > 1 ? G::BQP * ROW : 8];  // MT > 1: Q, read at every tile
    int kpos[2][G::TK];                            // key position of each row of a stage
    int blocks[DENSE ? 1 : KBX];                   // selected blocks of this query block
};

// A sequence whose every query block has a search domain of at most KB blocks: the search selects all of them, so
// each query attends every key up to its own position (causal) or every key (non-causal). It depends on the
// sequence alone, so the kernel that takes a sequence never depends on the rest of the batch.
__device__ __forceinline__ bool prefill_seq_dense(const hip_prefill_params& p, const PrefillSeq& s) {
    const int p0 = s.Tk - s.Tq + (s.Tq > 0 ? (s.Tq - 1) / BQ * BQ : 0);  // first query of the last block
    return num_search_blocks(p.sink, local_start(p.sink, p.window, p0, s.Tk)) <= KB;
}

// A query block whose sequence is skipped (bad bounds) or whose mask slot lies outside the workspace (ok: the
// sequence's bounds passed): its rows are zeroed (lse -inf), so that a skipped sequence never leaves stale output
// behind, and HIP_ATTN_DEVERR_SEQLENS is raised. Block j of QT rows, q head h, THREADS threads.
template <int QT, int THREADS>
__device__ __forceinline__ void prefill_skip_block(const hip_prefill_params& p, const PrefillSeq& s, bool ok, int j,
                                                   int h, int tid) {
    constexpr int CPR = D / 8;
    if (tid == 0 && (!ok || (long long)j * QT < s.Tq)) set_error(p.error_flag, HIP_ATTN_DEVERR_SEQLENS);
    if (!s.q_range_ok) return;
    elem_t* obase = (elem_t*)p.o;
    float* lse_out = (float*)p.lse;
    const int first = j * QT;
    const int len = cmin(QT, s.Tq - first);
    for (int c = tid; c < len * CPR; c += THREADS) {
        const int r = c / CPR, part = c - r * CPR;
        *(uint4*)(obase + (long long)(s.q0 + first + r) * p.o_tok_stride + (long long)h * p.o_head_stride +
                  part * 8) = make_uint4(0, 0, 0, 0);
    }
    if (lse_out)
        for (int r = tid; r < len; r += THREADS)
            lse_out[(long long)(s.q0 + first + r) * p.num_q_heads + h] = HIP_NEG_INF;
}

// Query block j (QT rows) of sequence s for q head h: its rows, key positions and heads.
struct PrefillBlock {
    int first, len;  // first row of the block in the sequence, rows in it
    int p0, plast;   // key positions of its first and last query (queries are aligned to the end of the keys)
    int e;           // local_start of its first query: the search domain is [sink, e)
    int mh, kvh;     // its mask head and kv head
};

template <int QT>
__device__ __forceinline__ PrefillBlock prefill_block(const hip_prefill_params& p, const PrefillSeq& s, int j, int h) {
    PrefillBlock k;
    k.first = j * QT;
    k.len = cmin(QT, s.Tq - k.first);
    k.p0 = s.Tk - s.Tq + k.first;
    k.plast = k.p0 + k.len - 1;
    k.e = local_start(p.sink, p.window, k.p0, s.Tk);
    k.mh = SHARE ? h / GROUP : h;
    k.kvh = h / GROUP;
    return k;
}

// The key list of block-sparse query block q (docs/ALGORITHM.md section 6): the sinks, the selected blocks of mask
// slot `slot` and its mask head (copied into `blocks`, shared memory, by the CTA's THREADS threads; the caller's
// barrier publishes them), the local range [e, plast] (causal).
template <int THREADS>
__device__ __forceinline__ KeyList prefill_sparse_keys(const hip_prefill_params& p, const PrefillSeq& s, long long slot,
                                                       const PrefillBlock& q, int* blocks, int tid) {
    const int e = q.e;
    int count = 0;
    if (KB > 0) {
        const long long m = slot * p.mask_heads + q.mh;
        count = cmin(cmax(((const int*)p.mask_cnt)[m], 0), KB);
        const int* src = (const int*)p.mask_idx + m * KB;
        for (int i = tid; i < count; i += THREADS) blocks[i] = src[i];
    }
    KeyList kl;
    kl.nS = cmin(p.sink, s.Tk);
    kl.nM = count * BK;
    kl.nL = CAUSAL ? cmax(0, q.plast + 1 - e) : 0;
    kl.sink = p.sink;
    kl.e = e;
    kl.NB = num_search_blocks(p.sink, e);
    kl.blocks = blocks;
    return kl;
}

// One CTA: QT query rows of one q head. The block-sparse kernel (DENSE false) takes the valid sequences that
// prefill_seq_dense rejects; the dense one takes the others (and reports bad sequence bounds), reads no mask and
// starts the longest tiles first.
template <int QT, bool DENSE>
__device__ __forceinline__ void prefill_attn(const hip_prefill_params& p) {
    using G = PfGeo<QT, DENSE>;
    constexpr int PF_THREADS = G::THREADS, BQP = G::BQP, RG = G::RG, PF_TK = G::TK, KS = G::KS, KW = G::KW;
    constexpr int PF_SUBS = G::SUBS, MT = G::MT;
    static_assert(DENSE || sizeof(PrefillSmem<QT, DENSE>) <= 48 * 1024, "prefill attention exceeds 48 KB static smem");
    static_assert(!DENSE || sizeof(PrefillSmem<QT, DENSE>) <= hip_contract::dense_smem(D),
                  "dense prefill attention needs more shared memory than the host launches it with");
    PrefillSmem<QT, DENSE>& sm = cta_smem<PrefillSmem<QT, DENSE>, DENSE>();
    const int j = DENSE && CAUSAL ? gridDim.x - 1 - blockIdx.x : blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tq = lane & 3;
    constexpr int CPR = D / 8;

    PrefillSeq s;
    const bool ok = prefill_seq(p, b, s);
    // The dense kernel is always launched (the host may skip the block-sparse one), so it also takes the sequences
    // with bad bounds: their rows are zeroed and the error reported whichever route they would have taken.
    if (DENSE ? ok && !prefill_seq_dense(p, s) : !ok || prefill_seq_dense(p, s)) return;  // the other kernel's
    const long long slot = s.q_range_ok ? (long long)s.q0 / BQ + b + j : -1;
    const bool slot_ok = DENSE || (slot >= 0 && slot < p.slots);
    elem_t* obase = (elem_t*)p.o;
    float* lse_out = (float*)p.lse;

    if (!ok || !slot_ok) {
        prefill_skip_block<QT, PF_THREADS>(p, s, ok, j, h, tid);
        return;
    }
    if ((long long)j * QT >= s.Tq) return;

    const PrefillBlock blk = prefill_block<QT>(p, s, j, h);
    const int first = blk.first, len = blk.len, p0 = blk.p0, plast = blk.plast, kvh = blk.kvh;

    KeyList kl;
    if (DENSE) {  // one local range from key 0: [0, plast] (causal) or [0, Tk)
        kl.nS = kl.nM = 0;
        kl.nL = CAUSAL ? plast + 1 : s.Tk;
        kl.sink = kl.e = kl.NB = 0;
        kl.blocks = sm.blocks;
    } else {
        kl = prefill_sparse_keys<PF_THREADS>(p, s, slot, blk, sm.blocks, tid);
    }
    const int nkeys = kl.size();
    const int ntiles = ceil_div(nkeys, PF_TK);

    const elem_t* qg = (const elem_t*)p.q + (long long)(s.q0 + first) * p.q_tok_stride + (long long)h * p.q_head_stride;
    const elem_t* kg = (const elem_t*)p.k + (long long)s.k0 * p.k_tok_stride + (long long)kvh * p.k_head_stride;
    const elem_t* vg = (const elem_t*)p.v + (long long)s.k0 * p.v_tok_stride + (long long)kvh * p.v_head_stride;

    // Stage Q (zero rows past the block): MT == 1 through the K/V buffers, into registers as A fragments; MT > 1
    // into its own buffer, where the A fragments are read at every tile.
    elem_t* qs = MT > 1 ? &sm.q[0] : &sm.kv[0][0][0];
    for (int c = tid; c < BQP * CPR; c += PF_THREADS) {
        const int r = c / CPR, part = c - r * CPR;
        cp_async16(smem_addr(&qs[r * ROW + part * 8]), qg + (long long)r * p.q_tok_stride + part * 8, r < len);
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();  // also publishes sm.blocks

    const int r = warp % RG;   // row group
    const int ks = warp / RG;  // key split
    const int row0 = r * 16 * MT;  // the warp's first query row
    const u32 q_lane = smem_addr(qs) + ((row0 + (lane & 15)) * ROW + (lane >> 4) * 8) * 2;
    u32 qf[MT == 1 ? D / 16 : 1][4];
    if (MT == 1) {
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) ldsm_x4(q_lane + kk * 32, qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
        __syncthreads();  // Q staging area becomes the K/V stages
    }

    // ldmatrix addresses: one smem base plus compile-time offsets, so they fold into the instruction's immediate.
    constexpr u32 V_BYTES = PF_TK * ROW * 2;
    constexpr u32 STAGE_BYTES = 2 * V_BYTES;
    const u32 kv_lane = smem_addr(&sm.kv[0][0][0]) + ks * KW * ROW * 2;
    const u32 k_lane_off = (((lane & 7) + ((lane >> 4) << 3)) * ROW + ((lane >> 3) & 1) * 8) * 2;
    const u32 v_lane_off = ((lane & 15) * ROW + (lane >> 4) * 8) * 2;

    // The K/V gather (prefill_gather): a copying thread takes the same row and chunks of every tile. issue(t)
    // always commits a group, also past the last tile, so that the wait counts stay uniform.
    static_assert(PF_TK * PF_SUBS <= PF_THREADS, "one row per copying thread");
    const int crow = tid / PF_SUBS, csub = tid - crow * PF_SUBS;
    const bool copier = tid < PF_TK * PF_SUBS;
    const u32 kd0 = smem_addr(&sm.kv[0][0][crow * ROW + csub * 8]);
    const elem_t* kg_c = kg + csub * 8;
    const elem_t* vg_c = vg + csub * 8;
    auto issue = [&](int t) {
        if (t < ntiles)
            prefill_gather<PF_TK, PF_SUBS, PF_THREADS, DENSE>(sm, p, kl, t, tid, kg, vg, copier, crow, csub, kd0, kg_c,
                                                              vg_c);
        cp_async_commit();
    };

    // Query rows of this lane: g and g + 8 of each m-tile. Padded rows borrow the last query's position.
    int lim[MT][2];
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            const int qi = cmin(row0 + m * 16 + g + hh * 8, len - 1);
            lim[m][hh] = CAUSAL ? p0 + qi : INVALID_POS - 1;
        }
    const float sl2 = p.scale * LOG2E;

    float o[MT][D / 8][4];
    float mrow[MT][2], lrow[MT][2];
#pragma unroll
    for (int m = 0; m < MT; ++m) {
#pragma unroll
        for (int n = 0; n < D / 8; ++n)
#pragma unroll
            for (int i = 0; i < 4; ++i) o[m][n][i] = 0.f;
        mrow[m][0] = mrow[m][1] = HIP_NEG_INF;
        lrow[m][0] = lrow[m][1] = 0.f;
    }

    issue(0);
    for (int t = 0; t < ntiles; ++t) {
        issue(t + 1);        // stage (t+1)&1 was released by the barrier that ended tile t-1
        cp_async_wait<1>();  // tile t landed
        __syncthreads();
        const int st = t & 1;

        float sc[MT][KW / 8][4];
        u32 qa[MT][4];  // prefill_qk's scratch (see there why it is declared here)
        prefill_qk<MT, KW>(sc, qa, qf, q_lane, kv_lane + st * STAGE_BYTES + k_lane_off);

        // Mask, then online softmax (log2 domain). Each lane holds rows g (sc[m][][0..1]) and g+8 (sc[m][][2..3]) of
        // each m-tile.
        u32 pf[MT][KW / 16][4];
        const int* kp = &sm.kpos[st][ks * KW];
        // Dense: a slice of keys that all exist and lie at or before this warp's first row needs no mask (all but
        // the diagonal tiles; the slots are the key positions).
        const int slice_end = t * PF_TK + (ks + 1) * KW;
        const bool unmasked = DENSE && slice_end <= nkeys && (!CAUSAL || slice_end - 1 <= p0 + cmin(row0, len - 1));
#pragma unroll
        for (int m = 0; m < MT; ++m) {
            float mx[2] = {HIP_NEG_INF, HIP_NEG_INF};
            prefill_mask_tile<KW>(sc[m], mx, unmasked, kp, lim[m], sl2, tq);
            prefill_online_softmax<KW>(sc[m], mx, mrow[m], lrow[m], o[m], pf[m]);
        }

        prefill_pv<MT, KW>(o, pf, kv_lane + st * STAGE_BYTES + V_BYTES + v_lane_off);
        __syncthreads();  // every warp is done with stage t&1
    }
    cp_async_wait<0>();

#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) lrow[m][hh] = quad_sum(lrow[m][hh]);

    if (KS > 1) prefill_merge_splits<G>(o, mrow, lrow, (float*)&sm.kv[0][0][0], ks, r, g, tq);
    if (ks == 0) prefill_write_rows<G>(o, mrow, lrow, p, obase, lse_out, s.q0, first, h, row0, len, g, tq);
}

}  // namespace hip

#endif

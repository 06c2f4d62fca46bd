// Decode attention: split-K over the single query's key list (hip_decode_attn, hip_decode_attn_direct) and the
// combine of the splits (hip_decode_combine). KV rows are addressed through decode_kv.cuh. Included by
// attention.cuh.
#ifndef HIP_ATTN_ATTN_DECODE_CUH
#define HIP_ATTN_ATTN_DECODE_CUH

namespace hip {

// ---------------------------------------------------------------------------------------------------------------
// Decode. Each CTA walks a contiguous chunk of the query's key list. A key row is read by G = D/8 lanes, 16 bytes
// each (coalesced), so a CTA works on NGRP keys at once and UNR rounds of them are in flight per loop trip.
// The row offsets of up to DCH keys are resolved first (block index, then page table: two dependent loads, done
// for all DCH keys at once) into shared memory, so a trip of the main loop waits on one HBM round trip, not three.
constexpr int DC_THREADS = HIP_ATTN_DECODE_THREADS;
constexpr int DG = D / 8;                 // lanes per key row
constexpr int NGRP = DC_THREADS / DG;     // keys in parallel per CTA
constexpr int UNR = D <= 128 ? 8 : 4;     // rounds in flight
constexpr int DCH = 1024;                 // keys whose offsets are resolved per chunk
static_assert(DG <= 32 && DC_THREADS % DG == 0, "decode grouping");
static_assert(DCH % DC_THREADS == 0 && DCH % (NGRP * UNR) == 0, "decode chunking");

// A split that attends nothing (lse -inf) or met bad index data (lse = the POISON NaN) writes o = 0. DIRECT (one
// split, no combine): the output row itself, o = 0 and lse -inf either way, which is what the combine makes of it.
// POISON is a NaN with a payload arithmetic never produces (the GPU's computed NaNs are 0x7fffffff), so the
// combine tells bad index data (zeros) from a NaN that the inputs put into the row (NaN, as on the CPU backend).
constexpr unsigned DECODE_POISON_BITS = 0x7fc00000u;
constexpr unsigned DECODE_NAN_BITS = 0x7fffffffu;
template <bool DIRECT>
__device__ __forceinline__ void decode_write_empty(const hip_decode_params& p, long long part, int b, int h, int tid,
                                                   float lse) {
    if (DIRECT) {
        elem_t* o = (elem_t*)p.o + (long long)b * p.o_seq_stride + (long long)h * p.o_head_stride;
        for (int d = tid; d < D; d += DC_THREADS) o[d] = from_f32(0.f);
        if (p.lse && tid == 0) ((float*)p.lse)[(long long)b * p.num_q_heads + h] = HIP_NEG_INF;
        return;
    }
    float* po = (float*)p.part_o + part * D;
    for (int d = tid; d < D; d += DC_THREADS) po[d] = 0.f;
    if (tid == 0) ((float*)p.part_lse)[part] = lse;
}

// DIRECT (num_splits == 1): the CTA holds the whole key list and writes the output row and lse as the combine
// would (with one split it multiplies by exp(0) = 1 and divides by 1: the same values; only a -0 element, which
// the combine's sum turns into +0, keeps its sign), so no combine runs.
template <bool DIRECT>
__device__ __forceinline__ void decode_attn(const hip_decode_params& p) {
    __shared__ float s_o[NGRP][D];
    __shared__ float s_m[NGRP], s_l[NGRP];
    __shared__ long long s_off[DCH];  // element offset of each key of the chunk, -1 = no key
    const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int tid = threadIdx.x, grp = tid / DG, gl = tid - grp * DG;
    const long long part = ((long long)b * p.num_q_heads + h) * p.num_splits + split;
    const float poison = __uint_as_float(DECODE_POISON_BITS);
    pdl_trigger();  // the combine may launch; it waits for this kernel

    // Inputs first, while the search kernel may still run: the query and the sequence length are the caller's
    // (the previous step's combine, the last reader of the partials, finished before the search started).
    const int Tk = ((const int*)p.seqlens_k)[b];
    if (!decode_seq_ok(p, Tk)) {
        if (tid == 0 && split == 0)
            set_error(p.error_flag, Tk >= 1 && Tk <= p.max_seqlen_k ? HIP_ATTN_DEVERR_PAGE_TABLE : HIP_ATTN_DEVERR_SEQLENS);
        decode_write_empty<DIRECT>(p, part, b, h, tid, poison);
        return;
    }
    float q[8];
    {
        const elem_t* qp = (const elem_t*)p.q + (long long)b * p.q_seq_stride + (long long)h * p.q_head_stride + gl * 8;
        unpack8(ldg16(qp), q);
        const float sl2 = p.scale * LOG2E;
#pragma unroll
        for (int i = 0; i < 8; ++i) q[i] *= sl2;
    }
    pdl_wait();  // the search kernel has written the mask record
    const int mh = SHARE ? h / GROUP : h;
    const int kvh = h / GROUP;
    const int* rec = (const int*)p.mask_state + ((long long)b * p.mask_heads + mh) * p.state_ints;
    const int magic = rec[HIP_ATTN_STATE_MAGIC_IDX];
    const int e = rec[HIP_ATTN_STATE_E_IDX];
    const int cnt = rec[HIP_ATTN_STATE_COUNT_IDX];
    // (the search re-searched a foreign record; one left here means the search skipped this head)
    const bool foreign = record_foreign(magic, rec[HIP_ATTN_STATE_FPRINT_IDX], p.state_fingerprint);
    if (magic != HIP_ATTN_STATE_MAGIC || foreign || p.state_ints < HIP_ATTN_STATE_HEADER + KB ||
        !record_header_ok(e, cnt, p.sink, Tk)) {
        if (tid == 0 && split == 0 && magic == HIP_ATTN_STATE_MAGIC)
            set_error(p.error_flag, foreign ? HIP_ATTN_DEVERR_MASK_CONFIG : HIP_ATTN_DEVERR_MASK_STATE);
        decode_write_empty<DIRECT>(p, part, b, h, tid, poison);
        return;
    }
    KeyList kl;
    kl.nS = cmin(p.sink, Tk);
    kl.nM = cnt * BK;
    kl.nL = cmax(0, Tk - e);
    kl.sink = p.sink;
    kl.e = e;
    kl.NB = num_search_blocks(p.sink, e);
    kl.blocks = rec + HIP_ATTN_STATE_HEADER;
    const long long n = kl.size();
    const int lo = (int)(n * split / p.num_splits);
    const int hi = (int)(n * (split + 1) / p.num_splits);

    const elem_t* kc = (const elem_t*)p.k_cache;
    const elem_t* vc = (const elem_t*)p.v_cache;

    float m = HIP_NEG_INF, l = 0.f, acc[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] = 0.f;
    bool bad = false;
    bool nan = false;  // a NaN logit (NaN query or key, or inf * 0): the CPU backend's row is NaN, so is ours

    for (int c0 = lo; c0 < hi; c0 += DCH) {
        const int c1 = cmin(hi, c0 + DCH);
        {
            // All loads first (register array), then the stores: the loads do not wait on each other.
            long long offs[DCH / DC_THREADS];
#pragma unroll
            for (int j = 0; j < DCH / DC_THREADS; ++j) {
                const int idx = c0 + j * DC_THREADS + tid;
                const int pos = idx < c1 ? kl.pos(idx) : INVALID_POS;
                offs[j] = pos != INVALID_POS ? decode_kv_offset(p, b, kvh, pos, bad) : -1;
            }
            __syncthreads();  // the previous chunk's offsets are consumed
#pragma unroll
            for (int j = 0; j < DCH / DC_THREADS; ++j) s_off[j * DC_THREADS + tid] = offs[j];
            __syncthreads();
        }
        // Trip count is uniform over the CTA (shuffles below need whole warps).
        for (int base = c0; base < c1; base += NGRP * UNR) {
            uint4 kr[UNR], vr[UNR];
            bool valid[UNR];
#pragma unroll
            for (int u = 0; u < UNR; ++u) {
                const int idx = base + u * NGRP + grp;
                const long long off = idx < c1 ? s_off[idx - c0] : -1;
                valid[u] = off >= 0;
                kr[u] = valid[u] ? ldg16(kc + off + gl * 8) : make_uint4(0, 0, 0, 0);
                vr[u] = valid[u] ? ldg16(vc + off + gl * 8) : make_uint4(0, 0, 0, 0);
            }
            float sv[UNR];
#pragma unroll
            for (int u = 0; u < UNR; ++u) {
                float kf[8];
                unpack8(kr[u], kf);
                float d = 0.f;
#pragma unroll
                for (int i = 0; i < 8; ++i) d = fmaf(q[i], kf[i], d);
#pragma unroll
                for (int off = DG / 2; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
                sv[u] = valid[u] ? d : HIP_NEG_INF;
                nan |= valid[u] && d != d;
            }
            float mx = m;
#pragma unroll
            for (int u = 0; u < UNR; ++u) mx = fmaxf(mx, sv[u]);
            if (mx == HIP_NEG_INF) continue;  // nothing valid yet for this group
            const float alpha = exp2f(m - mx);
            l *= alpha;
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[i] *= alpha;
#pragma unroll
            for (int u = 0; u < UNR; ++u) {
                const float pu = exp2f(sv[u] - mx);
                l += pu;
                float vf[8];
                unpack8(vr[u], vf);
#pragma unroll
                for (int i = 0; i < 8; ++i) acc[i] = fmaf(pu, vf[i], acc[i]);
            }
            m = mx;
        }
    }

    if (__syncthreads_or(bad)) {
        if (tid == 0) set_error(p.error_flag, HIP_ATTN_DEVERR_PAGE_TABLE);
        decode_write_empty<DIRECT>(p, part, b, h, tid, poison);
        return;
    }
    if (__syncthreads_or(nan)) {
        // (fmaxf skips NaN, so a NaN logit need not have reached l: write the NaN row explicitly.)
        const float qnan = __uint_as_float(DECODE_NAN_BITS);
        elem_t* o = (elem_t*)p.o + (long long)b * p.o_seq_stride + (long long)h * p.o_head_stride;
        float* po = (float*)p.part_o + part * D;
        for (int d = tid; d < D; d += DC_THREADS) {
            if (DIRECT) o[d] = from_f32(qnan);
            else po[d] = qnan;
        }
        if (tid == 0) {
            if (!DIRECT) ((float*)p.part_lse)[part] = qnan;
            else if (p.lse) ((float*)p.lse)[(long long)b * p.num_q_heads + h] = qnan;
        }
        return;
    }
    if (gl == 0) {
        s_m[grp] = m;
        s_l[grp] = l;
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) s_o[grp][gl * 8 + i] = acc[i];
    __syncthreads();
    float M = HIP_NEG_INF;
    for (int k = 0; k < NGRP; ++k) M = fmaxf(M, s_m[k]);
    float L = 0.f;
    for (int k = 0; k < NGRP; ++k) L += s_m[k] == HIP_NEG_INF ? 0.f : s_l[k] * exp2f(s_m[k] - M);
    float* po = (float*)p.part_o + part * D;
    elem_t* o = (elem_t*)p.o + (long long)b * p.o_seq_stride + (long long)h * p.o_head_stride;
    for (int d = tid; d < D; d += DC_THREADS) {
        float v = 0.f;
        for (int k = 0; k < NGRP; ++k)
            if (s_m[k] != HIP_NEG_INF) v += s_o[k][d] * exp2f(s_m[k] - M);
        v = L != 0.f ? v / L : 0.f;  // (an infinite logit makes L NaN: the row is NaN, as on the CPU backend)
        if (DIRECT) o[d] = from_f32(v);
        else po[d] = v;
    }
    if (tid == 0) {
        const float lse = L != 0.f ? (M + log2f(L)) * LN2 : HIP_NEG_INF;
        if (!DIRECT) ((float*)p.part_lse)[part] = lse;
        else if (p.lse) ((float*)p.lse)[(long long)b * p.num_q_heads + h] = lse;
    }
}

// hip_decode_combine: grid (num_q_heads, batch)
__device__ __forceinline__ void decode_combine(const hip_decode_params& p) {
    const int h = blockIdx.x, b = blockIdx.y, tid = threadIdx.x;
    const int ns = p.num_splits;
    pdl_wait();  // the attention kernel has written the partials
    const long long base = ((long long)b * p.num_q_heads + h) * ns;
    const float* pl = (const float*)p.part_lse + base;
    const float* po = (const float*)p.part_o + base * D;
    float M = HIP_NEG_INF;
    bool poisoned = false, nan = false;
    for (int s2 = 0; s2 < ns; ++s2) {
        const float v = pl[s2];
        const bool is_poison = __float_as_uint(v) == DECODE_POISON_BITS;
        poisoned |= is_poison;
        nan |= v != v && !is_poison;
        M = fmaxf(M, v);
    }
    // Bad index data (a poisoned split) wins: zeros and -inf, as documented. Otherwise a split's NaN row makes the
    // whole row NaN, as the CPU backend's single softmax does.
    if (nan && !poisoned) M = __uint_as_float(DECODE_NAN_BITS);
    const bool empty = poisoned || M == HIP_NEG_INF;
    float W = 0.f;
    if (!empty)
        for (int s2 = 0; s2 < ns; ++s2) W += pl[s2] == HIP_NEG_INF ? 0.f : expf(pl[s2] - M);
    elem_t* o = (elem_t*)p.o + (long long)b * p.o_seq_stride + (long long)h * p.o_head_stride;
    for (int d = tid; d < D; d += HIP_ATTN_COMBINE_THREADS) {
        float v = 0.f;
        if (!empty) {
            for (int s2 = 0; s2 < ns; ++s2) {
                const float ls = pl[s2];
                if (ls != HIP_NEG_INF) v += po[(long long)s2 * D + d] * expf(ls - M);
            }
            v /= W;
        }
        o[d] = from_f32(v);
    }
    if (p.lse && tid == 0) ((float*)p.lse)[(long long)b * p.num_q_heads + h] = empty ? HIP_NEG_INF : M + logf(W);
}

}  // namespace hip

#endif

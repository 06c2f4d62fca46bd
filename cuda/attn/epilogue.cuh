// Attention epilogues: the prefill CTA's merge of its key splits and its normalized output rows and LSE; the decode
// CTA's merge of its key groups into a split's partial (or, with one split, the output row), its empty and NaN rows,
// and the combine of the split-K partials (hip_decode_combine). Included by attention.cuh before the kernels that
// compose them.
#ifndef HIP_ATTN_ATTN_EPILOGUE_CUH
#define HIP_ATTN_ATTN_EPILOGUE_CUH

namespace hip {

// Merge the key splits of each row group: splits 1..KS-1 park (m, l, o) in smem, split 0 folds them in (a key
// split implies one m-tile per warp). The caller has summed l over the quad.
template <class G>
__device__ __forceinline__ void prefill_merge_splits(float (&o)[G::MT][D / 8][4], float (&mrow)[G::MT][2],
                                                     float (&lrow)[G::MT][2], float* scratch, int ks, int r, int g,
                                                     int tq) {
    constexpr int KS = G::KS, RG = G::RG;
    constexpr int RS = D + 2;  // one row: o[D], m, l
    __syncthreads();
    if (ks > 0) {
        float* base = scratch + ((ks - 1) * RG + r) * 16 * RS;
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            float* row = base + (g + 8 * hh) * RS;
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                row[n * 8 + 2 * tq] = o[0][n][2 * hh];
                row[n * 8 + 2 * tq + 1] = o[0][n][2 * hh + 1];
            }
            if (tq == 0) {
                row[D] = mrow[0][hh];
                row[D + 1] = lrow[0][hh];
            }
        }
    }
    __syncthreads();
    if (ks == 0) {
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            float mm = mrow[0][hh];
            for (int s2 = 1; s2 < KS; ++s2)
                mm = fmaxf(mm, scratch[(((s2 - 1) * RG + r) * 16 + g + 8 * hh) * RS + D]);
            const float mref = mm == HIP_NEG_INF ? 0.f : mm;
            const float a0 = exp2f(mrow[0][hh] - mref);
            float l = lrow[0][hh] * a0;
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                o[0][n][2 * hh] *= a0;
                o[0][n][2 * hh + 1] *= a0;
            }
            for (int s2 = 1; s2 < KS; ++s2) {
                const float* row = scratch + (((s2 - 1) * RG + r) * 16 + g + 8 * hh) * RS;
                const float a = exp2f(row[D] - mref);
                l += row[D + 1] * a;
#pragma unroll
                for (int n = 0; n < D / 8; ++n) {
                    o[0][n][2 * hh] += row[n * 8 + 2 * tq] * a;
                    o[0][n][2 * hh + 1] += row[n * 8 + 2 * tq + 1] * a;
                }
            }
            mrow[0][hh] = mm;
            lrow[0][hh] = l;
        }
    }
}

// Normalize the rows this lane holds (g and g + 8 of each m-tile, below len) and write them to O at token q0 + row
// and their LSE (natural log) where lse_out is set.
template <class G>
__device__ __forceinline__ void prefill_write_rows(const float (&o)[G::MT][D / 8][4], const float (&mrow)[G::MT][2],
                                                   const float (&lrow)[G::MT][2], const hip_prefill_params& p,
                                                   elem_t* obase, float* lse_out, int q0, int first, int h, int row0, int len,
                                                   int g, int tq) {
#pragma unroll
    for (int m = 0; m < G::MT; ++m)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            const int qi = row0 + m * 16 + g + 8 * hh;
            if (qi < len) {
                const float l = lrow[m][hh];
                // A row that attends nothing (l == 0) writes zeros; a NaN logit made l NaN, and the row stays NaN.
                const float inv = l != 0.f ? 1.f / l : 0.f;
                elem_t* orow = obase + (long long)(q0 + first + qi) * p.o_tok_stride + (long long)h * p.o_head_stride;
#pragma unroll
                for (int n = 0; n < D / 8; ++n)
                    *(u32*)(orow + n * 8 + 2 * tq) = pack2(o[m][n][2 * hh] * inv, o[m][n][2 * hh + 1] * inv);
                if (lse_out && tq == 0)
                    lse_out[(long long)(q0 + first + qi) * p.num_q_heads + h] =
                        l != 0.f ? (mrow[m][hh] + log2f(l)) * LN2 : HIP_NEG_INF;
            }
        }
}

// A split that attends nothing (lse -inf) or met bad index data (lse = the POISON NaN) writes o = 0. DIRECT (one
// split, no combine): the output row itself, o = 0 and lse -inf either way, which is what the combine makes of it.
// POISON is a NaN with a payload arithmetic never produces (the GPU's computed NaNs are 0x7fffffff), so the
// combine tells bad index data (zeros) from a NaN that the inputs put into the row (NaN, as on the CPU backend).
constexpr unsigned DECODE_POISON_BITS = 0x7fc00000u;
constexpr unsigned DECODE_NAN_BITS = 0x7fffffffu;

// Not DIRECT, the partial goes to po[D] and *plse: the split's slot of the workspace, or (hip_decode_step_wide) the
// CTA's shared memory, which the cluster's combine reads.
template <bool DIRECT>
__device__ __forceinline__ void decode_write_empty(const hip_decode_params& p, float* po, float* plse, int b, int h,
                                                   int tid, float lse) {
    if (DIRECT) {
        elem_t* o = (elem_t*)p.o + (long long)b * p.o_seq_stride + (long long)h * p.o_head_stride;
        for (int d = tid; d < D; d += DC_THREADS) o[d] = from_f32(0.f);
        if (p.lse && tid == 0) ((float*)p.lse)[(long long)b * p.num_q_heads + h] = HIP_NEG_INF;
        return;
    }
    for (int d = tid; d < D; d += DC_THREADS) po[d] = 0.f;
    if (tid == 0) *plse = lse;
}

// Decode (split-K): the row of a split that met a NaN logit is NaN (DIRECT: the output row and lse; else the
// split's partial row and lse).
template <bool DIRECT>
__device__ __forceinline__ void decode_write_nan(const hip_decode_params& p, float* po, float* plse, int b, int h,
                                                 int tid) {
    // (fmaxf skips NaN, so a NaN logit need not have reached l: write the NaN row explicitly.)
    const float qnan = __uint_as_float(DECODE_NAN_BITS);
    elem_t* o = (elem_t*)p.o + (long long)b * p.o_seq_stride + (long long)h * p.o_head_stride;
    for (int d = tid; d < D; d += DC_THREADS) {
        if (DIRECT) o[d] = from_f32(qnan);
        else po[d] = qnan;
    }
    if (tid == 0) {
        if (!DIRECT) *plse = qnan;
        else if (p.lse) ((float*)p.lse)[(long long)b * p.num_q_heads + h] = qnan;
    }
}

// Decode: a key group's (m, l, acc) into shared memory, for decode_epilogue after a CTA barrier.
__device__ __forceinline__ void decode_stage_groups(int grp, int gl, float m, float l, const float (&acc)[8],
                                                    float (&s_o)[NGRP][D], float (&s_m)[NGRP], float (&s_l)[NGRP]) {
    if (gl == 0) {
        s_m[grp] = m;
        s_l[grp] = l;
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) s_o[grp][gl * 8 + i] = acc[i];
}

// Decode: merge the NGRP key groups' (m, l, acc), staged by decode_stage_groups, and write the split's normalized
// partial row and lse (DIRECT: the output row and lse).
template <bool DIRECT>
__device__ __forceinline__ void decode_epilogue(const hip_decode_params& p, float* po, float* plse, int b, int h,
                                                int tid, const float (&s_o)[NGRP][D], const float (&s_m)[NGRP],
                                                const float (&s_l)[NGRP]) {
    // Each group's weight once, in registers (it had been recomputed per element from shared memory: the same
    // values in the same order, so the same results).
    float mk[NGRP], w[NGRP];
    float M = HIP_NEG_INF;
#pragma unroll
    for (int k = 0; k < NGRP; ++k) {
        mk[k] = s_m[k];
        M = fmaxf(M, mk[k]);
    }
    float L = 0.f;
#pragma unroll
    for (int k = 0; k < NGRP; ++k) {
        w[k] = mk[k] == HIP_NEG_INF ? 0.f : exp2f(mk[k] - M);
        L += mk[k] == HIP_NEG_INF ? 0.f : s_l[k] * w[k];
    }
    elem_t* o = (elem_t*)p.o + (long long)b * p.o_seq_stride + (long long)h * p.o_head_stride;
    for (int d = tid; d < D; d += DC_THREADS) {
        float v = 0.f;
#pragma unroll
        for (int k = 0; k < NGRP; ++k)
            if (mk[k] != HIP_NEG_INF) v += s_o[k][d] * w[k];
        v = L != 0.f ? v / L : 0.f;  // (an infinite logit makes L NaN: the row is NaN, as on the CPU backend)
        if (DIRECT) o[d] = from_f32(v);
        else po[d] = v;
    }
    if (tid == 0) {
        const float lse = L != 0.f ? (M + log2f(L)) * LN2 : HIP_NEG_INF;
        if (!DIRECT) *plse = lse;
        else if (p.lse) ((float*)p.lse)[(long long)b * p.num_q_heads + h] = lse;
    }
}

// The combine of one (sequence, q head) row's ns split partials, read through lse_of(split) and o_of(split, d):
// the output row and its lse, with `threads` threads of the CTA (tid < threads) over the row's elements. NS > 0:
// ns == NS, known when compiled (the step kernel's cluster), so each split's weight is computed once and held in
// registers; else (any number of splits) it is recomputed per element. Same values in the same order either way.
template <int NS = 0, class Lse, class O>
__device__ __forceinline__ void decode_combine_row(const hip_decode_params& p, int b, int h, int ns, const Lse& lse_of,
                                                   const O& o_of, int tid, int threads) {
    const int n = NS > 0 ? NS : ns;
    float M = HIP_NEG_INF;
    bool poisoned = false, nan = false;
    for (int s2 = 0; s2 < n; ++s2) {
        const float v = lse_of(s2);
        const bool is_poison = __float_as_uint(v) == DECODE_POISON_BITS;
        poisoned |= is_poison;
        nan |= v != v && !is_poison;
        M = fmaxf(M, v);
    }
    // Bad index data (a poisoned split) wins: zeros and -inf, as documented. Otherwise a split's NaN row makes the
    // whole row NaN, as the CPU backend's single softmax does.
    if (nan && !poisoned) M = __uint_as_float(DECODE_NAN_BITS);
    const bool empty = poisoned || M == HIP_NEG_INF;
    float wr[NS > 0 ? NS : 1];
    if constexpr (NS > 0) {
#pragma unroll
        for (int s2 = 0; s2 < NS; ++s2) wr[s2] = expf(lse_of(s2) - M);
    }
    auto weight = [&](int s2) {
        if constexpr (NS > 0) return wr[s2];
        else return expf(lse_of(s2) - M);
    };
    float W = 0.f;
    if (!empty)
        for (int s2 = 0; s2 < n; ++s2) W += lse_of(s2) == HIP_NEG_INF ? 0.f : weight(s2);
    elem_t* o = (elem_t*)p.o + (long long)b * p.o_seq_stride + (long long)h * p.o_head_stride;
    for (int d = tid; d < D; d += threads) {
        float v = 0.f;
        if (!empty) {
            for (int s2 = 0; s2 < n; ++s2) {
                const float ls = lse_of(s2);
                if (ls != HIP_NEG_INF) v += o_of(s2, d) * weight(s2);
            }
            v /= W;
        }
        o[d] = from_f32(v);
    }
    if (p.lse && tid == 0) ((float*)p.lse)[(long long)b * p.num_q_heads + h] = empty ? HIP_NEG_INF : M + logf(W);
}

// hip_decode_combine: grid (num_q_heads, batch)
__device__ __forceinline__ void decode_combine(const hip_decode_params& p) {
    const int h = blockIdx.x, b = blockIdx.y, tid = threadIdx.x;
    const int ns = p.num_splits;
    pdl_wait();  // the attention kernel has written the partials
    const long long base = ((long long)b * p.num_q_heads + h) * ns;
    const float* pl = (const float*)p.part_lse + base;
    const float* po = (const float*)p.part_o + base * D;
    decode_combine_row(
        p, b, h, ns, [&](int s2) { return pl[s2]; }, [&](int s2, int d) { return po[(long long)s2 * D + d]; }, tid,
        HIP_ATTN_COMBINE_THREADS);
}

}  // namespace hip

#endif

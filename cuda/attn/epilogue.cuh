// Attention epilogues: the prefill CTA's merge of its key splits and its normalized output rows and LSE. Included
// by attention.cuh before the kernels that compose them.
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

}  // namespace hip

#endif

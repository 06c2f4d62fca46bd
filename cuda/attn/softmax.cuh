// Online softmax in the log2 domain (FlashAttention): a running maximum and row sum per query row, the
// accumulated output rescaled when the maximum moves. Included by attention.cuh before the kernels that compose it.
#ifndef HIP_ATTN_ATTN_SOFTMAX_CUH
#define HIP_ATTN_ATTN_SOFTMAX_CUH

namespace hip {

// Decode: fold U rounds of one key group's logits sv (log2 domain, -inf for no key) and their value rows vr into
// the group's running maximum m, sum l and output slice acc (this lane's 8 elements).
template <int U>
__device__ __forceinline__ void decode_online_softmax(const float (&sv)[U], const uint4 (&vr)[U], float& m,
                                                      float& l, float (&acc)[8]) {
    float mx = m;
#pragma unroll
    for (int u = 0; u < U; ++u) mx = fmaxf(mx, sv[u]);
    if (mx == HIP_NEG_INF) return;  // nothing valid yet for this group
    const float alpha = exp2f(m - mx);
    l *= alpha;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] *= alpha;
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const float pu = exp2f(sv[u] - mx);
        l += pu;
        float vf[8];
        unpack8(vr[u], vf);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[i] = fmaf(pu, vf[i], acc[i]);
    }
    m = mx;
}

// Prefill: one tile's online-softmax step for one m-tile of a warp. sc holds the masked scores (log2 domain) of
// this lane's rows g (sc[][0..1]) and g + 8 (sc[][2..3]), mx their maxima over this lane's keys; mrow and lrow are
// the rows' running maximum and sum, o their output accumulator, pf receives P as A fragments for O += PV.
template <int KW>
__device__ __forceinline__ void prefill_online_softmax(float (&sc)[KW / 8][4], const float (&mx)[2], float (&mrow)[2],
                                                       float (&lrow)[2], float (&o)[D / 8][4], u32 (&pf)[KW / 16][4]) {
    float alpha[2], mu[2];
    bool settled = true;  // neither row's maximum moved
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
        const float mnew = fmaxf(mrow[hh], quad_max(mx[hh]));
        mu[hh] = mnew == HIP_NEG_INF ? 0.f : mnew;  // a row with no key yet: exp2(-inf - 0) = 0, no NaN
        alpha[hh] = exp2_ftz(mrow[hh] - mu[hh]);
        settled &= mnew == mrow[hh];
        mrow[hh] = mnew;
    }
    float rs[2] = {0.f, 0.f};
#pragma unroll
    for (int n = 0; n < KW / 8; ++n) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float e2 = exp2_ftz(sc[n][i] - mu[i >> 1]);
            sc[n][i] = e2;
            rs[i >> 1] += e2;
        }
    }
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) lrow[hh] = lrow[hh] * alpha[hh] + rs[hh];
    // Once the rows' maxima settle most tiles move none of the m-tile's 16 rows, and the 64 multiplies per
    // lane would all be by 1 (or, for rows without keys yet, of zeros): skipped, warp-uniformly.
    if (!__all_sync(0xffffffffu, settled)) {
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
            o[n][0] *= alpha[0];
            o[n][1] *= alpha[0];
            o[n][2] *= alpha[1];
            o[n][3] *= alpha[1];
        }
    }
    // C fragments of S become A fragments of P (16 keys per k-step).
#pragma unroll
    for (int kk = 0; kk < KW / 16; ++kk) {
        pf[kk][0] = pack2(sc[2 * kk][0], sc[2 * kk][1]);
        pf[kk][1] = pack2(sc[2 * kk][2], sc[2 * kk][3]);
        pf[kk][2] = pack2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
        pf[kk][3] = pack2(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
    }
}

}  // namespace hip

#endif

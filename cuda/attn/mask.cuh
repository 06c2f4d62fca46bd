// Masking of a score tile: keys past a query's causal limit, padding slots of the key list (INVALID_POS) and keys
// outside the sink / selected blocks / local window (the key list holds only those) score -inf. Included by
// attention.cuh before the kernels that compose it.
#ifndef HIP_ATTN_ATTN_MASK_CUH
#define HIP_ATTN_ATTN_MASK_CUH

namespace hip {

// One m-tile of a prefill score tile (C fragments: rows g in [][0..1], g + 8 in [][2..3]; KW keys): scale into the
// log2 domain (sl2 = scale * log2 e), mask each key whose position kp[] lies past its row's limit lim[], and take
// each row's maximum over this lane's keys into mx. unmasked (warp-uniform): every key is visible to every row.
template <int KW>
__device__ __forceinline__ void prefill_mask_tile(float (&sc)[KW / 8][4], float (&mx)[2], bool unmasked,
                                                  const int* kp, const int (&lim)[2], float sl2, int tq) {
    if (unmasked) {
#pragma unroll
        for (int n = 0; n < KW / 8; ++n)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                sc[n][i] *= sl2;
                mx[i >> 1] = fmaxf(mx[i >> 1], sc[n][i]);
            }
    } else {
#pragma unroll
        for (int n = 0; n < KW / 8; ++n) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int pos = kp[n * 8 + 2 * tq + (i & 1)];
                const float v = pos <= lim[i >> 1] ? sc[n][i] * sl2 : HIP_NEG_INF;
                sc[n][i] = v;
                mx[i >> 1] = fmaxf(mx[i >> 1], v);
            }
        }
    }
}

}  // namespace hip

#endif

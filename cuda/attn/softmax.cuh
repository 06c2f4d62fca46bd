// Online softmax in the log2 domain (FlashAttention): a running maximum and row sum per query row, the
// accumulated output rescaled when the maximum moves. Included by attention.cuh before the kernels that compose it.
#ifndef HIP_ATTN_ATTN_SOFTMAX_CUH
#define HIP_ATTN_ATTN_SOFTMAX_CUH

namespace hip {

// Decode: fold UNR rounds of one key group's logits sv (log2 domain, -inf for no key) and their value rows vr into
// the group's running maximum m, sum l and output slice acc (this lane's 8 elements).
__device__ __forceinline__ void decode_online_softmax(const float (&sv)[UNR], const uint4 (&vr)[UNR], float& m,
                                                      float& l, float (&acc)[8]) {
    float mx = m;
#pragma unroll
    for (int u = 0; u < UNR; ++u) mx = fmaxf(mx, sv[u]);
    if (mx == HIP_NEG_INF) return;  // nothing valid yet for this group
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

}  // namespace hip

#endif

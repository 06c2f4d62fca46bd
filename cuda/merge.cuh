// Merge of two partial attention results by their LSEs (natural log):
//   O = (e^La Oa + e^Lb Ob) / (e^La + e^Lb),  L = log(e^La + e^Lb);  both -inf => O = 0, L = -inf; a NaN L => NaN.
// One warp per (token, head); each lane reads all of its elements and the LSEs before writing, so the output may
// alias either input (same layout).
#ifndef HIP_ATTN_MERGE_CUH
#define HIP_ATTN_MERGE_CUH

#include "common.cuh"

namespace hip {

// hip_merge_states: grid (num_tokens, ceil(num_heads / HIP_ATTN_MERGE_HEADS_PER_CTA)), HIP_ATTN_MERGE_THREADS
__device__ __forceinline__ void merge_states(const hip_merge_params& p) {
    static_assert(HIP_ATTN_MERGE_THREADS == 32 * HIP_ATTN_MERGE_HEADS_PER_CTA, "one warp per head");
    const int tok = blockIdx.x;
    const int head = blockIdx.y * HIP_ATTN_MERGE_HEADS_PER_CTA + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (tok >= p.num_tokens || head >= p.num_heads) return;
    const long long li = (long long)tok * p.num_heads + head;
    const float la = ((const float*)p.lse_a)[li];
    const float lb = ((const float*)p.lse_b)[li];
    const float M = (la != la || lb != lb) ? __uint_as_float(0x7fffffffu) : fmaxf(la, lb);  // fmaxf skips NaN
    // A -inf side gets weight 0 and its O is never multiplied, so garbage there cannot leak in. A NaN lse gives a
    // NaN weight, so the row is NaN, as on the CPU backend.
    const float wa = (M == HIP_NEG_INF || la == HIP_NEG_INF) ? 0.f : expf(la - M);
    const float wb = (M == HIP_NEG_INF || lb == HIP_NEG_INF) ? 0.f : expf(lb - M);
    const float W = wa + wb;
    const float inv = W != 0.f ? 1.f / W : 0.f;
    const elem_t* oa = (const elem_t*)p.o_a + (long long)tok * p.a_tok_stride + (long long)head * p.a_head_stride;
    const elem_t* ob = (const elem_t*)p.o_b + (long long)tok * p.b_tok_stride + (long long)head * p.b_head_stride;
    elem_t* out = (elem_t*)p.o_out + (long long)tok * p.out_tok_stride + (long long)head * p.out_head_stride;
    for (int c = lane; c < D / 8; c += 32) {
        float fa[8], fb[8];
        const uint4 va = *(const uint4*)(oa + c * 8);
        const uint4 vb = *(const uint4*)(ob + c * 8);
        unpack8(va, fa);
        unpack8(vb, fb);
        float r[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) r[i] = ((wa != 0.f ? wa * fa[i] : 0.f) + (wb != 0.f ? wb * fb[i] : 0.f)) * inv;
        *(uint4*)(out + c * 8) = make_uint4(pack2(r[0], r[1]), pack2(r[2], r[3]), pack2(r[4], r[5]), pack2(r[6], r[7]));
    }
    __syncwarp();  // every lane has read lse_a/lse_b before lane 0 may overwrite them (aliasing)
    if (lane == 0 && p.lse_out) ((float*)p.lse_out)[li] = W != 0.f ? M + logf(W) : HIP_NEG_INF;
}

}  // namespace hip

#endif

// The FP8 copies the FP8-scored prefill search reads (HIP_ATTN_FLAG_FP8_SEARCH_SCORES; docs/ALGORITHM.md section
// 9, "Scoring on FP8 copies of Q and K"): E4M3 rounding to the definition's rules, the scale amax / 448, and the
// copy of K made in the same call by two kernels before the search:
//   hip_prefill_k8_amax   per chunk of HIP_ATTN_K8_CHUNK key rows of a (sequence, kv head): the largest finite |k|
//                         (its f32 bits) into k8_amax[b][kvh][chunk];
//   hip_prefill_k8_copy   the same chunks: the (sequence, kv head)'s scale from all of its chunks' maxima, then
//                         k8[b][t][kvh][0..D) = E4M3(k / s) for its keys t < Tk.
// The copy is [batch][max_seqlen_k][num_kv_heads][D] bytes (row t of sequence b at (b * max_seqlen_k + t) *
// num_kv_heads + kvh), so that every valid sequence's rows fit whatever cu_seqlens_k says. Sequences that fail
// validation are skipped here; the search skips and reports them.
//
// The arithmetic is the definition's bit for bit: the largest magnitude is taken on the f32 bit patterns (which
// order as the values for non-negative finite numbers, and which no flush-to-zero mode touches), and the quotients
// are IEEE divisions (div.rn.f32 without .ftz: the module compiles with fast math, whose division would be
// approximate and whose comparisons flush subnormals). cvt.rn.satfinite rounds to the nearest E4M3 value, ties to
// even, and saturates overflows and infinities to +-448 as the definition does. A NaN element stays NaN (its sign
// is not kept; no score can tell).
#ifndef HIP_ATTN_K8_CUH
#define HIP_ATTN_K8_CUH

#include "common.cuh"

namespace hip {

__device__ __forceinline__ u32 umax32(u32 a, u32 b) { return a > b ? a : b; }

// |x|'s bits for finite x, else 0 (a non-finite element does not enter amax).
__device__ __forceinline__ u32 finite_abs_bits(float x) {
    const u32 b = __float_as_uint(x) & 0x7fffffffu;
    return b < 0x7f800000u ? b : 0u;
}

__device__ __forceinline__ float div_rn(float a, float b) {
    float q;
    asm("div.rn.f32 %0, %1, %2;" : "=f"(q) : "f"(a), "f"(b));
    return q;
}

// The scale of a copy whose largest finite magnitude has bits amax: amax / 448, or 1 when that is not a positive
// finite number (all zeros, or a quotient that underflows to zero; a positive subnormal quotient is kept).
__device__ __forceinline__ float e4m3_scale(u32 amax) {
    const float s = div_rn(__uint_as_float(amax), 448.f);
    const u32 sb = __float_as_uint(s);
    return sb > 0u && sb < 0x7f800000u ? s : 1.f;
}

// Two values in E4M3, x0 in the low byte.
__device__ __forceinline__ u32 e4m3x2(float x0, float x1) {
    unsigned short r;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(x1), "f"(x0));
    return r;
}

// Eight elements in E4M3 at scale s (little-endian: element 0 in the lowest byte).
__device__ __forceinline__ uint2 quantize8(const uint4& v, float s) {
    float f[8];
    unpack8(v, f);
    uint2 r;
    r.x = e4m3x2(div_rn(f[0], s), div_rn(f[1], s)) | e4m3x2(div_rn(f[2], s), div_rn(f[3], s)) << 16;
    r.y = e4m3x2(div_rn(f[4], s), div_rn(f[5], s)) | e4m3x2(div_rn(f[6], s), div_rn(f[7], s)) << 16;
    return r;
}

__device__ __forceinline__ u32 amax8(const uint4& v) {
    float f[8];
    unpack8(v, f);
    u32 m = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) m = umax32(m, finite_abs_bits(f[i]));
    return m;
}

// The maximum of v over the CTA, returned to every thread. red: blockDim.x / 32 words of shared memory; the call
// starts and ends with a barrier, so red may be reused right after it.
__device__ __forceinline__ u32 block_umax(u32 v, u32* red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = umax32(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    u32 m = 0;
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) m = umax32(m, red[w]);
    __syncthreads();
    return m;
}

constexpr int K8_CHUNK = HIP_ATTN_K8_CHUNK;
constexpr int K8_THREADS = HIP_ATTN_K8_THREADS;
constexpr int K8_CPR = D / 8;  // 16-byte chunks of a key row

// Rows [t0, t1) of key head kvh of sequence s, 8 elements per step: f(row, chunk, 16 bytes).
template <class F>
__device__ __forceinline__ void for_each_k8_part(const hip_prefill_params& p, const PrefillSeq& s, int kvh, int t0,
                                                 int t1, const F& f) {
    const elem_t* kh = (const elem_t*)p.k + (long long)s.k0 * p.k_tok_stride + (long long)kvh * p.k_head_stride;
    for (int i = threadIdx.x; i < (t1 - t0) * K8_CPR; i += K8_THREADS) {
        const int t = t0 + i / K8_CPR, c = i % K8_CPR;
        f(t, c, *(const uint4*)(kh + (long long)t * p.k_tok_stride + c * 8));
    }
}

// grid (ceil(max_seqlen_k / K8_CHUNK), num_kv_heads, batch)
__device__ __forceinline__ void prefill_k8_amax(const hip_prefill_params& p) {
    __shared__ u32 red[K8_THREADS / 32];
    const int ch = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
    PrefillSeq s;
    if (!prefill_seq(p, b, s)) return;
    const int t0 = ch * K8_CHUNK;
    if (t0 >= s.Tk) return;
    u32 m = 0;
    for_each_k8_part(p, s, kvh, t0, cmin(s.Tk, t0 + K8_CHUNK), [&](int, int, const uint4& v) { m = umax32(m, amax8(v)); });
    m = block_umax(m, red);
    if (threadIdx.x == 0) ((u32*)p.k8_amax)[((long long)b * p.num_kv_heads + kvh) * p.k8_chunks + ch] = m;
}

// grid as hip_prefill_k8_amax, after it
__device__ __forceinline__ void prefill_k8_copy(const hip_prefill_params& p) {
    __shared__ u32 red[K8_THREADS / 32];
    const int ch = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
    PrefillSeq s;
    if (!prefill_seq(p, b, s)) return;
    const int t0 = ch * K8_CHUNK;
    if (t0 >= s.Tk) return;
    const u32* part = (const u32*)p.k8_amax + ((long long)b * p.num_kv_heads + kvh) * p.k8_chunks;
    u32 m = 0;
    for (int i = threadIdx.x; i < ceil_div(s.Tk, K8_CHUNK); i += K8_THREADS) m = umax32(m, part[i]);
    const float sc = e4m3_scale(block_umax(m, red));
    unsigned char* out = (unsigned char*)p.k8 + ((long long)b * p.max_seqlen_k * p.num_kv_heads + kvh) * D;
    for_each_k8_part(p, s, kvh, t0, cmin(s.Tk, t0 + K8_CHUNK), [&](int t, int c, const uint4& v) {
        *(uint2*)(out + (long long)t * p.num_kv_heads * D + c * 8) = quantize8(v, sc);
    });
}

}  // namespace hip

#endif

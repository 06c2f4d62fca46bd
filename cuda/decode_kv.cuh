// Decode KV addressing: where a sequence's key/value row lives in the contiguous or paged KV cache, and the checks
// of a decode sequence's length and page size. Shared by the decode search (search.cuh), the SCAN selection
// (scan.cuh) and the decode attention (attn/decode.cuh).
#ifndef HIP_ATTN_DECODE_KV_CUH
#define HIP_ATTN_DECODE_KV_CUH

#include "common.cuh"

namespace hip {

// Element offset of KV-cache row t of sequence b, kv head kvh (the same for k_cache and v_cache, which share their
// strides), contiguous or paged. Returns -1 and sets `bad` on a bad page reference.
__device__ __forceinline__ long long decode_kv_offset(const hip_decode_params& p, int b, int kvh, int t, bool& bad) {
    if (!p.paged) return (long long)b * p.kv_seq_stride + (long long)t * p.kv_tok_stride + (long long)kvh * p.kv_head_stride;
    const int pi = t / p.page_size;
    if (pi >= p.pt_stride) {
        bad = true;
        return -1;
    }
    const int page = ((const int*)p.page_table)[(long long)b * p.pt_stride + pi];
    if (page < 0 || page >= p.num_pages) {
        bad = true;
        return -1;
    }
    return (long long)page * p.kv_seq_stride + (long long)(t - pi * p.page_size) * p.kv_tok_stride +
           (long long)kvh * p.kv_head_stride;
}

// Decode-side validation shared by search and attention: the sequence length and, when paged, the page size.
__device__ __forceinline__ bool decode_seq_ok(const hip_decode_params& p, int Tk) {
    return Tk >= 1 && Tk <= p.max_seqlen_k && (!p.paged || p.page_size >= 1);
}

}  // namespace hip

#endif

// HiP attention CUDA kernels: one translation unit for NVRTC. hip_params.h, common.cuh, search.cuh,
// scan.cuh, attention.cuh and merge.cuh are passed to NVRTC as named headers. Compile-time configuration comes from -D
// options (see hip_params.h); launch geometry and supported ranges are documented there too.
#include "hip_params.h"
#include "common.cuh"
#include "search.cuh"
#include "scan.cuh"
#include "attention.cuh"
#include "merge.cuh"

extern "C" __global__ void __launch_bounds__(HIP_ATTN_SEARCH_THREADS, hip::S_MIN_CTAS) hip_prefill_search(hip_prefill_params p) {
    hip::prefill_search(p);
}

// The prefill tail's SCAN (scan.cuh): the query blocks hip_prefill_search leaves to it.
extern "C" __global__ void __launch_bounds__(HIP_ATTN_SEARCH_THREADS, hip::S_MIN_CTAS) hip_prefill_scan(hip_prefill_params p) {
    hip::prefill_scan(p);
}

extern "C" __global__ void __launch_bounds__(HIP_ATTN_PREFILL_THREADS, hip::PfGeo<HIP_BQ, false>::MIN_CTAS)
    hip_prefill_attn(hip_prefill_params p) {
    hip::prefill_attn<HIP_BQ, false>(p);
}

// The same attention in tiles of HIP_ATTN_DENSE_ROWS query rows, for prefills where every block is selected.
extern "C" __global__ void __launch_bounds__(HIP_ATTN_DENSE_THREADS, hip::PfGeo<HIP_ATTN_DENSE_ROWS, true>::MIN_CTAS)
    hip_prefill_attn_dense(hip_prefill_params p) {
    hip::prefill_attn<HIP_ATTN_DENSE_ROWS, true>(p);
}

extern "C" __global__ void __launch_bounds__(HIP_ATTN_SEARCH_THREADS) hip_decode_search(hip_decode_params p) {
    hip::decode_search<1>(p);
}

// The same search spread over a cluster of HIP_DSEARCH_CL CTAs (grid x = mask_heads * HIP_DSEARCH_CL); with
// HIP_DSEARCH_CL == 1 it is the kernel above.
#if HIP_DSEARCH_CL > 1
#define HIP_DSEARCH_CLUSTER __cluster_dims__(HIP_DSEARCH_CL, 1, 1)
#else
#define HIP_DSEARCH_CLUSTER
#endif
extern "C" __global__ void HIP_DSEARCH_CLUSTER __launch_bounds__(HIP_ATTN_SEARCH_THREADS) hip_decode_search_wide(hip_decode_params p) {
    hip::decode_search<hip::S_DCL>(p);
}

// SCAN selection for decode steps that search (scan.cuh): the scan, then the merge that writes the records.
extern "C" __global__ void __launch_bounds__(HIP_ATTN_SCAN_THREADS, hip::SC_MIN_CTAS) hip_decode_scan(hip_decode_params p) {
    hip::decode_scan(p);
}

extern "C" __global__ void __launch_bounds__(HIP_ATTN_SCAN_THREADS) hip_decode_scan_merge(hip_decode_params p) {
    hip::decode_scan_merge(p);
}

extern "C" __global__ void __launch_bounds__(HIP_ATTN_DECODE_THREADS) hip_decode_attn(hip_decode_params p) {
    hip::decode_attn<false>(p);
}

extern "C" __global__ void __launch_bounds__(HIP_ATTN_DECODE_THREADS) hip_decode_attn_direct(hip_decode_params p) {
    hip::decode_attn<true>(p);
}

extern "C" __global__ void __launch_bounds__(HIP_ATTN_COMBINE_THREADS) hip_decode_combine(hip_decode_params p) {
    hip::decode_combine(p);
}

extern "C" __global__ void __launch_bounds__(HIP_ATTN_MERGE_THREADS) hip_merge_states(hip_merge_params p) {
    hip::merge_states(p);
}

// sizeof and offsetof of every field, in the order documented at HIP_ATTN_LAYOUT_ENTRIES (hip_params.h).
#define HIP_OFF(T, f) out[i++] = (unsigned long long)((const char*)&((const T*)base)->f - (const char*)base)
extern "C" __global__ void hip_params_layout(unsigned long long* out) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    // offsetof() lives in a toolkit header NVRTC lacks; member address minus object address is the same number.
    __align__(16) unsigned char buf[256];
    const void* base = buf;
    int i = 0;
    out[i++] = sizeof(hip_prefill_params);
    HIP_OFF(hip_prefill_params, q); HIP_OFF(hip_prefill_params, k); HIP_OFF(hip_prefill_params, v);
    HIP_OFF(hip_prefill_params, o); HIP_OFF(hip_prefill_params, lse); HIP_OFF(hip_prefill_params, cu_seqlens_q);
    HIP_OFF(hip_prefill_params, cu_seqlens_k); HIP_OFF(hip_prefill_params, mask_idx);
    HIP_OFF(hip_prefill_params, mask_cnt); HIP_OFF(hip_prefill_params, mask_state);
    HIP_OFF(hip_prefill_params, error_flag); HIP_OFF(hip_prefill_params, q_tok_stride);
    HIP_OFF(hip_prefill_params, q_head_stride); HIP_OFF(hip_prefill_params, k_tok_stride);
    HIP_OFF(hip_prefill_params, k_head_stride); HIP_OFF(hip_prefill_params, v_tok_stride);
    HIP_OFF(hip_prefill_params, v_head_stride); HIP_OFF(hip_prefill_params, o_tok_stride);
    HIP_OFF(hip_prefill_params, o_head_stride); HIP_OFF(hip_prefill_params, batch);
    HIP_OFF(hip_prefill_params, total_q); HIP_OFF(hip_prefill_params, total_k);
    HIP_OFF(hip_prefill_params, max_seqlen_q); HIP_OFF(hip_prefill_params, max_seqlen_k);
    HIP_OFF(hip_prefill_params, num_q_heads); HIP_OFF(hip_prefill_params, num_kv_heads);
    HIP_OFF(hip_prefill_params, mask_heads); HIP_OFF(hip_prefill_params, sink); HIP_OFF(hip_prefill_params, window);
    HIP_OFF(hip_prefill_params, state_ints); HIP_OFF(hip_prefill_params, slots); HIP_OFF(hip_prefill_params, scale);
    HIP_OFF(hip_prefill_params, scan_tail); HIP_OFF(hip_prefill_params, tail_blocks);
    HIP_OFF(hip_prefill_params, state_fingerprint);

    out[i++] = sizeof(hip_decode_params);
    HIP_OFF(hip_decode_params, q); HIP_OFF(hip_decode_params, o); HIP_OFF(hip_decode_params, lse);
    HIP_OFF(hip_decode_params, k_cache); HIP_OFF(hip_decode_params, v_cache); HIP_OFF(hip_decode_params, seqlens_k);
    HIP_OFF(hip_decode_params, page_table); HIP_OFF(hip_decode_params, mask_state); HIP_OFF(hip_decode_params, part_o);
    HIP_OFF(hip_decode_params, part_lse); HIP_OFF(hip_decode_params, error_flag);
    HIP_OFF(hip_decode_params, q_seq_stride); HIP_OFF(hip_decode_params, q_head_stride);
    HIP_OFF(hip_decode_params, o_seq_stride); HIP_OFF(hip_decode_params, o_head_stride);
    HIP_OFF(hip_decode_params, kv_seq_stride); HIP_OFF(hip_decode_params, kv_tok_stride);
    HIP_OFF(hip_decode_params, kv_head_stride); HIP_OFF(hip_decode_params, scan_ws);
    HIP_OFF(hip_decode_params, batch); HIP_OFF(hip_decode_params, paged); HIP_OFF(hip_decode_params, page_size);
    HIP_OFF(hip_decode_params, pt_stride); HIP_OFF(hip_decode_params, num_pages);
    HIP_OFF(hip_decode_params, max_seqlen_k); HIP_OFF(hip_decode_params, num_q_heads);
    HIP_OFF(hip_decode_params, num_kv_heads); HIP_OFF(hip_decode_params, mask_heads); HIP_OFF(hip_decode_params, sink);
    HIP_OFF(hip_decode_params, window); HIP_OFF(hip_decode_params, refresh); HIP_OFF(hip_decode_params, state_ints);
    HIP_OFF(hip_decode_params, num_splits); HIP_OFF(hip_decode_params, scale); HIP_OFF(hip_decode_params, scan_splits);
    HIP_OFF(hip_decode_params, state_fingerprint); HIP_OFF(hip_decode_params, reserved);

    out[i++] = sizeof(hip_merge_params);
    HIP_OFF(hip_merge_params, o_a); HIP_OFF(hip_merge_params, lse_a); HIP_OFF(hip_merge_params, o_b);
    HIP_OFF(hip_merge_params, lse_b); HIP_OFF(hip_merge_params, o_out); HIP_OFF(hip_merge_params, lse_out);
    HIP_OFF(hip_merge_params, a_tok_stride); HIP_OFF(hip_merge_params, a_head_stride);
    HIP_OFF(hip_merge_params, b_tok_stride); HIP_OFF(hip_merge_params, b_head_stride);
    HIP_OFF(hip_merge_params, out_tok_stride); HIP_OFF(hip_merge_params, out_head_stride);
    HIP_OFF(hip_merge_params, num_tokens); HIP_OFF(hip_merge_params, num_heads);
}
#undef HIP_OFF

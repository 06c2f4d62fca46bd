// HiP attention CUDA kernels: one translation unit for NVRTC. hip_contract.h (generated from src/contract.rs),
// common.cuh, search.cuh, scan.cuh, attention.cuh and merge.cuh are passed to NVRTC as named headers. Compile-time
// configuration comes from -D options (see hip_contract.h); launch geometry and supported ranges are there too.
// Context creation compiles this file as several programs at once (UNITS in src/cuda/backend.rs): with -DHIP_ONLY
// a program holds only the kernels named by -DHIP_WANT_<kernel>; without it, every kernel.
#include "hip_contract.h"
#include "common.cuh"
#include "search.cuh"
#include "scan.cuh"
#include "attention.cuh"
#include "merge.cuh"

// The E4M3 copy of K the FP8-scored search reads (k8.cuh), in modules built with HIP_FP8_SEARCH.
#if HIP_FP8_SEARCH && (!defined(HIP_ONLY) || defined(HIP_WANT_hip_prefill_k8_amax))
extern "C" __global__ void __launch_bounds__(HIP_ATTN_K8_THREADS) hip_prefill_k8_amax(hip_prefill_params p) {
    hip::prefill_k8_amax(p);
}
#endif
#if HIP_FP8_SEARCH && (!defined(HIP_ONLY) || defined(HIP_WANT_hip_prefill_k8_copy))
extern "C" __global__ void __launch_bounds__(HIP_ATTN_K8_THREADS) hip_prefill_k8_copy(hip_prefill_params p) {
    hip::prefill_k8_copy(p);
}
#endif

#if !defined(HIP_ONLY) || defined(HIP_WANT_hip_prefill_search)
extern "C" __global__ void __launch_bounds__(HIP_ATTN_SEARCH_THREADS, hip::S_MIN_CTAS) hip_prefill_search(hip_prefill_params p) {
    hip::prefill_search(p);
}
#endif

// The prefill tail's SCAN (scan.cuh): the query blocks hip_prefill_search leaves to it.
#if !defined(HIP_ONLY) || defined(HIP_WANT_hip_prefill_scan)
extern "C" __global__ void __launch_bounds__(HIP_ATTN_SEARCH_THREADS, hip::S_MIN_CTAS) hip_prefill_scan(hip_prefill_params p) {
    hip::prefill_scan(p);
}
#endif

#if !defined(HIP_ONLY) || defined(HIP_WANT_hip_prefill_attn)
extern "C" __global__ void __launch_bounds__(hip_contract::prefill_threads(HIP_BQ, HIP_HEAD_DIM), hip::PfGeo<HIP_BQ, false>::MIN_CTAS)
    hip_prefill_attn(hip_prefill_params p) {
    hip::prefill_attn<HIP_BQ, false>(p);
}
#endif

// The same attention in tiles of dense_rows(HIP_HEAD_DIM) query rows, for prefills where every block is selected.
#if !defined(HIP_ONLY) || defined(HIP_WANT_hip_prefill_attn_dense)
extern "C" __global__ void __launch_bounds__(hip_contract::dense_threads(HIP_HEAD_DIM),
                                                 hip::PfGeo<hip_contract::dense_rows(HIP_HEAD_DIM), true>::MIN_CTAS)
    hip_prefill_attn_dense(hip_prefill_params p) {
    hip::prefill_attn<hip_contract::dense_rows(HIP_HEAD_DIM), true>(p);
}
#endif

// The dense and the block-sparse attention on the Hopper pipeline (bf16, head_dim 128, sm_90a only; the host
// chooses: plan.rs for the dense one, backend.rs for the block-sparse one, which also needs bq <= 64).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && HIP_DTYPE == 0 && HIP_HEAD_DIM == HIP_ATTN_HOPPER_HEAD_DIM
#if !defined(HIP_ONLY) || defined(HIP_WANT_hip_prefill_attn_hopper)
#define HIP_HOPPER_DENSE 1
#endif
#if HIP_BQ <= HIP_ATTN_HOPPER_SPARSE_MAX_BQ && (!defined(HIP_ONLY) || defined(HIP_WANT_hip_prefill_attn_hopper_sparse))
#define HIP_HOPPER_SPARSE 1
#endif
#if defined(HIP_HOPPER_DENSE) || defined(HIP_HOPPER_SPARSE)
#define HOPPER_STAGES HIP_ATTN_HOPPER_STAGES
#define HOPPER_NO_PROTOTYPE 1
#include "hopper/fa3.cuh"
#endif
#ifdef HIP_HOPPER_DENSE
#include "hopper/dense.cuh"
#endif
#ifdef HIP_HOPPER_SPARSE
#include "hopper/sparse.cuh"
#endif
#endif

// The decode mask search alone, one CTA per (sequence, mask head); the attention kernels follow it.
#if !defined(HIP_ONLY) || defined(HIP_WANT_hip_decode_search)
extern "C" __global__ void __launch_bounds__(HIP_ATTN_SEARCH_THREADS) hip_decode_search(hip_decode_params p) {
    __shared__ hip::SearchSmem sm;
    hip::decode_search<1, false>(p, sm, nullptr);
}
#endif

// The cluster decode kernel, grid x = mask_heads * HIP_DSEARCH_CL, one of two by the configuration
// (HIP_DECODE_STEP, from plan::decode_step_kernel): with masks of one q head the whole step (search, attention,
// combine; attn/decode.cuh), with a mask shared by several q heads the search alone, spread over the cluster, before
// the attention kernels.
#if HIP_DSEARCH_CL > 1
#define HIP_DSEARCH_CLUSTER __cluster_dims__(HIP_DSEARCH_CL, 1, 1)
#else
#define HIP_DSEARCH_CLUSTER
#endif
#if HIP_DECODE_STEP && (!defined(HIP_ONLY) || defined(HIP_WANT_hip_decode_step_wide))
extern "C" __global__ void HIP_DSEARCH_CLUSTER __launch_bounds__(HIP_ATTN_SEARCH_THREADS) hip_decode_step_wide(hip_decode_params p) {
    hip::decode_step_wide<hip::S_DCL>(p);
}
#endif
#if !HIP_DECODE_STEP && (!defined(HIP_ONLY) || defined(HIP_WANT_hip_decode_search_wide))
extern "C" __global__ void HIP_DSEARCH_CLUSTER __launch_bounds__(HIP_ATTN_SEARCH_THREADS) hip_decode_search_wide(hip_decode_params p) {
    __shared__ hip::SearchSmem sm;
    hip::decode_search<hip::S_DCL, false>(p, sm, nullptr);
}
#endif

// SCAN selection for decode steps that search (scan.cuh): the scan, then the merge that writes the records.
#if !defined(HIP_ONLY) || defined(HIP_WANT_hip_decode_scan)
extern "C" __global__ void __launch_bounds__(HIP_ATTN_SCAN_THREADS, hip::SC_MIN_CTAS) hip_decode_scan(hip_decode_params p) {
    hip::decode_scan(p);
}
#endif

#if !defined(HIP_ONLY) || defined(HIP_WANT_hip_decode_scan_merge)
extern "C" __global__ void __launch_bounds__(HIP_ATTN_SCAN_THREADS) hip_decode_scan_merge(hip_decode_params p) {
    hip::decode_scan_merge(p);
}
#endif

#if !defined(HIP_ONLY) || defined(HIP_WANT_hip_decode_attn)
extern "C" __global__ void __launch_bounds__(HIP_ATTN_DECODE_THREADS) hip_decode_attn(hip_decode_params p) {
    hip::decode_attn<false>(p);
}
#endif

#if !defined(HIP_ONLY) || defined(HIP_WANT_hip_decode_attn_direct)
extern "C" __global__ void __launch_bounds__(HIP_ATTN_DECODE_THREADS) hip_decode_attn_direct(hip_decode_params p) {
    hip::decode_attn<true>(p);
}
#endif

#if !defined(HIP_ONLY) || defined(HIP_WANT_hip_decode_combine)
extern "C" __global__ void __launch_bounds__(HIP_ATTN_COMBINE_THREADS) hip_decode_combine(hip_decode_params p) {
    hip::decode_combine(p);
}
#endif

#if !defined(HIP_ONLY) || defined(HIP_WANT_hip_merge_states)
extern "C" __global__ void __launch_bounds__(HIP_ATTN_MERGE_THREADS) hip_merge_states(hip_merge_params p) {
    hip::merge_states(p);
}
#endif

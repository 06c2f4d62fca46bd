// The contract between the Rust host code and the CUDA kernels: parameter blocks passed by value to every
// kernel, the mask-state record layout, and the device error bits. src/cuda/params.rs mirrors this file field
// for field; a GPU test checks sizeof/offsetof on the device against the Rust layout.
//
// Every field is 8 bytes, or 4 bytes in an even-numbered run, so that no compiler inserts padding and the C and
// Rust layouts cannot drift apart silently.
//
// Compile-time configuration (passed by the host as -D options, one cubin per context configuration):
//   HIP_DTYPE      0 = bf16, 1 = f16 (element type of q, k, v, o)
//   HIP_HEAD_DIM   64, 128 or 256
//   HIP_KB         key blocks selected per query block (ceil(k / bk)); 0 means k = 0
//   HIP_BQ, HIP_BK, HIP_SQ, HIP_SK   block sizes and sampling strides (docs/ALGORITHM.md)
//   HIP_GROUP      num_q_heads / num_kv_heads
//   HIP_SHARE_KV   1: one mask per kv head (max over the GQA group), 0: one mask per q head
//   HIP_CAUSAL     1 or 0
//   HIP_DSEARCH_CL optional, default 1: CTAs per decode mask search, a thread-block cluster when > 1 (sm_90+)
// Kernels must not include CUDA toolkit headers: engine hosts often have only the driver and libnvrtc.
#ifndef HIP_ATTN_PARAMS_H
#define HIP_ATTN_PARAMS_H

// Mask-state record: HIP_ATTN_STATE_HEADER ints, then HIP_KB block indices, padded to a multiple of 4 ints.
#define HIP_ATTN_STATE_MAGIC 0x48695031   // "HiP1": the record holds a mask; anything else means "no mask yet"
#define HIP_ATTN_STATE_MAGIC_IDX 0
#define HIP_ATTN_STATE_STEP_IDX 1         // decode steps since the record was filled (the refresh counter)
#define HIP_ATTN_STATE_E_IDX 2            // e (start of the local window) at the time of the search
#define HIP_ATTN_STATE_COUNT_IDX 3        // number of valid block indices that follow
#define HIP_ATTN_STATE_FPRINT_IDX 4       // fingerprint of the writer's configuration (src/plan.rs, state_fingerprint;
                                          // never 0): the state_fingerprint field of the parameter blocks
#define HIP_ATTN_STATE_HEADER 5

// Device error bits, OR-ed into *error_flag by any kernel that meets bad index data and skips that work.
#define HIP_ATTN_DEVERR_SEQLENS 1u        // cu_seqlens / seqlens_k out of range, not increasing or off the totals
#define HIP_ATTN_DEVERR_PAGE_TABLE 2u     // page index outside [0, num_pages)
#define HIP_ATTN_DEVERR_MASK_STATE 4u     // stored mask record inconsistent (re-searched instead)
#define HIP_ATTN_DEVERR_MASK_CONFIG 8u    // stored mask record written by another configuration (re-searched)

// Prefill: kernels hip_prefill_search and hip_prefill_attn.
// Query block j of sequence b owns workspace slot  cu_seqlens_q[b] / bq + b + j  (slots < total_q / bq + batch).
typedef struct {
    unsigned long long q, k, v, o;            // element pointers; rows addressed with the strides below
    unsigned long long lse;                   // float [total_q][num_q_heads] (row stride num_q_heads), 0 = none
    unsigned long long cu_seqlens_q;          // int [batch + 1]
    unsigned long long cu_seqlens_k;          // int [batch + 1]
    unsigned long long mask_idx;              // int [slots][mask_heads][HIP_KB] (workspace)
    unsigned long long mask_cnt;              // int [slots][mask_heads] (workspace)
    unsigned long long mask_state;            // int [batch][mask_heads][state_ints], 0 = none
    unsigned long long error_flag;            // unsigned int, 0 = none
    long long q_tok_stride, q_head_stride;    // in elements
    long long k_tok_stride, k_head_stride;
    long long v_tok_stride, v_head_stride;
    long long o_tok_stride, o_head_stride;
    int batch, total_q, total_k, max_seqlen_q;
    int max_seqlen_k, num_q_heads, num_kv_heads, mask_heads;
    int sink, window, state_ints, slots;
    float scale;                              // softmax scale (already resolved, never 0)
    int scan_tail;                            // prefill_scan_tail: query blocks holding any of a sequence's last
                                              // scan_tail queries select by SCAN (hip_prefill_scan), 0 = none
    int tail_blocks;                          // grid.x of hip_prefill_scan: most tail blocks of one sequence
    int state_fingerprint;                    // written into every mask-state record (HIP_ATTN_STATE_FPRINT_IDX)
} hip_prefill_params;

// Decode: kernels hip_decode_search (or hip_decode_search_wide; with SCAN selection hip_decode_scan, then
// hip_decode_scan_merge), then hip_decode_attn and hip_decode_combine, or with num_splits == 1 hip_decode_attn_direct
// alone.
typedef struct {
    unsigned long long q, o;                  // [batch][num_q_heads][D] with the strides below
    unsigned long long lse;                   // float [batch][num_q_heads], 0 = none
    unsigned long long k_cache, v_cache;
    unsigned long long seqlens_k;             // int [batch]: keys per sequence, new token included
    unsigned long long page_table;            // int [batch][pt_stride], 0 when contiguous
    unsigned long long mask_state;            // int [batch][mask_heads][state_ints] (required)
    unsigned long long part_o;                // float [batch][num_q_heads][num_splits][D] (workspace)
    unsigned long long part_lse;              // float [batch][num_q_heads][num_splits] (workspace)
    unsigned long long error_flag;            // unsigned int, 0 = none
    long long q_seq_stride, q_head_stride;
    long long o_seq_stride, o_head_stride;
    long long kv_seq_stride;                  // contiguous: between sequences; paged: between pages
    long long kv_tok_stride, kv_head_stride;
    unsigned long long scan_ws;               // SCAN selection workspace (layout below), 0 when TREE
    int batch, paged, page_size, pt_stride;
    int num_pages, max_seqlen_k, num_q_heads, num_kv_heads;
    int mask_heads, sink, window, refresh;
    int state_ints, num_splits;
    float scale;
    int scan_splits;                          // CTAs of hip_decode_scan per (sequence, mask head), 1..64
    int state_fingerprint;                    // of this configuration: records carrying another one are not reused
    int reserved;
} hip_decode_params;

// Merge of two partial attention results by their LSEs: kernel hip_merge_states.
typedef struct {
    unsigned long long o_a, lse_a, o_b, lse_b, o_out, lse_out;   // lse_*: float [tokens][heads] dense
    long long a_tok_stride, a_head_stride;
    long long b_tok_stride, b_head_stride;
    long long out_tok_stride, out_head_stride;
    int num_tokens, num_heads;
} hip_merge_params;

// ================================================================================================================
// Launch geometry and supported ranges of the CUDA kernels (section added with the kernels; the host mirrors it).
// All kernels use static shared memory only (<= 48 KB for every supported configuration): no dynamic smem, no
// cudaFuncSetAttribute. Every kernel takes its parameter block by value as its only argument.
//
//   kernel               grid                                               block (threads)
//   hip_prefill_search   (ceil(max_seqlen_q / HIP_BQ), mask_heads, batch)     HIP_ATTN_SEARCH_THREADS
//   hip_prefill_scan     (tail_blocks, mask_heads, batch)                     HIP_ATTN_SEARCH_THREADS
//                        (scan_tail > 0, after hip_prefill_search; its workspace, int2 [batch][tail_blocks]
//                        [mask_heads][max(HIP_KB, 1) * 3], starts at mask_cnt + (slots * mask_heads * 4 rounded up to
//                        256 bytes))
//   hip_prefill_attn     (ceil(max_seqlen_q / HIP_BQ), num_q_heads, batch)    HIP_ATTN_PREFILL_THREADS_FOR(HIP_BQ, HIP_HEAD_DIM)
//   hip_prefill_attn_dense  (ceil(max_seqlen_q / HIP_ATTN_DENSE_ROWS_FOR(HIP_HEAD_DIM)), num_q_heads, batch)
//                        HIP_ATTN_DENSE_THREADS_FOR(HIP_HEAD_DIM), dynamic shared memory
//                        HIP_ATTN_DENSE_SMEM_FOR(HIP_HEAD_DIM) (opted in above 48 KiB); after
//                        hip_prefill_search, beside hip_prefill_attn: each takes the sequences the other leaves
//                        (attention.cuh, prefill_seq_dense; bad sequence bounds go to this one, which is always
//                        launched); the host may skip hip_prefill_attn when no valid sequence can need it
//   hip_decode_search    (mask_heads, batch)                                  HIP_ATTN_SEARCH_THREADS
//   hip_decode_search_wide  (mask_heads * HIP_DSEARCH_CL, batch), in clusters  HIP_ATTN_SEARCH_THREADS
//                        of (HIP_DSEARCH_CL, 1, 1) set by the kernel; the host picks one of the two searches
//   hip_decode_scan      (scan_splits, mask_heads, batch)                     HIP_ATTN_SCAN_THREADS
//   hip_decode_scan_merge  (mask_heads, batch)                                HIP_ATTN_SCAN_THREADS
//                        (SCAN selection, instead of the decode search; scan.cuh)
//   hip_decode_attn      (num_splits, num_q_heads, batch)                     HIP_ATTN_DECODE_THREADS
//   hip_decode_combine   (num_q_heads, batch)                                 HIP_ATTN_COMBINE_THREADS
//   hip_decode_attn_direct  (1, num_q_heads, batch)                           HIP_ATTN_DECODE_THREADS
//                        (num_splits == 1: writes o and lse as hip_decode_combine would; the values are
//                        the same, though a -0 output element stays -0 where the combine's sum makes it +0)
//   hip_merge_states     (num_tokens, ceil(num_heads / HIP_ATTN_MERGE_HEADS_PER_CTA))   HIP_ATTN_MERGE_THREADS
//   hip_params_layout    (1)                                                  1   (argument: u64* out, 85 entries)
// (hip_merge_states uses HIP_HEAD_DIM and HIP_DTYPE of the module it is compiled in.)
// num_splits >= 1 (the host picks it; larger values only add empty splits). grid.y/z limits: num_q_heads and
// mask_heads <= 65535, batch <= 65535, num_tokens <= 2^31-1.
#define HIP_ATTN_SEARCH_THREADS 128
#ifndef HIP_DSEARCH_CL
#define HIP_DSEARCH_CL 1
#endif
// prefill attention: one warp per 16 query rows of the block, times 2 (each key tile split between two warps)
// when the block has at most 2 row groups and HIP_HEAD_DIM <= 128. HIP_HEAD_DIM 64/128: BQ 1..16 -> 64 threads,
// 17..32 -> 128, 33..48 -> 96, 49..64 -> 128, then 32 * ceil(BQ / 16); HIP_HEAD_DIM 256: 32 * ceil(BQ / 16).
#define HIP_ATTN_PREFILL_KSPLIT_FOR(bq, d) ((d) <= 128 && ((bq) + 15) / 16 <= 2 ? 2 : 1)
#define HIP_ATTN_PREFILL_THREADS_FOR(bq, d) (32 * (((bq) + 15) / 16) * HIP_ATTN_PREFILL_KSPLIT_FOR(bq, d))
#define HIP_ATTN_DECODE_THREADS 128
#define HIP_ATTN_SCAN_THREADS 256
// Decode SCAN workspace (scan_ws): one region per (sequence b, mask head mh), the region of (b, mh) at byte offset
// (b * mask_heads + mh) * HIP_ATTN_SCAN_REGION_BYTES(nbmax), nbmax = ceil(max_seqlen_k / HIP_BK), holding
// int stat[HIP_ATTN_SCAN_MAX_SPLITS] (1: the split met a bad page), then unsigned keys[nbmax] (each block's score
// key, then each split's candidates compacted to the front of its range), then int cidx[nbmax] (their blocks).
#define HIP_ATTN_SCAN_MAX_SPLITS 64
#define HIP_ATTN_SCAN_REGION_BYTES(nbmax) ((4LL * HIP_ATTN_SCAN_MAX_SPLITS + 8LL * (nbmax) + 15) / 16 * 16)
#define HIP_ATTN_COMBINE_THREADS 128
#define HIP_ATTN_MERGE_THREADS 128
#define HIP_ATTN_MERGE_HEADS_PER_CTA 4   // one warp per (token, head)
#define HIP_ATTN_DENSE_ROWS_FOR(d) HIP_ATTN_CUDA_MAX_BQ_FOR(d)   // query rows per CTA of hip_prefill_attn_dense
// hip_prefill_attn_dense: head_dim <= 128, 4 warps of 32 rows; 256, 4 warps of 16 rows (as the block-sparse
// kernel's tiling). Keys per pipeline stage of both prefill attention kernels.
#define HIP_ATTN_DENSE_THREADS_FOR(d) ((d) <= 128 ? 128 : HIP_ATTN_PREFILL_THREADS_FOR(HIP_ATTN_DENSE_ROWS_FOR(d), d))
#define HIP_ATTN_PREFILL_KEYS_FOR(d) ((d) == 64 ? 64 : (d) == 128 ? 32 : 16)
// Dynamic shared memory (bytes) the host launches hip_prefill_attn_dense with, opting in above 48 KiB: two stages
// of K and V tiles in rows of d + 8 16-bit elements, Q (head_dim <= 128), the stages' key positions, slack for
// alignment. The kernel asserts that its layout fits.
#define HIP_ATTN_DENSE_SMEM_FOR(d)                                                                                  \
    (2 * 2 * HIP_ATTN_PREFILL_KEYS_FOR(d) * ((d) + 8) * 2 + ((d) <= 128 ? HIP_ATTN_DENSE_ROWS_FOR(d) * ((d) + 8) : 8) * 2 + \
     2 * HIP_ATTN_PREFILL_KEYS_FOR(d) * 4 + 64)
#if defined(HIP_BQ) && defined(HIP_HEAD_DIM)
#define HIP_ATTN_PREFILL_THREADS HIP_ATTN_PREFILL_THREADS_FOR(HIP_BQ, HIP_HEAD_DIM)
#define HIP_ATTN_DENSE_ROWS HIP_ATTN_DENSE_ROWS_FOR(HIP_HEAD_DIM)
#define HIP_ATTN_DENSE_THREADS HIP_ATTN_DENSE_THREADS_FOR(HIP_HEAD_DIM)
#endif

// hip_params_layout(unsigned long long* out) writes HIP_ATTN_LAYOUT_ENTRIES values: for each struct in the order
// hip_prefill_params, hip_decode_params, hip_merge_params: its sizeof, then offsetof of every field in
// declaration order (36 + 38 + 15 values).
#define HIP_ATTN_LAYOUT_PREFILL_FIELDS 35
#define HIP_ATTN_LAYOUT_DECODE_FIELDS 37
#define HIP_ATTN_LAYOUT_MERGE_FIELDS 14
#define HIP_ATTN_LAYOUT_ENTRIES (3 + HIP_ATTN_LAYOUT_PREFILL_FIELDS + HIP_ATTN_LAYOUT_DECODE_FIELDS + HIP_ATTN_LAYOUT_MERGE_FIELDS)

// Supported compile-time ranges (a configuration outside them fails to compile with a static_assert message).
// HIP_HEAD_DIM 64, 128, 256; HIP_DTYPE 0/1; HIP_SHARE_KV 0/1; HIP_CAUSAL 0/1; HIP_SQ, HIP_SK >= 1 (a stride at
// least the block size samples only the block's first query / key).
#define HIP_ATTN_CUDA_MAX_BQ_FOR(d) ((d) <= 128 ? 128 : 64)
#define HIP_ATTN_CUDA_MAX_KB_FOR(d) ((d) <= 128 ? 1024 : 512)
#define HIP_ATTN_CUDA_MAX_BK 128
#define HIP_ATTN_CUDA_MAX_GROUP 64
#ifdef HIP_HEAD_DIM
#define HIP_ATTN_CUDA_MAX_BQ HIP_ATTN_CUDA_MAX_BQ_FOR(HIP_HEAD_DIM)
#define HIP_ATTN_CUDA_MAX_KB HIP_ATTN_CUDA_MAX_KB_FOR(HIP_HEAD_DIM)
#endif
// Run-time requirements the kernels rely on (the host validates them): sink >= 0, window >= 0, refresh >= 1
// (refresh <= 0 is treated as 1), page_size >= 1 when paged, state_ints >= HIP_ATTN_STATE_HEADER + HIP_KB,
// num_q_heads == num_kv_heads * HIP_GROUP, mask_heads == (HIP_SHARE_KV ? num_kv_heads : num_q_heads).
//
// Decode split-K partials: part_o[b][h][s][0..D) holds the split's NORMALIZED output (f32, sum_j p_j v_j / sum_j
// p_j over the split's keys) and part_lse[b][h][s] its natural-log LSE (scale applied). An empty split writes
// o = 0, lse = -inf. A split that met bad index data writes o = 0, lse = NaN ("poisoned"); hip_decode_combine
// then writes o = 0, lse = -inf for that (sequence, head), as hip_decode_attn_direct does at once.
//
// Bad device data (error bits above): prefill CTAs of a sequence whose cu_seqlens fail validation write O = 0 and
// LSE = -inf for their rows when those rows are in bounds, and nothing into the workspace. cu_seqlens_q or
// cu_seqlens_k that are not non-decreasing over the whole batch fail validation for every sequence of the batch.
// hip_decode_search leaves the record untouched on bad seqlens_k, re-searches an inconsistent record or one whose
// fingerprint is not state_fingerprint, and on a bad page writes magic = 0 (no mask), so the following
// hip_decode_attn writes zeros for that head.
// ================================================================================================================

#endif

// GENERATED from src/contract.rs by build.rs: do not edit. A test fails when this file differs from what
// src/contract.rs generates; `cargo build` outside CI rewrites it.
//
// The contract between the Rust host code and the CUDA kernels: parameter blocks passed by value to every
// kernel, the mask-state record layout, the device error bits, launch geometry and supported ranges.
// Every field is 8 bytes, or 4 bytes in an even-numbered run, so that no compiler inserts padding.
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
//   HIP_DECODE_STEP  1: the module's cluster decode kernel is hip_decode_step_wide (needs masks of one q head:
//                  HIP_SHARE_KV 0 or HIP_GROUP 1), 0: hip_decode_search_wide
//   HIP_FP8_SEARCH optional, default 0; 1 (HIP_ATTN_FLAG_FP8_SEARCH_SCORES, sm_90a and HIP_HEAD_DIM 128 only):
//                  hip_prefill_search scores on E4M3 copies of Q and K, and the module holds hip_prefill_k8_amax
//                  and hip_prefill_k8_copy
// Kernels must not include CUDA toolkit headers: engine hosts often have only the driver and libnvrtc.
#ifndef HIP_ATTN_CONTRACT_H
#define HIP_ATTN_CONTRACT_H

// Mask-state record: HIP_ATTN_STATE_HEADER ints, then HIP_KB block indices, padded to a multiple of 4 ints.
// "HiP1": the record holds a mask; anything else means "no mask yet".
#define HIP_ATTN_STATE_MAGIC 0x48695031
#define HIP_ATTN_STATE_MAGIC_IDX 0
// Decode steps since the record was filled (the refresh counter).
#define HIP_ATTN_STATE_STEP_IDX 1
// e (start of the local window) at the time of the search.
#define HIP_ATTN_STATE_E_IDX 2
// Number of valid block indices that follow.
#define HIP_ATTN_STATE_COUNT_IDX 3
// Fingerprint of the writer's configuration (src/plan.rs, state_fingerprint; never 0): the state_fingerprint
// field of the parameter blocks.
#define HIP_ATTN_STATE_FPRINT_IDX 4
#define HIP_ATTN_STATE_HEADER 5

// Device error bits, OR-ed into *error_flag by any kernel that meets bad index data and skips that work.
// cu_seqlens / seqlens_k out of range, not increasing or off the totals.
#define HIP_ATTN_DEVERR_SEQLENS 1u
// Page index outside [0, num_pages).
#define HIP_ATTN_DEVERR_PAGE_TABLE 2u
// Stored mask record inconsistent (re-searched instead).
#define HIP_ATTN_DEVERR_MASK_STATE 4u
// Stored mask record written by another configuration (re-searched).
#define HIP_ATTN_DEVERR_MASK_CONFIG 8u

// Prefill: kernels hip_prefill_search, hip_prefill_scan, hip_prefill_attn and hip_prefill_attn_dense.
// Query block j of sequence b owns workspace slot  cu_seqlens_q[b] / bq + b + j  (slots < total_q / bq + batch).
typedef struct {
    // Element pointers; rows addressed with the strides below.
    unsigned long long q;
    unsigned long long k;
    unsigned long long v;
    unsigned long long o;
    // float [total_q][num_q_heads] (row stride num_q_heads), 0 = none.
    unsigned long long lse;
    // int [batch + 1].
    unsigned long long cu_seqlens_q;
    // int [batch + 1].
    unsigned long long cu_seqlens_k;
    // int [slots][mask_heads][HIP_KB] (workspace).
    unsigned long long mask_idx;
    // int [slots][mask_heads] (workspace).
    unsigned long long mask_cnt;
    // int [batch][mask_heads][state_ints], 0 = none.
    unsigned long long mask_state;
    // unsigned int, 0 = none.
    unsigned long long error_flag;
    // Strides in elements.
    long long q_tok_stride;
    long long q_head_stride;
    long long k_tok_stride;
    long long k_head_stride;
    long long v_tok_stride;
    long long v_head_stride;
    long long o_tok_stride;
    long long o_head_stride;
    int batch;
    int total_q;
    int total_k;
    int max_seqlen_q;
    int max_seqlen_k;
    int num_q_heads;
    int num_kv_heads;
    int mask_heads;
    int sink;
    int window;
    int state_ints;
    int slots;
    // Softmax scale (already resolved, never 0).
    float scale;
    // prefill_scan_tail: query blocks holding any of a sequence's last scan_tail queries select by SCAN
    // (hip_prefill_scan), 0 = none.
    int scan_tail;
    // grid.x of hip_prefill_scan: most tail blocks of one sequence.
    int tail_blocks;
    // Written into every mask-state record (HIP_ATTN_STATE_FPRINT_IDX).
    int state_fingerprint;
    // ceil(max_seqlen_k / HIP_ATTN_K8_CHUNK) with HIP_FP8_SEARCH, else 0.
    int k8_chunks;
    // Must be 0 (keeps the run of 4-byte fields even).
    int reserved;
    // HIP_FP8_SEARCH (workspace; 0 otherwise): the E4M3 copy of K, unsigned char
    // [batch][max_seqlen_k][num_kv_heads][HIP_HEAD_DIM], and the largest finite |k| of each chunk of
    // HIP_ATTN_K8_CHUNK keys, f32 bits [batch][num_kv_heads][k8_chunks] (cuda/k8.cuh). Last, so that the
    // other fields keep their offsets.
    unsigned long long k8;
    unsigned long long k8_amax;
} hip_prefill_params;

// Decode: kernels hip_decode_search or hip_decode_search_wide (with SCAN selection hip_decode_scan, then
// hip_decode_scan_merge), then hip_decode_attn and hip_decode_combine, or with num_splits == 1
// hip_decode_attn_direct alone; or the whole step in hip_decode_step_wide (num_splits == HIP_DSEARCH_CL, no
// workspace partials).
typedef struct {
    // [batch][num_q_heads][D] with the strides below.
    unsigned long long q;
    unsigned long long o;
    // float [batch][num_q_heads], 0 = none.
    unsigned long long lse;
    unsigned long long k_cache;
    unsigned long long v_cache;
    // int [batch]: keys per sequence, new token included.
    unsigned long long seqlens_k;
    // int [batch][pt_stride], 0 when contiguous.
    unsigned long long page_table;
    // int [batch][mask_heads][state_ints] (required).
    unsigned long long mask_state;
    // float [batch][num_q_heads][num_splits][D] (workspace).
    unsigned long long part_o;
    // float [batch][num_q_heads][num_splits] (workspace).
    unsigned long long part_lse;
    // unsigned int, 0 = none.
    unsigned long long error_flag;
    long long q_seq_stride;
    long long q_head_stride;
    long long o_seq_stride;
    long long o_head_stride;
    // Contiguous: between sequences; paged: between pages.
    long long kv_seq_stride;
    long long kv_tok_stride;
    long long kv_head_stride;
    // SCAN selection workspace (HIP_ATTN_SCAN_MAX_SPLITS, scan_region_bytes), 0 when TREE.
    unsigned long long scan_ws;
    int batch;
    int paged;
    int page_size;
    int pt_stride;
    int num_pages;
    int max_seqlen_k;
    int num_q_heads;
    int num_kv_heads;
    int mask_heads;
    int sink;
    int window;
    int refresh;
    int state_ints;
    int num_splits;
    float scale;
    // CTAs of hip_decode_scan per (sequence, mask head), 1..HIP_ATTN_SCAN_MAX_SPLITS.
    int scan_splits;
    // Of this configuration: records carrying another one are not reused.
    int state_fingerprint;
    int reserved;
} hip_decode_params;

// Merge of two partial attention results by their LSEs: kernel hip_merge_states.
typedef struct {
    // lse_*: float [tokens][heads] dense.
    unsigned long long o_a;
    unsigned long long lse_a;
    unsigned long long o_b;
    unsigned long long lse_b;
    unsigned long long o_out;
    unsigned long long lse_out;
    long long a_tok_stride;
    long long a_head_stride;
    long long b_tok_stride;
    long long b_head_stride;
    long long out_tok_stride;
    long long out_head_stride;
    int num_tokens;
    int num_heads;
} hip_merge_params;

// ================================================================================================================
// Launch geometry. All kernels but hip_prefill_attn_dense and the two hip_prefill_attn_hopper* use static shared
// memory only (<= 48 KB for every supported configuration). Every kernel takes its parameter block by value as its
// last argument, and all but hip_prefill_attn_hopper as their only one.
//
//   kernel               grid                                               block (threads)
//   hip_prefill_k8_amax  (k8_chunks, num_kv_heads, batch)                     HIP_ATTN_K8_THREADS
//   hip_prefill_k8_copy  (k8_chunks, num_kv_heads, batch)                     HIP_ATTN_K8_THREADS
//                        (HIP_FP8_SEARCH only, in this order before hip_prefill_search: cuda/k8.cuh)
//   hip_prefill_search   (ceil(max_seqlen_q / HIP_BQ), mask_heads, batch)     HIP_ATTN_SEARCH_THREADS
//   hip_prefill_scan     (tail_blocks, mask_heads, batch)                     HIP_ATTN_SEARCH_THREADS
//                        (scan_tail > 0, after hip_prefill_search; its workspace, int2 [batch][tail_blocks]
//                        [mask_heads][max(HIP_KB, 1) * 3], starts at mask_cnt + (slots * mask_heads * 4 rounded up to
//                        256 bytes))
//   hip_prefill_attn     (ceil(max_seqlen_q / HIP_BQ), num_q_heads, batch)    prefill_threads(HIP_BQ, HIP_HEAD_DIM)
//   hip_prefill_attn_dense  (ceil(max_seqlen_q / dense_rows(HIP_HEAD_DIM)), num_q_heads, batch)
//                        dense_threads(HIP_HEAD_DIM), dynamic shared memory dense_smem(HIP_HEAD_DIM) (opted in
//                        above 48 KiB); after hip_prefill_search, beside hip_prefill_attn: each takes the sequences
//                        the other leaves (all_blocks_selected; bad sequence bounds go to this one, which is always
//                        launched); the host may skip hip_prefill_attn when no valid sequence can need it
//   hip_prefill_attn_hopper  (ceil(max_seqlen_q / HIP_ATTN_HOPPER_ROWS), num_q_heads, batch)
//                        HIP_ATTN_HOPPER_THREADS, dynamic shared memory hopper_smem(HIP_ATTN_HOPPER_STAGES,
//                        HIP_ATTN_HOPPER_ROWS, HIP_ATTN_HOPPER_HEAD_DIM); hip_prefill_attn_dense's job where the host
//                        chooses it (sm_90a, bf16, head_dim HIP_ATTN_HOPPER_HEAD_DIM; plan.rs); takes the tensor maps
//                        of Q, K and V (boxes of 64 d x 1 head x HIP_ATTN_HOPPER_ROWS tokens) before the block
//   hip_prefill_attn_hopper_sparse  (ceil(max_seqlen_q / HIP_BQ), num_q_heads, batch)
//                        HIP_ATTN_HOPPER_SPARSE_THREADS, dynamic shared memory hopper_sparse_smem(
//                        HIP_ATTN_HOPPER_SPARSE_STAGES, HIP_ATTN_HOPPER_SPARSE_KEYS, HIP_HEAD_DIM, max(HIP_KB, 1));
//                        hip_prefill_attn's job where the host chooses it (sm_90a, bf16, head_dim
//                        HIP_ATTN_HOPPER_HEAD_DIM, HIP_BQ <= HIP_ATTN_HOPPER_SPARSE_MAX_BQ)
//   hip_decode_search    (mask_heads, batch)                                  HIP_ATTN_SEARCH_THREADS
//   hip_decode_search_wide  (mask_heads * HIP_DSEARCH_CL, batch), in clusters  HIP_ATTN_SEARCH_THREADS
//                        of (HIP_DSEARCH_CL, 1, 1) set by the kernel (HIP_DECODE_STEP 0): the search of
//                        hip_decode_search spread over a cluster; the host picks one of the two searches
//   hip_decode_step_wide  (mask_heads * HIP_DSEARCH_CL, batch), in clusters   HIP_ATTN_SEARCH_THREADS
//                        of (HIP_DSEARCH_CL, 1, 1) set by the kernel (HIP_DECODE_STEP 1): the search, the
//                        attention (split r of HIP_DSEARCH_CL by cluster rank r) and the combine of a whole step,
//                        alone; the host picks it or the kernels around it (launched where HIP_DSEARCH_CL > 1 only)
//   hip_decode_scan      (scan_splits, mask_heads, batch)                     HIP_ATTN_SCAN_THREADS
//   hip_decode_scan_merge  (mask_heads, batch)                                HIP_ATTN_SCAN_THREADS
//                        (SCAN selection, instead of the decode search; scan.cuh)
//   hip_decode_attn      (num_splits, num_q_heads, batch)                     HIP_ATTN_DECODE_THREADS
//   hip_decode_combine   (num_q_heads, batch)                                 HIP_ATTN_COMBINE_THREADS
//   hip_decode_attn_direct  (1, num_q_heads, batch)                           HIP_ATTN_DECODE_THREADS
//                        (num_splits == 1: writes o and lse as hip_decode_combine would; the values are
//                        the same, though a -0 output element stays -0 where the combine's sum makes it +0)
//   hip_merge_states     (num_tokens, ceil(num_heads / HIP_ATTN_MERGE_HEADS_PER_CTA))   HIP_ATTN_MERGE_THREADS
// (hip_merge_states uses HIP_HEAD_DIM and HIP_DTYPE of the module it is compiled in.)
// num_splits >= 1 (the host picks it; larger values only add empty splits). grid.y/z limits: num_q_heads and
// mask_heads <= 65535, batch <= 65535, num_tokens <= 2^31-1.
#ifndef HIP_DSEARCH_CL
#define HIP_DSEARCH_CL 1
#endif
// Threads of hip_prefill_search, hip_prefill_scan and both decode searches.
#define HIP_ATTN_SEARCH_THREADS 128
// Threads of hip_decode_attn and hip_decode_attn_direct.
#define HIP_ATTN_DECODE_THREADS 128
// Threads of hip_decode_scan and hip_decode_scan_merge.
#define HIP_ATTN_SCAN_THREADS 256
// Threads of hip_decode_combine.
#define HIP_ATTN_COMBINE_THREADS 128
// Threads of hip_merge_states: one warp per (token, head).
#define HIP_ATTN_MERGE_THREADS 128
#define HIP_ATTN_MERGE_HEADS_PER_CTA 4
// Most CTAs of the decode SCAN per (sequence, mask head).
#define HIP_ATTN_SCAN_MAX_SPLITS 64
// Supported compile-time ranges beyond those of the head dimension (cuda_max_bq, cuda_max_kb below).
#define HIP_ATTN_CUDA_MAX_BK 128
#define HIP_ATTN_CUDA_MAX_GROUP 64
// The FP8 copy of K (cuda/k8.cuh): threads of hip_prefill_k8_amax and hip_prefill_k8_copy, and the key rows
// each CTA of them takes.
#define HIP_ATTN_K8_THREADS 256
#define HIP_ATTN_K8_CHUNK 256
// Most rows one query block's FP8-scored search holds (ceil(bq / sq), times the GQA group when masks are
// shared): its E4M3 rows stay in shared memory for the whole search.
#define HIP_ATTN_FP8_SEARCH_MAX_ROWS 128

// hip_prefill_attn_hopper (cuda/hopper/dense.cuh on the pipeline of cuda/hopper/fa3.cuh): a producer
// warpgroup and two consumer warpgroups of 64 query rows each.
#define HIP_ATTN_HOPPER_THREADS 384
// Token rows of each of its tiles: the query rows of a CTA (HOPPER_BM), the keys of a K and V tile
// (HOPPER_BN), and the token extent of the host's tensor-map boxes, which every operand shares.
#define HIP_ATTN_HOPPER_ROWS 128
// The one head dimension it is built for (a tile row is two 128-byte swizzled halves of 64 bf16).
#define HIP_ATTN_HOPPER_HEAD_DIM 128
// K/V pipeline depth the library compiles it with (the standalone prototype takes 1 to 3 from -DHOPPER_STAGES).
#define HIP_ATTN_HOPPER_STAGES 3
// hip_prefill_attn_hopper_sparse (cuda/hopper/sparse.cuh): one warpgroup of 64 query rows (a query block of
// bq <= 64; at bq <= 32 rows 32-63 repeat the block's rows for a key split) that also gathers the key list's K
// and V rows.
#define HIP_ATTN_HOPPER_SPARSE_THREADS 128
// Keys of each of its K and V tiles.
#define HIP_ATTN_HOPPER_SPARSE_KEYS 64
// Its K/V pipeline depth.
#define HIP_ATTN_HOPPER_SPARSE_STAGES 3
// Largest bq it takes (the rows of one warpgroup MMA); larger blocks keep hip_prefill_attn.
#define HIP_ATTN_HOPPER_SPARSE_MAX_BQ 64

// Shared functions of the host (src/contract.rs, the same text) and the kernels.
namespace hip_contract {
#define sel(c, a, b) ((c) ? (a) : (b))
// Largest bq the kernels support with head dimension d, and the query rows per CTA of hip_prefill_attn_dense.
__host__ __device__ constexpr long long cuda_max_bq(long long d) { return sel(d <= 128, 128, 64); }
// Largest Kb (key blocks selected per query block) the kernels support with head dimension d.
__host__ __device__ constexpr long long cuda_max_kb(long long d) { return sel(d <= 128, 1024, 512); }
// Prefill attention: one warp per 16 query rows of the block, times 2 (each key tile split between two
// warps) when the block has at most 2 row groups and d <= 128. d 64/128: bq 1..16 -> 64 threads, 17..32 ->
// 128, 33..48 -> 96, 49..64 -> 128, then 32 * ceil(bq / 16); d 256: 32 * ceil(bq / 16).
__host__ __device__ constexpr long long prefill_ksplit(long long bq, long long d) { return sel(d <= 128 && (bq + 15) / 16 <= 2, 2, 1); }
__host__ __device__ constexpr long long prefill_threads(long long bq, long long d) { return 32 * ((bq + 15) / 16) * prefill_ksplit(bq, d); }
// Query rows per CTA of hip_prefill_attn_dense.
__host__ __device__ constexpr long long dense_rows(long long d) { return cuda_max_bq(d); }
// hip_prefill_attn_dense: d <= 128, 4 warps of 32 rows; 256, 4 warps of 16 rows (as the block-sparse
// kernel's tiling).
__host__ __device__ constexpr long long dense_threads(long long d) { return sel(d <= 128, 128, prefill_threads(dense_rows(d), d)); }
// Keys per pipeline stage of both prefill attention kernels.
__host__ __device__ constexpr long long prefill_keys(long long d) { return sel(d == 64, 64, sel(d == 128, 32, 16)); }
// Dynamic shared memory (bytes) the host launches hip_prefill_attn_dense with, opting in above 48 KiB: two
// stages of K and V tiles in rows of d + 8 16-bit elements, Q (d <= 128), the stages' key positions, slack
// for alignment. The kernel asserts that its layout fits.
__host__ __device__ constexpr long long dense_smem(long long d) { return 2 * 2 * prefill_keys(d) * (d + 8) * 2 +
sel(d <= 128, dense_rows(d) * (d + 8), 8) * 2 + 2 * prefill_keys(d) * 4 + 64; }
// Decode SCAN workspace (scan_ws): one region per (sequence b, mask head mh), the region of (b, mh) at byte
// offset (b * mask_heads + mh) * scan_region_bytes(HIP_ATTN_SCAN_MAX_SPLITS, nbmax), nbmax = ceil(max_seqlen_k
// / bk), holding int stat[max_splits] (1: the split met a bad page), then unsigned keys[nbmax] (each block's
// score key, then each split's candidates compacted to the front of its range), then int cidx[nbmax] (their
// blocks).
__host__ __device__ constexpr long long scan_region_bytes(long long max_splits, long long nbmax) { return (4 * max_splits + 8 * nbmax + 15) / 16 * 16; }
// Key blocks in the search domain [sink, e) of a query block: ceil((e - sink) / bk), 0 when e <= sink. (The
// kernels count in int through search_blocks_i32 below, common.cuh's num_search_blocks.)
__host__ __device__ constexpr long long search_blocks(long long sink, long long e, long long bk) { return sel(e > sink, (e - sink + bk - 1) / bk, 0); }
// The search selects every block of the domain [sink, e): a query block then attends every key it may see
// (prefill_seq_dense in the kernels, decided per sequence; plan.rs prefill_all_dense for the whole call).
__host__ __device__ constexpr bool all_blocks_selected(long long sink, long long e, long long bk, long long kb) { return search_blocks(sink, e, bk) <= kb; }
// Dynamic shared memory (bytes) of hip_prefill_attn_hopper (HOPPER_SMEM_BYTES of cuda/hopper/fa3.cuh) with
// `stages` K/V stages of tiles of `rows` tokens of d bf16 elements: the Q tile, the stages' K and V tiles, an
// 8-byte mbarrier for Q and four per stage (K and V full and empty), 1 KiB of slack to align the swizzled
// tiles to 1024 bytes.
__host__ __device__ constexpr long long hopper_smem(long long stages, long long rows, long long d) { return 2 * rows * d * (1 + 2 * stages) + 8 * (1 + 4 * stages) + 1024; }
// Dynamic shared memory (bytes) of hip_prefill_attn_hopper_sparse with `stages` K/V stages of `keys` keys of d
// bf16 elements and room for `kbx` selected blocks: the stages' K and V tiles, the stages' key positions and
// four visibility flags each, the block list, 1 KiB of slack to align the swizzled tiles.
__host__ __device__ constexpr long long hopper_sparse_smem(long long stages, long long keys, long long d, long long kbx) { return 2 * stages * keys * d * 2 + 4 * stages * (keys + 4) + 4 * kbx + 1024; }
#undef sel
// search_blocks over int (e, sink <= 2^31 - 1): what the kernels' key lists count.
__host__ __device__ constexpr int search_blocks_i32(int sink, int e, int bk) { return (int)search_blocks(sink, e, bk); }
}  // namespace hip_contract

// Supported compile-time ranges (a configuration outside them fails to compile with a static_assert message):
// HIP_HEAD_DIM 64, 128, 256; HIP_DTYPE 0/1; HIP_SHARE_KV 0/1; HIP_CAUSAL 0/1; HIP_SQ, HIP_SK >= 1 (a stride at
// least the block size samples only the block's first query / key); HIP_BQ <= cuda_max_bq(HIP_HEAD_DIM),
// HIP_KB <= cuda_max_kb(HIP_HEAD_DIM), HIP_BK <= HIP_ATTN_CUDA_MAX_BK, HIP_GROUP <= HIP_ATTN_CUDA_MAX_GROUP.
//
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

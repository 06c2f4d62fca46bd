//! The C-visible types. Everything here is part of the ABI (`HIP_ATTN_ABI_VERSION`): field order and sizes
//! never change within an ABI version; structs grow only into their `reserved` space. Enumerations that the
//! caller passes in are read as `uint32_t` fields and validated (an out-of-range value is never transmuted into
//! a Rust enum).

use std::ffi::{c_char, c_void};

/// ABI version of this header and library. A library refuses nothing on its own account; an engine should check
/// `hip_abi_version() == HIP_ATTN_ABI_VERSION` at start-up.
pub const HIP_ATTN_ABI_VERSION: u32 = 1;

/// `hip_config.flags` bit: a sequence's decode result does not depend on the rest of the batch (the CUDA
/// backend then splits each key list by the configuration alone, not by batch size and SM count; slightly
/// slower for small batches). Prefill and the CPU backend are batch-invariant always.
pub const HIP_ATTN_FLAG_BATCH_INVARIANT: u32 = 1;

/// `hip_config.flags` bit: prefill's tree search scores its candidate blocks on FP8 (E4M3) copies of the queries
/// and keys made in the same call (docs/ALGORITHM.md section 9, "Scoring on FP8 copies of Q and K"), not on the
/// inputs' own values: fewer bytes per score, at the price of a few swapped blocks per mask (quality figures in
/// BENCHMARKS.md). Attention, the LSE, the SCAN tail, decode and every other result are computed as without it.
/// The CPU backend supports it everywhere; the CUDA backend on sm_90 (H100/H200) with head_dim 128, at most 128
/// rows per search (ceil(bq / sq), times the GQA group with masks per kv head), else context creation says
/// HIP_ATTN_STATUS_UNSUPPORTED. The prefill workspace grows by one byte per key element (batch x max_seqlen_k x
/// num_kv_heads x head_dim).
pub const HIP_ATTN_FLAG_FP8_SEARCH_SCORES: u32 = 2;

/// Element type of q, k, v and o (values for `hip_config.dtype`).
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum hip_dtype {
    /// bfloat16.
    HIP_ATTN_DTYPE_BF16 = 1,
    /// IEEE half precision.
    HIP_ATTN_DTYPE_F16 = 2,
    /// IEEE single precision (CPU backend only).
    HIP_ATTN_DTYPE_F32 = 3,
}

/// Where a context runs (values for `hip_config.backend`).
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum hip_backend {
    /// Exact reference implementation on the host. All pointers are host pointers; streams are ignored.
    HIP_ATTN_BACKEND_CPU = 1,
    /// CUDA kernels on `hip_config.device_ordinal`. All pointers are device pointers; work is queued on the
    /// caller's stream.
    HIP_ATTN_BACKEND_CUDA = 2,
}

/// Which heads share one mask search (values for `hip_config.mask_sharing`).
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum hip_mask_sharing {
    /// One search per query head (the default).
    HIP_ATTN_MASK_PER_Q_HEAD = 1,
    /// One search per kv head, scoring with every query head of its GQA group.
    HIP_ATTN_MASK_PER_KV_HEAD = 2,
}

/// How a mask search selects key blocks (values for `hip_config.decode_selection`; see docs/ALGORITHM.md,
/// "Selection modes").
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum hip_selection {
    /// The tree search: O(Kb log(NB / Kb)) representative scores per search; may miss a salient key that is not
    /// its branch's representative. The default (0, so a caller built before this field existed gets it).
    HIP_ATTN_SELECT_TREE = 0,
    /// Exact block top-Kb: every key block of the search domain is scored. Reads every key of the domain once per
    /// search.
    HIP_ATTN_SELECT_SCAN = 1,
}

/// Layout of the decode KV cache (values for `hip_kv_cache.layout`).
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum hip_kv_layout {
    /// Sequence b's token t lives at `k + b*seq_stride + t*token_stride + head*head_stride`.
    HIP_ATTN_KV_CONTIGUOUS = 1,
    /// Token t of sequence b lives in page `page_table[b*page_table_stride + t/page_size]` at row
    /// `t % page_size`: `k + page*seq_stride + (t % page_size)*token_stride + head*head_stride`.
    HIP_ATTN_KV_PAGED = 2,
}

/// Severity passed to `hip_log_callback`.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum hip_log_level {
    HIP_ATTN_LOG_ERROR = 1,
    HIP_ATTN_LOG_WARN = 2,
    HIP_ATTN_LOG_INFO = 3,
    HIP_ATTN_LOG_DEBUG = 4,
}

/// Receives what the library does at context creation (kernel cache hits, compilation and its duration, the
/// chosen architecture). `message` is valid only during the call. Called on the thread that calls
/// `hip_ctx_create`; never from run calls.
#[allow(non_camel_case_types)]
pub type hip_log_callback = Option<unsafe extern "C" fn(user_data: *mut c_void, level: u32, message: *const c_char)>;

/// Context configuration. Start from `hip_config_default()`, then set the shape fields.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct hip_config {
    /// Must be `sizeof(hip_config)` (set by `hip_config_default()`).
    pub struct_size: u32,
    /// A `hip_dtype` value.
    pub dtype: u32,
    /// 64, 128 or 256.
    pub head_dim: u32,
    /// Query heads Hq, 1 to 4096 (32x the most heads of any published model; keeps workspace sizes and the
    /// CUDA grids' heads dimension in range).
    pub num_q_heads: u32,
    /// Key/value heads Hkv, 1 to 4096 (as num_q_heads); divides num_q_heads.
    pub num_kv_heads: u32,
    /// Keys selected by the tree search per query block [512]; 0 = sink + window only. k >= the sequence length
    /// is valid and gives exact dense attention. At most 1048576 (2^20: a mask record holds ceil(k / bk) int32
    /// per head, which must stay small).
    pub k: u32,
    /// Queries that share one mask [32], 1 to 4096 (a block's rows live in the kernels' shared memory).
    pub bq: u32,
    /// Keys per key block, the unit the search selects [2], 1 to 4096 (as bq).
    pub bk: u32,
    /// Attention-sink tokens every query attends [4]; at most 1073741824 (2^30: longer than any context, and
    /// sink + window cannot overflow 32 bits).
    pub sink: u32,
    /// Local window every query attends [128]; at most 1073741824 (2^30, as sink).
    pub window: u32,
    /// Query sampling stride when scoring a representative [1], 1 to 4096 (as bq).
    pub sq: u32,
    /// Key sampling stride when scoring a representative [1], 1 to 4096 (as bq).
    pub sk: u32,
    /// Decode steps between mask searches [8]; 1 = search every step. Any value from 1 up.
    pub refresh: u32,
    /// 1 = causal [1], 0 = every query sees every key.
    pub causal: u32,
    /// A `hip_mask_sharing` value [per q head].
    pub mask_sharing: u32,
    /// A `hip_backend` value [CPU].
    pub backend: u32,
    /// CUDA device ordinal (CUDA backend only) [0].
    pub device_ordinal: i32,
    /// Softmax scale [0]: 0 (or -0) means 1/sqrt(head_dim); otherwise positive, finite and at most 65536 (a larger
    /// scale is a unit or sign mistake; up to it no logit of f16 inputs can overflow f32, nor can the scale times
    /// log2(e) that the CUDA kernels fold into the queries). Negative, NaN or infinite values are refused.
    pub softmax_scale: f32,
    /// Option bits: `HIP_ATTN_FLAG_*` [0]; other bits must be 0.
    pub flags: u32,
    /// Reserved; must be 0.
    pub reserved_u32: u32,
    /// Directory of the on-disk kernel cache (CUDA backend); NULL = $XDG_CACHE_HOME/hip-attn or
    /// ~/.cache/hip-attn. Read only during `hip_ctx_create`.
    pub kernel_cache_dir: *const c_char,
    /// Optional log sink for context creation; NULL = silent.
    pub log_callback: hip_log_callback,
    /// Passed back to `log_callback` unchanged.
    pub log_user_data: *mut c_void,
    /// A `hip_selection` value: how a decode step that searches (every `refresh` steps) selects its key blocks
    /// [HIP_ATTN_SELECT_TREE]. (Takes space that was reserved, so 0 from an older caller means TREE.)
    pub decode_selection: u32,
    /// The query blocks of a prefill sequence that hold any of its last `prefill_scan_tail` queries select by
    /// SCAN instead of the tree search; their masks are what `mask_state_out` hands to decode. 0 = none [0];
    /// at most 2147483647 (2^31 - 1: positions are int32).
    pub prefill_scan_tail: u32,
    /// Reserved for future fields; must be 0.
    pub reserved: [u64; 7],
}

/// A read-only [tokens, heads, head_dim] view. Strides are in elements; the last dimension is contiguous.
/// `data` must be 16-byte aligned and both strides multiples of 16 bytes' worth of elements. The view's bytes,
/// from `data` to one past its last element, must end at or below 2^57 (the end of the user address space of
/// x86-64 with 5-level paging): a larger extent is a wrong stride or length, refused as
/// HIP_ATTN_STATUS_SIZE_OVERFLOW with the span and the strides and lengths that gave it.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct hip_tensor {
    pub data: *const c_void,
    pub token_stride: i64,
    pub head_stride: i64,
}

/// A writable [tokens, heads, head_dim] view; same rules as `hip_tensor`, and rows must not overlap. Nor may its
/// bytes overlap any other argument of the call (see the aliasing rule of each entry point).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct hip_tensor_mut {
    pub data: *mut c_void,
    pub token_stride: i64,
    pub head_stride: i64,
}

/// Arguments of `hip_prefill`: a batch of variable-length sequences packed along the token axis.
/// Sequence b owns queries [cu_seqlens_q[b], cu_seqlens_q[b+1]) and keys [cu_seqlens_k[b], cu_seqlens_k[b+1]);
/// its Tq queries sit at the last Tq of its Tk positions (Tq <= Tk: prefill, chunked prefill, append).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct hip_prefill_args {
    /// Must be `sizeof(hip_prefill_args)`.
    pub struct_size: u32,
    /// Number of sequences, 1 to 2147483647 (2^31 - 1: index data is int32); the CUDA backend takes at most
    /// 65535 (its grids' batch dimension) and says HIP_ATTN_STATUS_UNSUPPORTED above.
    pub batch_size: u32,
    /// Rows of q and o, 1 to 2147483647 (int32 index data); must equal cu_seqlens_q[batch_size]
    /// (HIP_ATTN_STATUS_BAD_INDEX otherwise).
    pub total_q: u32,
    /// Rows of k and v, 1 to 2147483647; at least total_q; must equal cu_seqlens_k[batch_size].
    pub total_k: u32,
    /// Upper bound of every sequence's Tq (sizes the launch grid), 1 to total_q.
    pub max_seqlen_q: u32,
    /// Upper bound of every sequence's Tk, 1 to total_k.
    pub max_seqlen_k: u32,
    /// Queries [total_q, num_q_heads, head_dim].
    pub q: hip_tensor,
    /// Keys [total_k, num_kv_heads, head_dim].
    pub k: hip_tensor,
    /// Values [total_k, num_kv_heads, head_dim].
    pub v: hip_tensor,
    /// Output [total_q, num_q_heads, head_dim], in the config's dtype.
    pub o: hip_tensor_mut,
    /// int32 [batch_size + 1], in backend memory: 0, increasing, ending at total_q.
    pub cu_seqlens_q: *const i32,
    /// int32 [batch_size + 1], in backend memory: 0, increasing, ending at total_k.
    pub cu_seqlens_k: *const i32,
    /// Optional f32 [total_q, num_q_heads]: natural-log sum of exp of the scaled logits. NULL = not wanted.
    pub lse: *mut f32,
    /// Optional mask state (`hip_mask_state_size(ctx, batch_size)` bytes): receives the mask of each sequence's
    /// last query block so that the first decode step need not search. The records carry this configuration's
    /// fingerprint: a decode context reuses them when its configuration differs at most in `refresh`, the
    /// selection modes, the scale or flags. NULL = not wanted.
    pub mask_state_out: *mut c_void,
    /// Reserved; must be 0.
    pub reserved: [u64; 4],
}

/// The decode KV cache (read-only). `k` and `v` share the layout and strides.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct hip_kv_cache {
    /// A `hip_kv_layout` value.
    pub layout: u32,
    /// Tokens per page (paged layout), 1 to 2147483647 (int32 positions); ignored when contiguous.
    pub page_size: u32,
    pub k: *const c_void,
    pub v: *const c_void,
    /// Elements between sequences (contiguous) or between pages (paged).
    pub seq_stride: i64,
    /// Elements between consecutive tokens.
    pub token_stride: i64,
    /// Elements between heads.
    pub head_stride: i64,
    /// Paged: int32 [batch_size, page_table_stride] page indices, in backend memory. NULL when contiguous.
    pub page_table: *const i32,
    /// Paged: entries per page-table row (the most pages one sequence may use), 1 to 2147483647.
    pub page_table_stride: u32,
    /// Paged: pages in the pool, 1 to 2147483647 (page indices are int32); every page index must be below it.
    pub num_pages: u32,
}

/// Arguments of `hip_decode_step`: one new query per sequence against its KV cache, which already holds the
/// new token's key and value at position seqlens_k[b] - 1.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct hip_decode_args {
    /// Must be `sizeof(hip_decode_args)`.
    pub struct_size: u32,
    /// Number of sequences, 1 to 2147483647 (int32 index data); the CUDA backend takes at most 65535 (its grids'
    /// batch dimension) and says HIP_ATTN_STATUS_UNSUPPORTED above.
    pub batch_size: u32,
    /// Upper bound of every seqlens_k[b], 1 to 2147483647 (int32 positions); contiguous caches must hold this many
    /// tokens per sequence.
    pub max_seqlen_k: u32,
    /// Reserved; must be 0.
    pub reserved_u32: u32,
    /// Queries [batch_size, num_q_heads, head_dim] (token_stride steps between sequences).
    pub q: hip_tensor,
    /// The KV cache.
    pub kv: hip_kv_cache,
    /// int32 [batch_size]: keys of each sequence including the new token (>= 1), in backend memory.
    pub seqlens_k: *const i32,
    /// Persistent mask state, `hip_mask_state_size(ctx, batch_size)` bytes in backend memory, owned by the
    /// caller. Zero it before a sequence's first step (or fill it with `hip_prefill`'s mask_state_out), and zero
    /// a sequence's records again after truncating its cache. Each record carries a fingerprint of the
    /// configuration that wrote it (dtype, head_dim, heads, mask sharing, k / bk, bq, sink, window, sq, sk,
    /// causal; not refresh, the selection modes, the scale or flags). A record of another configuration, or one
    /// whose count, e or blocks do not fit this sequence (a stale record), is HIP_ATTN_STATUS_BAD_INDEX naming
    /// it: on the CPU backend at once, nothing written; on CUDA the step searches that head anew and the next
    /// run call reports it.
    pub mask_state: *mut c_void,
    /// Output [batch_size, num_q_heads, head_dim].
    pub o: hip_tensor_mut,
    /// Optional f32 [batch_size, num_q_heads]; NULL = not wanted. A sharded call needs it: the partials of the
    /// shards merge by their LSEs (`hip_merge_states`).
    pub lse: *mut f32,
    /// Context parallelism (docs/ALGORITHM.md, "Sharded sequences"): the global position of every sequence's
    /// cache token 0 when the cache holds one contiguous range of a longer sequence [0]. 0: the range starts
    /// the sequence and holds its sink tokens; otherwise at least `sink` (the shard that starts the sequence
    /// holds every sink token), and key_offset + max_seqlen_k at most 2147483647 (positions are int32). The
    /// blocks a shard searches start at its first key that is not a sink token. (Takes space that was reserved,
    /// so 0 from an older caller means an unsharded call.)
    pub key_offset: u32,
    /// `HIP_ATTN_SHARD_*` bits describing the range [0]: 0 for an unsharded call and for the shard that ends
    /// the sequence (it holds the new token and the local window); other bits must be 0.
    pub shard_flags: u32,
    /// Reserved; must be 0.
    pub reserved: [u64; 3],
}

/// `hip_decode_args.shard_flags` bit: the cache range ends before the sequence's last token, which another
/// shard holds together with the local window. The query attends this range's sink tokens (key_offset 0) and
/// the blocks its own search selects over the rest of the range; the step's query row `q` is the same on every
/// shard.
pub const HIP_ATTN_SHARD_NOT_LAST: u32 = 1;

/// Arguments of `hip_merge_states`: out = merge((o_a, lse_a), (o_b, lse_b)). `o_out` may be `o_a` or `o_b` itself
/// (the same data pointer and strides) and `lse_out` may be `lse_a` or `lse_b` itself; no other overlap of an
/// output with anything is allowed (see `hip_merge_states`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct hip_merge_args {
    /// Must be `sizeof(hip_merge_args)`.
    pub struct_size: u32,
    /// Rows to merge, 1 to 2147483647 (2^31 - 1: the kernels index rows with int32).
    pub num_tokens: u32,
    /// Heads per row, 1 to 2147483647 (as num_tokens).
    pub num_heads: u32,
    /// Reserved; must be 0.
    pub reserved_u32: u32,
    /// First partial output [num_tokens, num_heads, head_dim] and its f32 LSE [num_tokens, num_heads].
    pub o_a: hip_tensor,
    pub lse_a: *const f32,
    /// Second partial output and its LSE.
    pub o_b: hip_tensor,
    pub lse_b: *const f32,
    /// Merged output.
    pub o_out: hip_tensor_mut,
    /// Optional merged LSE; NULL = not wanted.
    pub lse_out: *mut f32,
    /// Reserved; must be 0.
    pub reserved: [u64; 2],
}

/// An opaque context: configuration, compiled kernels and device resources. Immutable after creation, so one
/// context may serve several threads and streams at once as long as each call has its own workspace.
#[allow(non_camel_case_types)]
pub struct hip_ctx {
    pub(crate) inner: crate::context::Context,
}

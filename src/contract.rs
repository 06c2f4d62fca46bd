//! The contract between the Rust host code and the CUDA kernels, defined once: the parameter blocks every kernel
//! takes by value, the mask-state record layout, the device error bits, thread counts, the supported ranges, the
//! launch geometry and the "every block is selected" predicate.
//!
//! Each definition below produces its Rust item and its C text. build.rs compiles this file on its own and
//! writes that text, [`header_text`], to `cuda/generated/hip_contract.h` (outside CI) and to OUT_DIR; the CUDA
//! backend hands NVRTC the OUT_DIR copy, and a test fails when the committed file differs from it. So the kernels
//! and the host cannot disagree, and the committed header is there to be read.
//!
//! Functions are written once as arithmetic that is valid in both languages (integers, `+ - * /`, comparisons,
//! calls of each other and of `sel`, the conditional), and become `__host__ __device__ constexpr` functions in
//! namespace `hip_contract`. Because build.rs includes this file, it uses nothing but `std`.

use std::mem::{align_of, offset_of, size_of};

/// The C spelling of a field or return type.
pub trait CType {
    const C: &'static str;
}
impl CType for u64 {
    const C: &'static str = "unsigned long long";
}
impl CType for i64 {
    const C: &'static str = "long long";
}
impl CType for i32 {
    const C: &'static str = "int";
}
impl CType for f32 {
    const C: &'static str = "float";
}
impl CType for bool {
    const C: &'static str = "bool";
}

/// A constant's value as a C `int` literal (a group of unsigned constants adds the `u` suffix itself).
pub trait CLiteral {
    fn c_literal(self) -> String;
}
impl CLiteral for i32 {
    fn c_literal(self) -> String {
        // A tag such as the record magic reads best in hex, as it is written here.
        if self > 0xffff {
            format!("{self:#x}")
        } else {
            self.to_string()
        }
    }
}
impl CLiteral for u32 {
    fn c_literal(self) -> String {
        assert!(self <= i32::MAX as u32, "a u32 constant of the contract is an int in C");
        self.to_string()
    }
}
impl CLiteral for usize {
    fn c_literal(self) -> String {
        assert!(self <= i32::MAX as usize, "a usize constant of the contract is an int in C");
        self.to_string()
    }
}

fn comment(out: &mut String, indent: &str, docs: &[&str]) {
    for d in docs {
        out.push_str(indent);
        out.push_str(("//".to_string() + d).trim_end());
        out.push('\n');
    }
}

/// Constants: `pub const NAME` in Rust, `#define HIP_ATTN_NAME` in C (with `$suffix` after each value).
macro_rules! constants {
    ($writer:ident; $($rest:tt)*) => { constants!($writer, ""; $($rest)*); };
    ($writer:ident, $suffix:literal; $( $(#[doc = $d:literal])* $name:ident : $t:ty = $v:expr; )*) => {
        $( $(#[doc = $d])* pub const $name: $t = $v; )*
        fn $writer(out: &mut String) {
            $(
                comment(out, "", &[$($d),*]);
                let value = CLiteral::c_literal($name) + $suffix;
                out.push_str(&format!("#define HIP_ATTN_{} {value}\n", stringify!($name)));
            )*
        }
    };
}

/// Parameter blocks: a `#[repr(C)]` struct in Rust (with its field names and layout), a typedef in C.
macro_rules! blocks {
    ($writer:ident; $(
        $(#[doc = $d:literal])* $name:ident = $cname:literal { $( $(#[doc = $fd:literal])* $f:ident : $t:ty ),* $(,)? }
    )*) => {
        $(
            $(#[doc = $d])*
            #[repr(C)]
            #[derive(Debug, Clone, Copy, Default, PartialEq)]
            pub struct $name { $( $(#[doc = $fd])* pub $f: $t ),* }

            // No padding anywhere, so no C compiler can lay the struct out differently.
            const _: () = assert!(size_of::<$name>() == 0 $(+ size_of::<$t>())*);
            const _: () = assert!(align_of::<$name>() == 8);

            impl $name {
                /// The C typedef name.
                pub const C_NAME: &'static str = $cname;
                /// Field names in declaration order.
                pub const FIELDS: &'static [&'static str] = &[$(stringify!($f)),*];
                /// [sizeof, offsets of FIELDS...].
                pub const LAYOUT: &'static [usize] = &[size_of::<$name>(), $(offset_of!($name, $f)),*];
            }
        )*

        /// (C name, field names, layout) of every parameter block, in declaration order.
        pub const BLOCKS: &[(&str, &[&str], &[usize])] = &[$(($name::C_NAME, $name::FIELDS, $name::LAYOUT)),*];

        fn $writer(out: &mut String) {
            $(
                comment(out, "", &[$($d),*]);
                out.push_str("typedef struct {\n");
                $(
                    comment(out, "    ", &[$($fd),*]);
                    out.push_str(&format!("    {} {};\n", <$t as CType>::C, stringify!($f)));
                )*
                out.push_str(&format!("}} {};\n\n", $cname));
            )*
        }
    };
}

/// Functions of integers: `pub const fn` over i64 in Rust, `__host__ __device__ constexpr` over long long in C.
macro_rules! functions {
    ($writer:ident; $( $(#[doc = $d:literal])* fn $name:ident ( $($a:ident),* ) -> $r:ty = $body:expr; )*) => {
        $( $(#[doc = $d])* pub const fn $name($($a: i64),*) -> $r { $body } )*
        fn $writer(out: &mut String) {
            $(
                comment(out, "", &[$($d),*]);
                let args: &[&str] = &[$(concat!("long long ", stringify!($a))),*];
                out.push_str(&format!(
                    "__host__ __device__ constexpr {} {}({}) {{ return {}; }}\n",
                    <$r as CType>::C,
                    stringify!($name),
                    args.join(", "),
                    stringify!($body)
                ));
            )*
        }
    };
}

/// 32-bit forms of shared functions, for the kernels' int arithmetic: `int NAME(int ...)` that calls the 64-bit
/// function (so intermediate values cannot overflow) and narrows its result, which must fit an int for every int
/// argument.
macro_rules! narrow_functions {
    ($writer:ident; $( $(#[doc = $d:literal])* fn $name:ident ( $($a:ident),* ) = $wide:ident; )*) => {
        fn $writer(out: &mut String) {
            $(
                // Type-checks the wide function's arity in Rust too.
                let _: fn($(narrow_functions!(@i64 $a)),*) -> i64 = $wide;
                comment(out, "", &[$($d),*]);
                let args: &[&str] = &[$(concat!("int ", stringify!($a))),*];
                let call: &[&str] = &[$(stringify!($a)),*];
                out.push_str(&format!(
                    "__host__ __device__ constexpr int {}({}) {{ return (int){}({}); }}\n",
                    stringify!($name),
                    args.join(", "),
                    stringify!($wide),
                    call.join(", ")
                ));
            )*
        }
    };
    (@i64 $a:ident) => { i64 };
}

/// `c ? a : b`, the one conditional the shared functions use (written as a function so that it reads the same in
/// both languages; in Rust both operands are evaluated, so neither may fail).
pub const fn sel(c: bool, a: i64, b: i64) -> i64 {
    if c {
        a
    } else {
        b
    }
}
// In C it is the conditional operator itself, a macro defined only around the shared functions: a function call
// evaluates both operands before it chooses, and that compiled the kernels' block count (search_blocks_i32) to
// other code than the conditional does.
const SEL_C: &str = "#define sel(c, a, b) ((c) ? (a) : (b))\n";
const SEL_END_C: &str = "#undef sel\n";

constants! { state_c;
    /// Mask-state record: HIP_ATTN_STATE_HEADER ints, then HIP_KB block indices, padded to a multiple of 4 ints.
    /// "HiP1": the record holds a mask; anything else means "no mask yet".
    STATE_MAGIC: i32 = 0x4869_5031;
    STATE_MAGIC_IDX: usize = 0;
    /// Decode steps since the record was filled (the refresh counter).
    STATE_STEP_IDX: usize = 1;
    /// e (start of the local window) at the time of the search.
    STATE_E_IDX: usize = 2;
    /// Number of valid block indices that follow.
    STATE_COUNT_IDX: usize = 3;
    /// Fingerprint of the writer's configuration (src/plan.rs, state_fingerprint; never 0): the state_fingerprint
    /// field of the parameter blocks.
    STATE_FPRINT_IDX: usize = 4;
    STATE_HEADER: usize = 5;
}

constants! { deverr_c, "u";
    /// Device error bits, OR-ed into *error_flag by any kernel that meets bad index data and skips that work.
    /// cu_seqlens / seqlens_k out of range, not increasing or off the totals.
    DEVERR_SEQLENS: u32 = 1;
    /// Page index outside [0, num_pages).
    DEVERR_PAGE_TABLE: u32 = 2;
    /// Stored mask record inconsistent (re-searched instead).
    DEVERR_MASK_STATE: u32 = 4;
    /// Stored mask record written by another configuration (re-searched).
    DEVERR_MASK_CONFIG: u32 = 8;
}

/// Every device error bit.
pub const DEVERR_ALL: u32 = DEVERR_SEQLENS | DEVERR_PAGE_TABLE | DEVERR_MASK_STATE | DEVERR_MASK_CONFIG;

blocks! { blocks_c;
    /// Prefill: kernels hip_prefill_search, hip_prefill_scan, hip_prefill_attn and hip_prefill_attn_dense.
    /// Query block j of sequence b owns workspace slot  cu_seqlens_q[b] / bq + b + j  (slots < total_q / bq + batch).
    PrefillParams = "hip_prefill_params" {
        /// Element pointers; rows addressed with the strides below.
        q: u64, k: u64, v: u64, o: u64,
        /// float [total_q][num_q_heads] (row stride num_q_heads), 0 = none.
        lse: u64,
        /// int [batch + 1].
        cu_seqlens_q: u64,
        /// int [batch + 1].
        cu_seqlens_k: u64,
        /// int [slots][mask_heads][HIP_KB] (workspace).
        mask_idx: u64,
        /// int [slots][mask_heads] (workspace).
        mask_cnt: u64,
        /// int [batch][mask_heads][state_ints], 0 = none.
        mask_state: u64,
        /// unsigned int, 0 = none.
        error_flag: u64,
        /// Strides in elements.
        q_tok_stride: i64, q_head_stride: i64,
        k_tok_stride: i64, k_head_stride: i64,
        v_tok_stride: i64, v_head_stride: i64,
        o_tok_stride: i64, o_head_stride: i64,
        batch: i32, total_q: i32, total_k: i32, max_seqlen_q: i32,
        max_seqlen_k: i32, num_q_heads: i32, num_kv_heads: i32, mask_heads: i32,
        sink: i32, window: i32, state_ints: i32, slots: i32,
        /// Softmax scale (already resolved, never 0).
        scale: f32,
        /// prefill_scan_tail: query blocks holding any of a sequence's last scan_tail queries select by SCAN
        /// (hip_prefill_scan), 0 = none.
        scan_tail: i32,
        /// grid.x of hip_prefill_scan: most tail blocks of one sequence.
        tail_blocks: i32,
        /// Written into every mask-state record (HIP_ATTN_STATE_FPRINT_IDX).
        state_fingerprint: i32,
        /// ceil(max_seqlen_k / HIP_ATTN_K8_CHUNK) with HIP_FP8_SEARCH, else 0.
        k8_chunks: i32,
        /// Must be 0 (keeps the run of 4-byte fields even).
        reserved: i32,
        /// HIP_FP8_SEARCH (workspace; 0 otherwise): the E4M3 copy of K, unsigned char
        /// [batch][max_seqlen_k][num_kv_heads][HIP_HEAD_DIM], and the largest finite |k| of each chunk of
        /// HIP_ATTN_K8_CHUNK keys, f32 bits [batch][num_kv_heads][k8_chunks] (cuda/k8.cuh). Last, so that the
        /// other fields keep their offsets.
        k8: u64, k8_amax: u64,
    }

    /// Decode: kernels hip_decode_search or hip_decode_search_wide (with SCAN selection hip_decode_scan, then
    /// hip_decode_scan_merge), then hip_decode_attn and hip_decode_combine, or with num_splits == 1
    /// hip_decode_attn_direct alone; or the whole step in hip_decode_step_wide (num_splits == HIP_DSEARCH_CL, no
    /// workspace partials).
    DecodeParams = "hip_decode_params" {
        /// [batch][num_q_heads][D] with the strides below.
        q: u64, o: u64,
        /// float [batch][num_q_heads], 0 = none.
        lse: u64,
        k_cache: u64, v_cache: u64,
        /// int [batch]: keys per sequence, new token included.
        seqlens_k: u64,
        /// int [batch][pt_stride], 0 when contiguous.
        page_table: u64,
        /// int [batch][mask_heads][state_ints] (required).
        mask_state: u64,
        /// float [batch][num_q_heads][num_splits][D] (workspace).
        part_o: u64,
        /// float [batch][num_q_heads][num_splits] (workspace).
        part_lse: u64,
        /// unsigned int, 0 = none.
        error_flag: u64,
        q_seq_stride: i64, q_head_stride: i64,
        o_seq_stride: i64, o_head_stride: i64,
        /// Contiguous: between sequences; paged: between pages.
        kv_seq_stride: i64,
        kv_tok_stride: i64, kv_head_stride: i64,
        /// SCAN selection workspace (HIP_ATTN_SCAN_MAX_SPLITS, scan_region_bytes), 0 when TREE.
        scan_ws: u64,
        batch: i32, paged: i32, page_size: i32, pt_stride: i32,
        num_pages: i32, max_seqlen_k: i32, num_q_heads: i32, num_kv_heads: i32,
        mask_heads: i32, sink: i32, window: i32, refresh: i32,
        state_ints: i32, num_splits: i32,
        scale: f32,
        /// CTAs of hip_decode_scan per (sequence, mask head), 1..HIP_ATTN_SCAN_MAX_SPLITS.
        scan_splits: i32,
        /// Of this configuration: records carrying another one are not reused.
        state_fingerprint: i32,
        reserved: i32,
    }

    /// Merge of two partial attention results by their LSEs: kernel hip_merge_states.
    MergeParams = "hip_merge_params" {
        /// lse_*: float [tokens][heads] dense.
        o_a: u64, lse_a: u64, o_b: u64, lse_b: u64, o_out: u64, lse_out: u64,
        a_tok_stride: i64, a_head_stride: i64,
        b_tok_stride: i64, b_head_stride: i64,
        out_tok_stride: i64, out_head_stride: i64,
        num_tokens: i32, num_heads: i32,
    }
}

constants! { launch_c;
    /// Threads of hip_prefill_search, hip_prefill_scan and both decode searches.
    SEARCH_THREADS: u32 = 128;
    /// Threads of hip_decode_attn and hip_decode_attn_direct.
    DECODE_THREADS: u32 = 128;
    /// Threads of hip_decode_scan and hip_decode_scan_merge.
    SCAN_THREADS: u32 = 256;
    /// Threads of hip_decode_combine.
    COMBINE_THREADS: u32 = 128;
    /// Threads of hip_merge_states: one warp per (token, head).
    MERGE_THREADS: u32 = 128;
    MERGE_HEADS_PER_CTA: usize = 4;
    /// Most CTAs of the decode SCAN per (sequence, mask head).
    SCAN_MAX_SPLITS: usize = 64;
    /// Supported compile-time ranges beyond those of the head dimension (cuda_max_bq, cuda_max_kb below).
    CUDA_MAX_BK: usize = 128;
    CUDA_MAX_GROUP: usize = 64;
    /// The FP8 copy of K (cuda/k8.cuh): threads of hip_prefill_k8_amax and hip_prefill_k8_copy, and the key rows
    /// each CTA of them takes.
    K8_THREADS: u32 = 256;
    K8_CHUNK: usize = 256;
    /// Most rows one query block's FP8-scored search holds (ceil(bq / sq), times the GQA group when masks are
    /// shared): its E4M3 rows stay in shared memory for the whole search.
    FP8_SEARCH_MAX_ROWS: usize = 128;
}

constants! { hopper_c;
    /// hip_prefill_attn_hopper (cuda/hopper/dense.cuh on the pipeline of cuda/hopper/fa3.cuh): a producer
    /// warpgroup and two consumer warpgroups of 64 query rows each.
    HOPPER_THREADS: u32 = 384;
    /// Token rows of each of its tiles: the query rows of a CTA (HOPPER_BM), the keys of a K and V tile
    /// (HOPPER_BN), and the token extent of the host's tensor-map boxes, which every operand shares.
    HOPPER_ROWS: usize = 128;
    /// The one head dimension it is built for (a tile row is two 128-byte swizzled halves of 64 bf16).
    HOPPER_HEAD_DIM: usize = 128;
    /// K/V pipeline depth the library compiles it with (the standalone prototype takes 1 to 3 from -DHOPPER_STAGES).
    HOPPER_STAGES: usize = 3;
    /// hip_prefill_attn_hopper_sparse (cuda/hopper/sparse.cuh): one warpgroup of 64 query rows (a query block of
    /// bq <= 64; at bq <= 32 rows 32-63 repeat the block's rows for a key split) that also gathers the key list's K
    /// and V rows.
    HOPPER_SPARSE_THREADS: u32 = 128;
    /// Keys of each of its K and V tiles.
    HOPPER_SPARSE_KEYS: usize = 64;
    /// Its K/V pipeline depth.
    HOPPER_SPARSE_STAGES: usize = 3;
    /// Largest bq it takes (the rows of one warpgroup MMA); larger blocks keep hip_prefill_attn.
    HOPPER_SPARSE_MAX_BQ: usize = 64;
}

functions! { functions_c;
    /// Largest bq the kernels support with head dimension d, and the query rows per CTA of hip_prefill_attn_dense.
    fn cuda_max_bq(d) -> i64 = sel(d <= 128, 128, 64);
    /// Largest Kb (key blocks selected per query block) the kernels support with head dimension d.
    fn cuda_max_kb(d) -> i64 = sel(d <= 128, 1024, 512);
    /// Prefill attention: one warp per 16 query rows of the block, times 2 (each key tile split between two
    /// warps) when the block has at most 2 row groups and d <= 128. d 64/128: bq 1..16 -> 64 threads, 17..32 ->
    /// 128, 33..48 -> 96, 49..64 -> 128, then 32 * ceil(bq / 16); d 256: 32 * ceil(bq / 16).
    fn prefill_ksplit(bq, d) -> i64 = sel(d <= 128 && (bq + 15) / 16 <= 2, 2, 1);
    fn prefill_threads(bq, d) -> i64 = 32 * ((bq + 15) / 16) * prefill_ksplit(bq, d);
    /// Query rows per CTA of hip_prefill_attn_dense.
    fn dense_rows(d) -> i64 = cuda_max_bq(d);
    /// hip_prefill_attn_dense: d <= 128, 4 warps of 32 rows; 256, 4 warps of 16 rows (as the block-sparse
    /// kernel's tiling).
    fn dense_threads(d) -> i64 = sel(d <= 128, 128, prefill_threads(dense_rows(d), d));
    /// Keys per pipeline stage of both prefill attention kernels.
    fn prefill_keys(d) -> i64 = sel(d == 64, 64, sel(d == 128, 32, 16));
    /// Dynamic shared memory (bytes) the host launches hip_prefill_attn_dense with, opting in above 48 KiB: two
    /// stages of K and V tiles in rows of d + 8 16-bit elements, Q (d <= 128), the stages' key positions, slack
    /// for alignment. The kernel asserts that its layout fits.
    fn dense_smem(d) -> i64 = 2 * 2 * prefill_keys(d) * (d + 8) * 2
        + sel(d <= 128, dense_rows(d) * (d + 8), 8) * 2
        + 2 * prefill_keys(d) * 4
        + 64;
    /// Decode SCAN workspace (scan_ws): one region per (sequence b, mask head mh), the region of (b, mh) at byte
    /// offset (b * mask_heads + mh) * scan_region_bytes(HIP_ATTN_SCAN_MAX_SPLITS, nbmax), nbmax = ceil(max_seqlen_k
    /// / bk), holding int stat[max_splits] (1: the split met a bad page), then unsigned keys[nbmax] (each block's
    /// score key, then each split's candidates compacted to the front of its range), then int cidx[nbmax] (their
    /// blocks).
    fn scan_region_bytes(max_splits, nbmax) -> i64 = (4 * max_splits + 8 * nbmax + 15) / 16 * 16;
    /// Key blocks in the search domain [sink, e) of a query block: ceil((e - sink) / bk), 0 when e <= sink. (The
    /// kernels count in int through search_blocks_i32 below, common.cuh's num_search_blocks.)
    fn search_blocks(sink, e, bk) -> i64 = sel(e > sink, (e - sink + bk - 1) / bk, 0);
    /// The search selects every block of the domain [sink, e): a query block then attends every key it may see
    /// (prefill_seq_dense in the kernels, decided per sequence; plan.rs prefill_all_dense for the whole call).
    fn all_blocks_selected(sink, e, bk, kb) -> bool = search_blocks(sink, e, bk) <= kb;
    /// Dynamic shared memory (bytes) of hip_prefill_attn_hopper (HOPPER_SMEM_BYTES of cuda/hopper/fa3.cuh) with
    /// `stages` K/V stages of tiles of `rows` tokens of d bf16 elements: the Q tile, the stages' K and V tiles, an
    /// 8-byte mbarrier for Q and four per stage (K and V full and empty), 1 KiB of slack to align the swizzled
    /// tiles to 1024 bytes.
    fn hopper_smem(stages, rows, d) -> i64 = 2 * rows * d * (1 + 2 * stages) + 8 * (1 + 4 * stages) + 1024;
    /// Dynamic shared memory (bytes) of hip_prefill_attn_hopper_sparse with `stages` K/V stages of `keys` keys of d
    /// bf16 elements and room for `kbx` selected blocks: the stages' K and V tiles, the stages' key positions and
    /// four visibility flags each, the block list, 1 KiB of slack to align the swizzled tiles.
    fn hopper_sparse_smem(stages, keys, d, kbx) -> i64 = 2 * stages * keys * d * 2 + 4 * stages * (keys + 4) + 4 * kbx
        + 1024;
}

narrow_functions! { narrow_c;
    /// search_blocks over int (e, sink <= 2^31 - 1): what the kernels' key lists count.
    fn search_blocks_i32(sink, e, bk) = search_blocks;
}

const BANNER: &str = "\
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
";

const LAUNCH: &str = "\
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
";

const RANGES: &str = "\
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
// o = 0, lse = -inf. A split that met bad index data writes o = 0, lse = NaN (\"poisoned\"); hip_decode_combine
// then writes o = 0, lse = -inf for that (sequence, head), as hip_decode_attn_direct does at once.
//
// Bad device data (error bits above): prefill CTAs of a sequence whose cu_seqlens fail validation write O = 0 and
// LSE = -inf for their rows when those rows are in bounds, and nothing into the workspace. cu_seqlens_q or
// cu_seqlens_k that are not non-decreasing over the whole batch fail validation for every sequence of the batch.
// hip_decode_search leaves the record untouched on bad seqlens_k, re-searches an inconsistent record or one whose
// fingerprint is not state_fingerprint, and on a bad page writes magic = 0 (no mask), so the following
// hip_decode_attn writes zeros for that head.
// ================================================================================================================
";

/// The text of cuda/generated/hip_contract.h.
pub fn header_text() -> String {
    let mut s = String::from(BANNER);
    s.push('\n');
    state_c(&mut s);
    s.push('\n');
    deverr_c(&mut s);
    s.push('\n');
    blocks_c(&mut s);
    s.push_str(LAUNCH);
    launch_c(&mut s);
    s.push('\n');
    hopper_c(&mut s);
    s.push_str("\n// Shared functions of the host (src/contract.rs, the same text) and the kernels.\nnamespace hip_contract {\n");
    s.push_str(SEL_C);
    functions_c(&mut s);
    s.push_str(SEL_END_C);
    narrow_c(&mut s);
    s.push_str("}  // namespace hip_contract\n\n");
    s.push_str(RANGES);
    s.push_str("\n#endif\n");
    s
}

/// Name of the kernel in [`layout_kernel_source`].
pub const LAYOUT_KERNEL_NAME: &str = "hip_params_layout";

/// What the layout kernel writes: for each block of [`BLOCKS`], sizeof then every offset.
pub fn expected_layout() -> Vec<u64> {
    BLOCKS.iter().flat_map(|(_, _, l)| l.iter().map(|&x| x as u64)).collect()
}

/// CUDA source of a one-thread kernel `hip_params_layout(unsigned long long* out)`, generated from [`BLOCKS`],
/// that writes `expected_layout().len()` values: for each block, sizeof then offsetof of every field, in
/// declaration order. Compile it with the header ([`header_text`], as "hip_contract.h"), launch it on a device
/// buffer and compare with [`expected_layout`] (GPU test). Offsets are address differences inside a local object
/// (NVRTC has neither <stddef.h> nor __builtin_offsetof).
pub fn layout_kernel_source() -> String {
    let mut s = String::from(
        "#include \"hip_contract.h\"\n\
         extern \"C\" __global__ void hip_params_layout(unsigned long long* out) {\n\
         \x20   if (blockIdx.x != 0 || threadIdx.x != 0) return;\n\
         \x20   int i = 0;\n",
    );
    for (n, (cname, fields, _)) in BLOCKS.iter().enumerate() {
        s.push_str(&format!("    {{ {cname} t{n}; const char* b = reinterpret_cast<const char*>(&t{n});\n"));
        s.push_str(&format!("      out[i++] = sizeof({cname});\n"));
        for f in fields.iter() {
            s.push_str(&format!(
                "      out[i++] = (unsigned long long)(reinterpret_cast<const char*>(&t{n}.{f}) - b);\n"
            ));
        }
        s.push_str("    }\n");
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// The header NVRTC compiles (build.rs's OUT_DIR copy) and the committed one are both what this file
    /// generates now.
    #[test]
    fn contract_header_is_current() {
        let fresh = header_text();
        let built = std::fs::read_to_string(Path::new(env!("OUT_DIR")).join("hip_contract.h")).unwrap();
        assert!(built == fresh, "OUT_DIR/hip_contract.h is stale: build.rs did not run after src/contract.rs changed");
        let committed = std::fs::read_to_string(root().join("cuda/generated/hip_contract.h")).unwrap_or_default();
        assert!(
            committed == fresh,
            "cuda/generated/hip_contract.h differs from the header src/contract.rs generates: run `cargo build` \
             outside CI (it rewrites the header) and commit cuda/generated/hip_contract.h"
        );
    }

    #[test]
    fn blocks_have_no_padding_and_the_documented_sizes() {
        assert_eq!(size_of::<PrefillParams>(), 240);
        assert_eq!(size_of::<DecodeParams>(), 224);
        assert_eq!(size_of::<MergeParams>(), 104);
        assert_eq!(PrefillParams::FIELDS.len(), 39);
        assert_eq!(DecodeParams::FIELDS.len(), 37);
        assert_eq!(MergeParams::FIELDS.len(), 14);
        for (_, f, l) in BLOCKS {
            assert_eq!(l.len(), f.len() + 1);
            // Offsets strictly increase: declaration order, no reordering.
            assert!(l[1..].windows(2).all(|w| w[0] < w[1]));
            assert_eq!(l[1], 0);
        }
        assert_eq!(expected_layout().len(), 40 + 38 + 15);
        assert_eq!(offset_of!(PrefillParams, scale), 200);
        assert_eq!(offset_of!(DecodeParams, scale), 208);
        assert_eq!(offset_of!(MergeParams, num_heads), 100);
    }

    /// The numbers (one per line) printed by a C++ program that includes the generated header, defines
    /// `prelude` and runs `body`, built with the host's `c++` (`__host__` and `__device__` defined away). None,
    /// saying why, without one.
    fn host_numbers(tag: &str, prelude: &str, body: &str) -> Option<Vec<i64>> {
        let dir = std::env::temp_dir().join(format!("hipattn-contract-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hip_contract.h"), header_text()).unwrap();
        let src = dir.join(format!("{tag}.cpp"));
        let exe = dir.join(tag);
        let program = format!(
            "#include <cstdio>\n#include <cstddef>\n#include \"hip_contract.h\"\n{prelude}\nint main() {{\n{body}return 0; }}\n"
        );
        std::fs::write(&src, program).unwrap();
        let built = std::process::Command::new("c++")
            .args(["-std=c++17", "-Wall", "-Werror", "-D__host__=", "-D__device__=", "-o"])
            .arg(&exe)
            .arg(&src)
            .output();
        let out = match built {
            Ok(o) if o.status.success() => std::process::Command::new(&exe).output().unwrap(),
            Ok(o) => {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("the generated header does not compile as C++:\n{}", String::from_utf8_lossy(&o.stderr));
            }
            Err(e) => {
                eprintln!("skipped: no host c++ compiler ({e})");
                let _ = std::fs::remove_dir_all(&dir);
                return None;
            }
        };
        let _ = std::fs::remove_dir_all(&dir);
        Some(String::from_utf8(out.stdout).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect())
    }

    fn print(expr: &str) -> String {
        format!("std::printf(\"%lld\\n\", (long long)({expr}));\n")
    }

    /// A host C++ compiler lays the generated typedefs out as Rust lays out the structs (the CUDA ABI lays out
    /// these plain structs as the x86_64/aarch64 host ABI does; the GPU test checks the device itself).
    #[test]
    fn host_compiler_layout_matches_rust() {
        let mut body = String::new();
        for (cname, fields, _) in BLOCKS {
            body.push_str(&print(&format!("sizeof({cname})")));
            for f in fields.iter() {
                body.push_str(&print(&format!("offsetof({cname}, {f})")));
            }
        }
        if let Some(got) = host_numbers("layout", "", &body) {
            assert_eq!(got, expected_layout().iter().map(|&x| x as i64).collect::<Vec<_>>());
        }
    }

    /// The C text of every constant and shared function computes what the Rust item computes (the functions are
    /// one text in both languages; this guards the translation, e.g. a literal's type or an operator whose
    /// meaning differs).
    #[test]
    fn c_constants_and_functions_equal_rust() {
        let mut body = String::new();
        let mut want = Vec::new();
        let mut check = |c: String, v: i64| {
            body.push_str(&print(&c));
            want.push(v);
        };
        for (c, v) in [
            ("HIP_ATTN_STATE_MAGIC", STATE_MAGIC as i64),
            ("HIP_ATTN_STATE_MAGIC_IDX", STATE_MAGIC_IDX as i64),
            ("HIP_ATTN_STATE_STEP_IDX", STATE_STEP_IDX as i64),
            ("HIP_ATTN_STATE_E_IDX", STATE_E_IDX as i64),
            ("HIP_ATTN_STATE_COUNT_IDX", STATE_COUNT_IDX as i64),
            ("HIP_ATTN_STATE_FPRINT_IDX", STATE_FPRINT_IDX as i64),
            ("HIP_ATTN_STATE_HEADER", STATE_HEADER as i64),
            ("HIP_ATTN_DEVERR_SEQLENS", DEVERR_SEQLENS as i64),
            ("HIP_ATTN_DEVERR_PAGE_TABLE", DEVERR_PAGE_TABLE as i64),
            ("HIP_ATTN_DEVERR_MASK_STATE", DEVERR_MASK_STATE as i64),
            ("HIP_ATTN_DEVERR_MASK_CONFIG", DEVERR_MASK_CONFIG as i64),
            ("HIP_ATTN_SEARCH_THREADS", SEARCH_THREADS as i64),
            ("HIP_ATTN_DECODE_THREADS", DECODE_THREADS as i64),
            ("HIP_ATTN_SCAN_THREADS", SCAN_THREADS as i64),
            ("HIP_ATTN_COMBINE_THREADS", COMBINE_THREADS as i64),
            ("HIP_ATTN_MERGE_THREADS", MERGE_THREADS as i64),
            ("HIP_ATTN_MERGE_HEADS_PER_CTA", MERGE_HEADS_PER_CTA as i64),
            ("HIP_ATTN_SCAN_MAX_SPLITS", SCAN_MAX_SPLITS as i64),
            ("HIP_ATTN_CUDA_MAX_BK", CUDA_MAX_BK as i64),
            ("HIP_ATTN_CUDA_MAX_GROUP", CUDA_MAX_GROUP as i64),
            ("HIP_ATTN_K8_THREADS", K8_THREADS as i64),
            ("HIP_ATTN_K8_CHUNK", K8_CHUNK as i64),
            ("HIP_ATTN_FP8_SEARCH_MAX_ROWS", FP8_SEARCH_MAX_ROWS as i64),
            ("HIP_ATTN_HOPPER_THREADS", HOPPER_THREADS as i64),
            ("HIP_ATTN_HOPPER_ROWS", HOPPER_ROWS as i64),
            ("HIP_ATTN_HOPPER_HEAD_DIM", HOPPER_HEAD_DIM as i64),
            ("HIP_ATTN_HOPPER_STAGES", HOPPER_STAGES as i64),
            // The error bits are unsigned in C (they are OR-ed into an unsigned flag).
            ("-HIP_ATTN_DEVERR_MASK_CONFIG > 0", 1),
        ] {
            check(c.to_string(), v);
        }
        use hip_contract_names as h;
        for d in [64, 128, 256] {
            check(format!("{}({d})", h::CUDA_MAX_BQ), cuda_max_bq(d));
            check(format!("{}({d})", h::CUDA_MAX_KB), cuda_max_kb(d));
            check(format!("{}({d})", h::DENSE_ROWS), dense_rows(d));
            check(format!("{}({d})", h::DENSE_THREADS), dense_threads(d));
            check(format!("{}({d})", h::PREFILL_KEYS), prefill_keys(d));
            check(format!("{}({d})", h::DENSE_SMEM), dense_smem(d));
            for bq in 1..=cuda_max_bq(d) {
                check(format!("{}({bq}, {d})", h::PREFILL_THREADS), prefill_threads(bq, d));
                check(format!("{}({bq}, {d})", h::PREFILL_KSPLIT), prefill_ksplit(bq, d));
            }
        }
        for n in [0, 1, 2, 3, 255, 256, 4097, 131071, 1 << 20, 1 << 40] {
            check(format!("{}(HIP_ATTN_SCAN_MAX_SPLITS, {n}LL)", h::SCAN_REGION_BYTES), scan_region_bytes(64, n));
        }
        for sink in [0, 4, 9] {
            for e in [0, 1, 4, 5, 9, 10, 100, 2047, 1 << 31] {
                for bk in [1, 2, 3, 16] {
                    check(format!("{}({sink}, {e}LL, {bk})", h::SEARCH_BLOCKS), search_blocks(sink, e, bk));
                    for kb in [0, 1, 5, 512] {
                        let c = format!("{}({sink}, {e}LL, {bk}, {kb})", h::ALL_BLOCKS_SELECTED);
                        check(c, all_blocks_selected(sink, e, bk, kb) as i64);
                    }
                }
            }
        }
        for stages in 1..=3 {
            check(format!("{}({stages}, 128, 128)", h::HOPPER_SMEM), hopper_smem(stages, 128, 128));
            for kbx in [1, 256, 1024] {
                let c = format!("{}({stages}, 64, 128, {kbx})", h::HOPPER_SPARSE_SMEM);
                check(c, hopper_sparse_smem(stages, 64, 128, kbx));
            }
        }
        if let Some(got) = host_numbers("functions", "", &body) {
            assert_eq!(got, want);
        }
        // The Rust side of these, against first principles.
        assert_eq!((prefill_threads(32, 128), prefill_threads(48, 128), prefill_threads(64, 256)), (128, 96, 128));
        assert_eq!(dense_smem(128), 2 * 2 * 32 * 136 * 2 + 128 * 136 * 2 + 2 * 32 * 4 + 64);
        assert_eq!((search_blocks(4, 4, 2), search_blocks(4, 5, 2), search_blocks(4, 7, 2)), (0, 1, 2));
        // Q and three K and three V tiles of 32 KiB, 13 mbarriers, 1 KiB of alignment: within the 227 KiB an sm_90
        // CTA may opt in to.
        let hopper = hopper_smem(HOPPER_STAGES as i64, HOPPER_ROWS as i64, HOPPER_HEAD_DIM as i64);
        assert_eq!(hopper, 32768 * 7 + 8 * 13 + 1024);
        assert!(hopper <= 227 * 1024);
        // Three stages of 16 KiB K and V tiles, their key positions and flags, 1024 blocks, 1 KiB of alignment: two
        // CTAs per SM (1 KiB reserved per CTA) within the 228 KiB of an sm_90 SM.
        let sparse = hopper_sparse_smem(HOPPER_SPARSE_STAGES as i64, HOPPER_SPARSE_KEYS as i64, 128, 1024);
        assert_eq!(sparse, 6 * 16384 + 3 * 68 * 4 + 4096 + 1024);
        assert!(2 * (sparse + 1024) <= 228 * 1024);
    }

    /// search_blocks_i32, the kernels' int form of search_blocks (common.cuh's num_search_blocks), counts what
    /// search_blocks counts over the int range, where the arithmetic of an int body would overflow.
    #[test]
    fn int_block_count_equals_search_blocks() {
        let mut prog = String::new();
        let mut want = Vec::new();
        for bk in [1, 2, 3, 16, 128] {
            for sink in [0, 4, 9, 1 << 30] {
                for e in [0, 1, 4, 5, 9, 10, 100, 2047, i32::MAX as i64] {
                    prog.push_str(&print(&format!("{}({sink}, {e}, {bk})", hip_contract_names::SEARCH_BLOCKS_I32)));
                    want.push(search_blocks(sink, e, bk));
                }
            }
        }
        if let Some(got) = host_numbers("nsb", "", &prog) {
            assert_eq!(got, want);
        }
    }

    /// C names of the shared functions, as the kernels call them.
    mod hip_contract_names {
        pub const CUDA_MAX_BQ: &str = "hip_contract::cuda_max_bq";
        pub const CUDA_MAX_KB: &str = "hip_contract::cuda_max_kb";
        pub const DENSE_ROWS: &str = "hip_contract::dense_rows";
        pub const DENSE_THREADS: &str = "hip_contract::dense_threads";
        pub const PREFILL_KEYS: &str = "hip_contract::prefill_keys";
        pub const DENSE_SMEM: &str = "hip_contract::dense_smem";
        pub const PREFILL_THREADS: &str = "hip_contract::prefill_threads";
        pub const PREFILL_KSPLIT: &str = "hip_contract::prefill_ksplit";
        pub const SCAN_REGION_BYTES: &str = "hip_contract::scan_region_bytes";
        pub const SEARCH_BLOCKS: &str = "hip_contract::search_blocks";
        pub const SEARCH_BLOCKS_I32: &str = "hip_contract::search_blocks_i32";
        pub const ALL_BLOCKS_SELECTED: &str = "hip_contract::all_blocks_selected";
        pub const HOPPER_SMEM: &str = "hip_contract::hopper_smem";
        pub const HOPPER_SPARSE_SMEM: &str = "hip_contract::hopper_sparse_smem";
    }

    /// The generated layout kernel compiles with NVRTC against the generated header (the GPU test runs it).
    #[test]
    fn layout_kernel_compiles() {
        if !crate::cuda::compile::tests::nvrtc_available() {
            return;
        }
        let (header, src) = (header_text(), layout_kernel_source());
        let sources = [("layout.cu", src.as_str()), ("hip_contract.h", header.as_str())];
        let cubin =
            crate::cuda::compile::compile_cubin("layout.cu", &sources, &["-std=c++17".into()], "sm_80").unwrap();
        assert!(String::from_utf8_lossy(&cubin).contains(LAYOUT_KERNEL_NAME));
    }
}

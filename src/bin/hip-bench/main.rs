//! hip-bench: the project's benchmark program. Protocol and targets: docs/BENCHMARK-PROTOCOL.md; the algorithm
//! whose work is counted: docs/ALGORITHM.md.
//!
//! It drives hip-attn only through its C API (`hip_ctx_create`, the size queries, `hip_prefill`,
//! `hip_decode_step`), called from Rust exactly as an engine calls them, on device memory it allocates itself
//! through the CUDA driver API (cudarc's `result` layer) and on a non-blocking stream it creates.
//!
//! What each configuration (one table row, or two for decode: eager and graph) measures; `--only` matches the
//! configuration ids below as substrings:
//! - `ctx-create/MHA-32`: wall time of `hip_ctx_create` (CUDA, MHA-32 headline settings) with an empty kernel
//!   cache directory ("cold": NVRTC compiles), then again with that directory filled ("kernel cache"). The driver
//!   and the primary context are already initialised in both, as in an engine that creates contexts at start-up.
//! - `prefill/<shape>/<T>`: one causal sequence of T tokens (Tq = Tk = T), HiP k=512 bq=32 bk=2 sink 4 window 128:
//!   mask search plus sparse attention, the whole `hip_prefill` call.
//! - `exact-window/<shape>/32k`: exact causal attention through the same compiled kernels (identical compile
//!   options to the headline rows): window >= T, so every query's local set is [sink, p] and the search domain is
//!   empty. The other exact route, k >= T, needs Kb = 16384 key blocks, above the CUDA backend's limit
//!   (1024 for head_dim 128), so `exact-k/MHA-32/32k` takes it with bk = 64 (k = T = 32768, Kb = 512, NB <= Kb:
//!   every block selected, no search iteration): the selected-block path rather than the window path.
//!   `exact-window-bq128/MHA-32/32k`: the window route with bq = 128 (each gathered key tile serves 128 queries).
//! - `decode-cached/<shape>/<T>`: one decode step against a paged KV cache (page size 64, pages shuffled in the
//!   pool as an engine's allocator leaves them) whose mask state was filled by a searching step; refresh = 2^30,
//!   so no timed step searches. `decode-cached-b16/...`: the same with 16 sequences per step.
//! - `decode-search/<shape>/<T>`: refresh = 1, every timed step searches.
//!   Each decode configuration is timed eagerly (`hip_decode_step` per step) and as a CUDA graph replay (the step
//!   captured once per input set, replayed): launch latency dominates a step of a few microseconds.
//! - `--scan` replaces these with SCAN selection's rows and their baselines (scan.rs); `--quality-gpu` measures
//!   the quality of the backend's own selection (quality_gpu.rs).
//!
//! Timing (the protocol's): warm-up first; then one CUDA event pair around every run; the median is reported (prefill:
//! 20 to 50 runs; decode: 300 steps eager and 300 graph replays). Inputs are fresh random bf16 (uniform in [-1, 1),
//! never zeros) from a seed printed in the header (`--seed` replays it). Prefill inputs are always several times
//! the L2 (the smallest, GQA-8 at 8k, is 160 MB). A decode step reads only its attended keys (about 10 MB for
//! MHA-32), which would sit in L2 after the first step, so decode rotates among several input sets (own query,
//! mask state and sequence length, 256 tokens apart so that even the local windows differ), enough that one round
//! touches at least 4x the L2.
//!
//! Correctness in the same run: after timing, the output is poisoned (0xFF bytes = NaN), one more call (and for
//! decode one graph replay) is made, and sampled units of the real problem are recomputed by the CPU backend (a
//! `HIP_ATTN_BACKEND_CPU` context on host memory): for prefill, query block j of a mask head is exactly a chunked
//! prefill of its bq queries over the key prefix [0, (j+1)*bq) with only that head (and its kv head); for decode,
//! one (sequence, mask head) is a single-sequence, single-kv-head decode step. The host regenerates any slice of
//! the inputs from the counter-based generator, so multi-GiB device tensors need no host copy. The row reports the
//! output relative L2 error over all sampled units (bf16 tolerance 1e-2). Masks are compared too: where the
//! selected blocks differ, the search is replayed in f64 and the unit is skipped as a legitimate near-tie when the
//! smallest score gap at a cut is below 1e-4*D (the test suite's threshold); otherwise it stays in and is noted.
//!
//! `--self-test` runs the same check code with the CPU backend standing in for the device (no GPU needed): every
//! unit must then match exactly. It checks the harness (slicing, head mapping, workspace and mask-state reads).

#![warn(unsafe_op_in_unsafe_fn)]

use cudarc::driver::{result, sys, CudaContext};
use half::bf16;
use hip_attn::config::{validate, Config, Selection};
use hip_attn::plan::{self, PrefillWorkspace};
use hip_attn::spec::BlockKeys;
use hip_attn::{
    hip_abi_version, hip_backend, hip_config, hip_config_default, hip_ctx, hip_ctx_create, hip_ctx_destroy,
    hip_decode_args, hip_decode_step, hip_decode_workspace_size, hip_dtype, hip_kv_cache, hip_kv_layout,
    hip_last_error_message, hip_mask_sharing, hip_mask_state_size, hip_prefill, hip_prefill_args,
    hip_prefill_workspace_size, hip_selection, hip_status, hip_status_string, hip_tensor, hip_tensor_mut, hip_version,
    HIP_ATTN_ABI_VERSION,
};
use std::ffi::{c_char, c_void, CStr, CString};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

mod quality;

/// eprintln! that never panics (a closed stderr must not abort a run whose results still go to the JSON file).
macro_rules! elog {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Writes to stdout without panicking on a closed pipe; returns whether it worked.
fn emit(text: &str) -> bool {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_ok()
}

// After elog!, which they use.
mod quality_gpu;
mod scan;

// ---------------------------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------------------------

/// Head dimension of every shape of docs/BENCHMARK-PROTOCOL.md.
const D: usize = 128;
/// Ceilings of the H100 80GB HBM3: bf16 tensor-core rate and measured copy bandwidth.
const PEAK_FLOPS: f64 = 800e12;
const PEAK_BYTES_PER_S: f64 = 3.0e12;
/// Output relative L2 tolerance for bf16 (docs/ALGORITHM.md §9).
const TOLERANCE: f64 = 1e-2;
/// Score gap under which two implementations may legitimately select differently. A score is a dot product of
/// D = 128 bf16 pairs in [-1, 1) (exact products, f32 sums of magnitude ~10): summation order changes it by about
/// 1e-5, at most a few 1e-4; 1e-3 leaves a margin. (The test suite's 1e-4*D = 0.0128 is looser: with Kb = 256 the
/// gap at a cut is below it in most iterations, which would call any difference a tie.)
const TIE_EPS: f64 = 1e-3;
/// KV-cache page size (tokens), as in an engine.
const PAGE: usize = 64;
/// Tokens between the sequence lengths of consecutive decode input sets.
const SET_SPACING: usize = 256;
/// Decode input sets: at least 2 (consecutive steps never repeat inputs), at most this many.
const MAX_SETS: usize = 32;
/// Refresh for the cached-mask decode rows: no timed step reaches a multiple of it.
const CACHED_REFRESH: usize = 1 << 30;
/// Host staging chunk for uploads of generated data.
const UPLOAD_CHUNK_BYTES: usize = 256 << 20;
/// Device memory left free beyond what a configuration allocates (context, kernels, fragmentation).
const MEM_MARGIN: usize = 1 << 30;
const PREFILL_WARMUP: usize = 2;
const PREFILL_MIN_RUNS: usize = 20;
const PREFILL_MAX_RUNS: usize = 50;
/// Time the timed prefill runs of one configuration should take (runs are then clamped to [MIN, MAX]).
const PREFILL_TIMED_MS: f64 = 2000.0;
/// Warm-up rounds over all decode input sets (the first round of a cached-mask row is the searching step).
const DECODE_WARMUP_ROUNDS: usize = 3;
const DECODE_STEPS: usize = 300;
const DECODE_STEPS_QUICK: usize = 200;
/// Default time budget: configurations that would start later are skipped (a device call is limited to 10 min).
const DEFAULT_BUDGET_S: f64 = 480.0;

/// Generator tags of the inputs (see `Noise`).
const TAG_Q: u64 = 1;
const TAG_K: u64 = 2;
const TAG_V: u64 = 3;
const TAG_CACHE_K: u64 = 4;
const TAG_CACHE_V: u64 = 5;
const TAG_PAGES: u64 = 6;
const TAG_DECODE_Q: u64 = 1000; // + input set index

const USAGE: &str = "\
usage: hip-bench [--quick] [--only PATTERN[,PATTERN...]] [--json PATH] [--with-512k]
                 [--seed N] [--device ORDINAL] [--gqa-mask-per-q-head] [--budget SECONDS]
                 [--plan] [--self-test] [--quality] [--scan] [--quality-gpu [--cpu]]

  --quick                 reduced set for smoke tests: context creation, prefill 8k, decode 32k
  --only PATTERN          run only configurations whose id contains PATTERN (case-insensitive; comma = or),
                          e.g. --only prefill/MHA-32, --only decode-cached, --only 128k
  --json PATH             where to write the JSON results [hip-bench.json]; with $OUT set, also $OUT/hip-bench.json
  --with-512k             add prefill 512k (skipped with a message if device memory does not allow it)
  --seed N                input seed (default: from the clock; printed either way)
  --device ORDINAL        CUDA device [0]
  --gqa-mask-per-q-head   GQA-8 with one mask search per q head (default: one per kv head, as the GQA rows of
                          docs/BENCHMARK-PROTOCOL.md)
  --budget SECONDS        skip configurations that would start after this much time [480]
  --plan                  print the configurations with their counted FLOPs, bytes and floors; no GPU needed
  --self-test             run the correctness harness with the CPU backend standing in for the GPU; no GPU needed
  --quality               quality beside speed (docs/): attention-mass recall and output error against dense
                          attention on random, drifting and rotary inputs at 8k, 32k, 128k (--quick: 8k); computed
                          on the host from the definition's functions, no GPU needed; JSON to hip-quality.json
  --scan                  SCAN selection's rows instead of the default set (with --only, --plan as usual): decode
                          with SCAN every step and at refresh 8 (per step over whole cycles of 1 SCAN + 7 cached
                          steps) beside dense decode (window >= T) at 128k and 1M and batch 16 at 32k; prefill 128k
                          with prefill_scan_tail 1024 beside the same without; MHA-32 and GQA-8; ratios after the
                          table. Rows the backend does not support are reported as skipped (unsupported)
  --quality-gpu           quality of the backend's own decode selection, TREE and SCAN, k = 128/512/2048 at 32k,
                          128k (32 heads) and k = 512 at 1M (8 heads): attention-mass recall and output error against
                          dense f64 attention, single-salient-key recall, masks against the definition (--quick: 32k);
                          JSON to hip-quality-gpu.json
  --cpu                   with --quality-gpu: the CPU backend at 4k instead (no GPU needed)

Progress goes to stderr, the Markdown table to stdout. Exit status: 0 all configurations ran and matched the CPU
reference (missed speed targets do not change it), 1 a configuration failed its check or hit an error,
2 no CUDA device, 64 bad command line.";

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

/// Why a configuration did not produce a result: skipped on purpose (not enough memory, time budget) or failed.
#[derive(Debug)]
enum Fail {
    Skip(String),
    Error(String),
}

impl From<String> for Fail {
    fn from(s: String) -> Fail {
        Fail::Error(s)
    }
}

type Res<T> = Result<T, Fail>;

/// Maps a driver error to a message naming the call.
fn drv(what: &'static str) -> impl Fn(result::DriverError) -> Fail {
    move |e| Fail::Error(format!("{what}: {e:?}"))
}

fn last_error() -> String {
    // SAFETY: hip_last_error_message returns a valid NUL-terminated thread-local string; it is copied at once.
    unsafe { CStr::from_ptr(hip_last_error_message()) }.to_string_lossy().into_owned()
}

fn status_name(st: hip_status) -> String {
    // SAFETY: hip_status_string returns a static NUL-terminated string for any value.
    unsafe { CStr::from_ptr(hip_status_string(st as i32)) }.to_string_lossy().into_owned()
}

/// Turns a hip_status into Ok or an error carrying the status and the library's message.
fn check(st: hip_status, what: &str) -> Res<()> {
    if st == hip_status::HIP_ATTN_STATUS_SUCCESS {
        return Ok(());
    }
    Err(Fail::Error(format!("{what}: {} ({}): {}", status_name(st), st as i32, last_error())))
}

fn validated(cfg: &hip_config) -> Res<Config> {
    // SAFETY: kernel_cache_dir is NULL or a live CString owned by the caller for this call.
    unsafe { validate(cfg) }.map(|(c, _)| c).map_err(|e| Fail::Error(format!("configuration: {e}")))
}

// ---------------------------------------------------------------------------------------------------------------
// Shapes and settings
// ---------------------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Shape {
    name: &'static str,
    hq: usize,
    hkv: usize,
    /// One mask search per kv head (HIP_ATTN_MASK_PER_KV_HEAD) instead of per q head.
    share_kv: bool,
}

const MHA32: Shape = Shape { name: "MHA-32", hq: 32, hkv: 32, share_kv: false };
const GQA8: Shape = Shape { name: "GQA-8", hq: 32, hkv: 8, share_kv: true };
const GQA8_PER_Q: Shape = Shape { name: "GQA-8q", hq: 32, hkv: 8, share_kv: false };

impl Shape {
    fn group(&self) -> usize {
        self.hq / self.hkv
    }
    fn mask_heads(&self) -> usize {
        if self.share_kv {
            self.hkv
        } else {
            self.hq
        }
    }
    /// q heads whose queries score for (and use) one mask.
    fn heads_per_mask(&self) -> usize {
        if self.share_kv {
            self.group()
        } else {
            1
        }
    }
    fn first_head(&self, mh: usize) -> usize {
        mh * self.heads_per_mask()
    }
    fn kv_head_of(&self, h: usize) -> usize {
        h / self.group()
    }
    /// The shape of one check unit: the q heads of one mask and their single kv head.
    fn unit(&self) -> Shape {
        Shape { name: self.name, hq: self.heads_per_mask(), hkv: 1, share_kv: self.share_kv }
    }
    fn config(&self, hip: &Hip, backend: Backend) -> hip_config {
        let mut c = hip_config_default();
        c.dtype = hip_dtype::HIP_ATTN_DTYPE_BF16 as u32;
        c.head_dim = D as u32;
        c.num_q_heads = self.hq as u32;
        c.num_kv_heads = self.hkv as u32;
        c.k = hip.k as u32;
        c.bq = hip.bq as u32;
        c.bk = hip.bk as u32;
        c.sink = hip.sink as u32;
        c.window = hip.window as u32;
        c.sq = hip.sq as u32;
        c.sk = hip.sk as u32;
        c.refresh = hip.refresh as u32;
        c.decode_selection = match hip.sel {
            Selection::Tree => hip_selection::HIP_ATTN_SELECT_TREE,
            Selection::Scan => hip_selection::HIP_ATTN_SELECT_SCAN,
        } as u32;
        c.prefill_scan_tail = hip.scan_tail as u32;
        c.causal = 1;
        c.mask_sharing = if self.share_kv {
            hip_mask_sharing::HIP_ATTN_MASK_PER_KV_HEAD as u32
        } else {
            hip_mask_sharing::HIP_ATTN_MASK_PER_Q_HEAD as u32
        };
        match backend {
            Backend::Cpu => c.backend = hip_backend::HIP_ATTN_BACKEND_CPU as u32,
            Backend::Cuda(ordinal) => {
                c.backend = hip_backend::HIP_ATTN_BACKEND_CUDA as u32;
                c.device_ordinal = ordinal;
            }
        }
        c
    }
}

/// HiP settings (docs/ALGORITHM.md §2).
#[derive(Clone, Copy, Debug)]
struct Hip {
    k: usize,
    bq: usize,
    bk: usize,
    sink: usize,
    window: usize,
    sq: usize,
    sk: usize,
    refresh: usize,
    /// Selection of a decode step that searches (docs/ALGORITHM.md "Selection modes: TREE and SCAN").
    sel: Selection,
    /// Prefill query blocks holding any of a sequence's last `scan_tail` queries select by SCAN.
    scan_tail: usize,
}

/// docs/BENCHMARK-PROTOCOL.md's headline settings (the official implementation's defaults).
const HEADLINE: Hip =
    Hip { k: 512, bq: 32, bk: 2, sink: 4, window: 128, sq: 1, sk: 1, refresh: 8, sel: Selection::Tree, scan_tail: 0 };

impl Hip {
    fn kb(&self) -> usize {
        self.k.div_ceil(self.bk)
    }
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Cpu,
    Cuda(i32),
}

// ---------------------------------------------------------------------------------------------------------------
// Work accounting: the floors
// ---------------------------------------------------------------------------------------------------------------

/// Counted floating-point operations and compulsory bytes of one timed run (one prefill call or one decode step).
#[derive(Clone, Copy, Debug, Default)]
struct Work {
    flops: f64,
    bytes: f64,
}

impl Work {
    /// The floor: the larger of the arithmetic time at the bf16 rate and the memory time at copy bandwidth.
    fn floor_ms(&self) -> f64 {
        (self.flops / PEAK_FLOPS).max(self.bytes / PEAK_BYTES_PER_S) * 1e3
    }
}

/// ceil(log2(x)) for x >= 1 (0 for x <= 1).
fn ceil_log2(x: usize) -> usize {
    if x <= 1 {
        0
    } else {
        (usize::BITS - (x - 1).leading_zeros()) as usize
    }
}

/// The key sets of a (causal) query block whose first query sits at p0 (docs/ALGORITHM.md §3):
/// returns (e, domain, NB, selected keys). e = max(sink, p0 + 1 - window) starts the local set and ends the search
/// domain [sink, e); NB = ceil(domain / bk) blocks; the search selects every block when NB <= Kb (all domain keys)
/// and Kb blocks of bk keys otherwise (a partial last block counted as full: at most bk - 1 keys too many), hence
/// selected = min(Kb*bk, domain); k = 0 selects nothing. Every selected key lies before e <= p0 + 1, so it is
/// visible to every query of the block.
fn block_sets(hip: &Hip, p0: usize) -> (usize, usize, usize, usize) {
    let e = hip.sink.max((p0 + 1).saturating_sub(hip.window));
    let domain = e.saturating_sub(hip.sink);
    let nb = domain.div_ceil(hip.bk);
    let selected = if hip.k == 0 { 0 } else { (hip.kb() * hip.bk).min(domain) };
    (e, domain, nb, selected)
}

/// Search iterations of one query block (docs/ALGORITHM.md section 4: ceil(log2(ceil(NB / Kb))); none when
/// NB <= Kb or k = 0).
fn search_iterations(hip: &Hip, nb: usize) -> usize {
    if hip.k == 0 || nb <= hip.kb() {
        0
    } else {
        ceil_log2(nb.div_ceil(hip.kb()))
    }
}

/// Counted work of a causal prefill of one sequence of `t` tokens (Tq = Tk = t).
///
/// FLOPs:
/// - attention: 4*D per (query, attended key, q head): 2*D for q.k and 2*D for p*v. Query p of block B attends
///   min(sink, p+1) sink keys + the selected keys of `block_sets` + max(0, p+1-e) local keys. Softmax
///   exponentials are not counted (O(keys), not O(keys*D)).
/// - search: per query block and mask head, each iteration scores 2*Kb representatives of ceil(bk/sk) keys against
///   ceil(nq/sq) queries of every q head sharing the mask: 2*D FLOPs per (query, key) dot product. A block that
///   selects by SCAN (it holds one of the last scan_tail queries) scores all of its NB blocks once instead.
///
/// Bytes (compulsory traffic): Q, K and V read once, O written once, and the selected block indices and counts
/// written by the search and read by the attention (i32 each). K/V re-reads across query blocks and the
/// representative keys that the search reads are not counted: an ideal kernel keeps them on chip.
fn count_prefill(shape: &Shape, hip: &Hip, t: usize) -> Work {
    let d = D as f64;
    let (mut attended, mut search_dots, mut mask_ints) = (0f64, 0f64, 0f64);
    for j in 0..t.div_ceil(hip.bq) {
        let p0 = j * hip.bq;
        let nq = hip.bq.min(t - p0);
        let (e, _, nb, selected) = block_sets(hip, p0);
        for p in p0..p0 + nq {
            attended += (hip.sink.min(p + 1) + selected + (p + 1).saturating_sub(e)) as f64;
        }
        let iters = search_iterations(hip, nb);
        let rows = nq.div_ceil(hip.sq) * shape.heads_per_mask();
        // A block holding one of the last scan_tail queries selects by SCAN: every block of its domain is scored.
        let scan = hip.scan_tail > 0 && p0 + nq + hip.scan_tail > t && iters > 0;
        let scored = if scan { nb } else { iters * 2 * hip.kb() };
        search_dots += (scored * hip.bk.div_ceil(hip.sk) * rows) as f64;
        let blocks = if hip.k == 0 { 0 } else { nb.min(hip.kb()) };
        mask_ints += (blocks + 1) as f64;
    }
    let attn_flops = 4.0 * d * attended * shape.hq as f64;
    let search_flops = 2.0 * d * search_dots * shape.mask_heads() as f64;
    let io = (2 * t * shape.hq * D + 2 * t * shape.hkv * D) as f64 * 2.0;
    let masks = mask_ints * 4.0 * 2.0 * shape.mask_heads() as f64;
    Work { flops: attn_flops + search_flops, bytes: io + masks }
}

/// Split-K chunks per (sequence, q head) of a CUDA decode step: mirrors `CudaBackend::decode_splits` (about two
/// CTAs per SM, at most DECODE_MAX_SPLITS, never chunks under 64 keys). Only the partials' few hundred KB of the
/// byte count depend on it.
fn decode_splits(shape: &Shape, hip: &Hip, batch: usize, max_seqlen_k: usize, sm_count: usize) -> usize {
    let rows = batch * shape.hq;
    let want = (2 * sm_count.max(1)).div_ceil(rows);
    let max_keys = (hip.sink + hip.kb() * hip.bk + hip.window + hip.refresh).min(max_seqlen_k);
    want.clamp(1, plan::DECODE_MAX_SPLITS).min(max_keys.div_ceil(64).max(1))
}

/// Counted work of one decode step of `batch` sequences of `len` keys each (the new query at p = len - 1; for a
/// cached-mask step the mask was searched at the same p, so its key sets are those of a fresh search).
///
/// FLOPs: attention 4*D per (q head, attended key), attended = min(sink, len) + selected + (len - e) (see
/// `block_sets` with p0 = p); a searching step adds, per mask head, iterations * 2*Kb representatives *
/// ceil(bk/sk) keys * (q heads sharing the mask) dot products of 2*D FLOPs.
///
/// Bytes: q read and o written (bf16); the gathered K and V rows of the attended keys, counted once per kv head
/// (sink and local keys are shared by the q heads of a kv head; selected keys once per mask head); a searching
/// step also reads its representative keys (iterations * 2*Kb * ceil(bk/sk) rows per mask head: distinct blocks
/// within an iteration); the mask-state record read (and written back in full by a search, or its step counter
/// by a reuse); split-K partials (f32 output row + LSE per split) written and read back by the combine. Page-table
/// entries (4 bytes per 64 tokens attended) and seqlens are left out.
#[allow(clippy::too_many_arguments)]
fn count_decode(
    shape: &Shape,
    hip: &Hip,
    len: usize,
    batch: usize,
    searching: bool,
    max_seqlen_k: usize,
    sm_count: usize,
) -> Work {
    let d = D as f64;
    let p = len - 1;
    let (e, _, nb, selected) = block_sets(hip, p);
    let shared = hip.sink.min(len) + (p + 1).saturating_sub(e);
    let attended = shared + selected;
    let iters = if searching { search_iterations(hip, nb) } else { 0 };
    let rep_keys = iters * 2 * hip.kb() * hip.bk.div_ceil(hip.sk);
    let mh = shape.mask_heads() as f64;
    let flops = 4.0 * d * (attended * shape.hq) as f64 + 2.0 * d * (rep_keys * shape.heads_per_mask()) as f64 * mh;
    let row = d * 2.0; // one bf16 K or V row of one head
    let qo = 2.0 * (shape.hq * D) as f64 * 2.0;
    let kv = 2.0 * row * (shape.hkv * shared) as f64 + 2.0 * row * selected as f64 * mh;
    let search = row * rep_keys as f64 * mh;
    let state_ints = plan::state_ints_for(hip.kb());
    let state = mh * 4.0 * if searching { 2.0 * state_ints as f64 } else { state_ints as f64 + 1.0 };
    let splits = decode_splits(shape, hip, batch, max_seqlen_k, sm_count);
    let partials = (shape.hq * splits * (D + 1)) as f64 * 4.0 * 2.0;
    let b = batch as f64;
    Work { flops: b * flops, bytes: b * (qo + kv + search + state + partials) }
}

// ---------------------------------------------------------------------------------------------------------------
// Random inputs
// ---------------------------------------------------------------------------------------------------------------

/// SplitMix64's output function.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Counter-based random numbers: element i of input `tag` is a pure function of (seed, tag, i), so the host can
/// regenerate any slice of a multi-GiB device tensor for the CPU check without keeping a copy, and generation
/// parallelises trivially.
#[derive(Clone, Copy, Debug)]
struct Noise(u64);

impl Noise {
    fn new(seed: u64, tag: u64) -> Noise {
        Noise(mix64(seed ^ mix64(tag.wrapping_mul(GOLDEN))))
    }
    /// Uniform in [-1, 1), rounded to bf16 (returned as bits).
    #[inline]
    fn bf16(&self, i: usize) -> u16 {
        let z = mix64(self.0.wrapping_add((i as u64).wrapping_add(1).wrapping_mul(GOLDEN)));
        let x = (z >> 40) as f32 * (2.0 / (1u64 << 24) as f32) - 1.0;
        bf16::from_f32(x).to_bits()
    }
    /// dst[i] = element first + i.
    fn fill(&self, first: usize, dst: &mut [u16]) {
        for (i, x) in dst.iter_mut().enumerate() {
            *x = self.bf16(first + i);
        }
    }
}

/// A small sequential generator for choices (sampled blocks, page order).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Calls f(row, dst) for every `row`-element row of `out`, spread over the host's cores.
fn par_rows(out: &mut [u16], row: usize, f: impl Fn(usize, &mut [u16]) + Sync) {
    let rows = out.len() / row;
    if rows == 0 {
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(rows);
    let per = rows.div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        for (c, chunk) in out.chunks_mut(per * row).enumerate() {
            s.spawn(move || {
                for (r, dst) in chunk.chunks_mut(row).enumerate() {
                    f(c * per + r, dst);
                }
            });
        }
    });
}

/// Row r of a token-major [tokens, heads, D] input: `heads * D` consecutive elements.
fn token_rows(noise: Noise, heads: usize) -> impl Fn(usize, &mut [u16]) + Sync {
    move |r, dst| noise.fill(r * heads * D, dst)
}

/// The page table [batch, pages_per_seq] of a pool of batch * pages_per_seq pages, and each page's owner
/// (sequence, logical page). An engine's page pool hands pages out in no particular order: shuffled, so that
/// consecutive pages of a sequence are not adjacent in memory.
fn shuffled_pages(batch: usize, pages_per_seq: usize, seed: u64) -> (Vec<i32>, Vec<(usize, usize)>) {
    let num_pages = batch * pages_per_seq;
    let mut ids: Vec<usize> = (0..num_pages).collect();
    let mut rng = Rng(seed ^ TAG_PAGES);
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.below(i + 1));
    }
    let mut table = vec![0i32; num_pages];
    let mut owner = vec![(0usize, 0usize); num_pages];
    for (slot, &id) in ids.iter().enumerate() {
        table[slot] = id as i32;
        owner[id] = (slot / pages_per_seq, slot % pages_per_seq);
    }
    (table, owner)
}

/// Row r of a paged pool [pages * PAGE, hkv, D]: token (r % PAGE) of the page, which belongs to (sequence,
/// logical page) `owner[r / PAGE]`; the values are those of the logical [batch, cap, hkv, D] tensor.
fn pool_rows<'a>(
    noise: Noise,
    owner: &'a [(usize, usize)],
    cap: usize,
    hkv: usize,
) -> impl Fn(usize, &mut [u16]) + Sync + 'a {
    move |r, dst| {
        let (b, pg) = owner[r / PAGE];
        let t = pg * PAGE + r % PAGE;
        noise.fill((b * cap + t) * hkv * D, dst)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Host memory for the CPU backend
// ---------------------------------------------------------------------------------------------------------------

/// Host memory with the 16-byte alignment the C API requires of tensors and buffers.
struct HostBuf {
    v: Vec<u128>,
    bytes: usize,
}

impl HostBuf {
    fn new(bytes: usize, fill: u8) -> HostBuf {
        let word = u128::from_ne_bytes([fill; 16]);
        HostBuf { v: vec![word; bytes.div_ceil(16).max(1)], bytes }
    }
    fn from_i32s(xs: &[i32]) -> HostBuf {
        let mut b = HostBuf::new(xs.len() * 4, 0);
        b.i32s_mut().copy_from_slice(xs);
        b
    }
    fn ptr(&self) -> *const c_void {
        self.v.as_ptr() as *const c_void
    }
    fn mut_ptr(&mut self) -> *mut c_void {
        self.v.as_mut_ptr() as *mut c_void
    }
    fn u16s(&self) -> &[u16] {
        // SAFETY: the Vec holds at least `bytes` initialised bytes, u128 alignment satisfies u16's, and any bit
        // pattern is a valid u16.
        unsafe { std::slice::from_raw_parts(self.v.as_ptr() as *const u16, self.bytes / 2) }
    }
    fn u16s_mut(&mut self) -> &mut [u16] {
        // SAFETY: as in u16s, through the unique borrow of self.
        unsafe { std::slice::from_raw_parts_mut(self.v.as_mut_ptr() as *mut u16, self.bytes / 2) }
    }
    fn i32s(&self) -> &[i32] {
        // SAFETY: as in u16s, for i32.
        unsafe { std::slice::from_raw_parts(self.v.as_ptr() as *const i32, self.bytes / 4) }
    }
    fn i32s_mut(&mut self) -> &mut [i32] {
        // SAFETY: as in u16s_mut, for i32.
        unsafe { std::slice::from_raw_parts_mut(self.v.as_mut_ptr() as *mut i32, self.bytes / 4) }
    }
}

fn to_f32(bits: &[u16]) -> Vec<f32> {
    bits.iter().map(|&b| bf16::from_bits(b).to_f32()).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Device memory, events, graphs
// ---------------------------------------------------------------------------------------------------------------

/// Device memory from cuMemAlloc, freed on drop once the device is idle.
struct DevBuf {
    ptr: sys::CUdeviceptr,
    bytes: usize,
}

impl DevBuf {
    fn alloc(bytes: usize, what: &str) -> Res<DevBuf> {
        // SAFETY: a plain allocation (at least 256 bytes, so that a zero-size buffer still has a valid address);
        // nothing reads it before it is written.
        let ptr = unsafe { result::malloc_sync(bytes.max(256)) }
            .map_err(|e| Fail::Error(format!("cuMemAlloc({bytes} bytes for {what}): {e:?}")))?;
        Ok(DevBuf { ptr, bytes })
    }
    fn ptr(&self) -> *mut c_void {
        self.ptr as *mut c_void
    }
    fn at(&self, offset: usize) -> sys::CUdeviceptr {
        self.ptr + offset as u64
    }
    fn span_ok(&self, offset: usize, bytes: usize) -> Res<()> {
        if offset.checked_add(bytes).map_or(true, |end| end > self.bytes) {
            return Err(Fail::Error(format!(
                "internal: access [{offset}, +{bytes}) outside a {}-byte buffer",
                self.bytes
            )));
        }
        Ok(())
    }
    /// Synchronous copy of `data` to byte offset `offset`.
    fn upload<T: Copy>(&self, offset: usize, data: &[T]) -> Res<()> {
        self.span_ok(offset, std::mem::size_of_val(data))?;
        // SAFETY: the destination span lies inside this allocation (checked); the source lives through the call.
        unsafe { result::memcpy_htod_sync(self.at(offset), data) }.map_err(drv("cuMemcpyHtoD"))
    }
    /// Synchronous copy of `n` elements from byte offset `offset`. The caller has synchronized the stream that
    /// wrote them.
    fn download<T: Copy + Default>(&self, offset: usize, n: usize) -> Res<Vec<T>> {
        self.span_ok(offset, n * std::mem::size_of::<T>())?;
        let mut out = vec![T::default(); n];
        // SAFETY: the source span lies inside this allocation (checked); `out` holds exactly n elements.
        unsafe { result::memcpy_dtoh_sync(&mut out, self.at(offset)) }.map_err(drv("cuMemcpyDtoH"))?;
        Ok(out)
    }
    /// Fills the buffer with `byte`, ordered on `stream`.
    fn fill_async(&self, byte: u8, stream: sys::CUstream) -> Res<()> {
        // SAFETY: the span is this allocation; the stream is the bench's live stream.
        unsafe { result::memset_d8_async(self.ptr, byte, self.bytes, stream) }.map_err(drv("cuMemsetD8Async"))
    }
    /// Uploads `rows` generated rows of `row` elements (bf16) in chunks, generating each chunk on all cores.
    fn upload_generated(&self, rows: usize, row: usize, gen: impl Fn(usize, &mut [u16]) + Sync) -> Res<()> {
        self.span_ok(0, rows * row * 2)?;
        let chunk_rows = (UPLOAD_CHUNK_BYTES / (row * 2)).max(1).min(rows.max(1));
        let mut host = vec![0u16; chunk_rows * row];
        let mut r0 = 0;
        while r0 < rows {
            let n = chunk_rows.min(rows - r0);
            let buf = &mut host[..n * row];
            par_rows(buf, row, |r, dst| gen(r0 + r, dst));
            self.upload(r0 * row * 2, buf)?;
            r0 += n;
        }
        Ok(())
    }
}

impl Drop for DevBuf {
    fn drop(&mut self) {
        // An error path may return while kernels still use this buffer: wait for the device first.
        let _ = result::ctx::synchronize();
        // SAFETY: allocated by malloc_sync, freed exactly once, the device is idle.
        if let Err(e) = unsafe { result::free_sync(self.ptr) } {
            elog!("warning: cuMemFree: {e:?}");
        }
    }
}

struct Event(sys::CUevent);

impl Event {
    fn new() -> Res<Event> {
        result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT).map(Event).map_err(drv("cuEventCreate"))
    }
    fn record(&self, stream: sys::CUstream) -> Res<()> {
        // SAFETY: a live event and the bench's live stream.
        unsafe { result::event::record(self.0, stream) }.map_err(drv("cuEventRecord"))
    }
    /// Milliseconds from `start` to this event (both recorded on one stream and completed).
    fn ms_since(&self, start: &Event) -> Res<f64> {
        // SAFETY: both events are live and were recorded on the same stream, which the caller synchronized.
        unsafe { result::event::elapsed(start.0, self.0) }.map(f64::from).map_err(drv("cuEventElapsedTime"))
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: created by event::create, destroyed once (the driver defers it if still pending).
        let _ = unsafe { result::event::destroy(self.0) };
    }
}

/// An instantiated CUDA graph.
struct GraphExec(sys::CUgraphExec);

impl GraphExec {
    /// Captures what `enqueue` queues on `stream` (thread-local capture mode: other threads' CUDA calls are not
    /// affected). The capture is ended on every path, so the stream stays usable after an error.
    fn capture(stream: sys::CUstream, enqueue: impl FnOnce() -> Res<()>) -> Res<GraphExec> {
        // SAFETY: the bench's live stream, not capturing yet.
        unsafe { result::stream::begin_capture(stream, sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL) }
            .map_err(drv("cuStreamBeginCapture"))?;
        let queued = enqueue();
        // SAFETY: ends the capture begun above.
        let graph = unsafe { result::stream::end_capture(stream) };
        let graph = match (queued, graph) {
            (Ok(()), Ok(g)) => g,
            (Err(e), g) => {
                if let Ok(g) = g {
                    // SAFETY: a graph returned by end_capture, destroyed once.
                    let _ = unsafe { result::graph::destroy(g) };
                }
                return Err(e);
            }
            (Ok(()), Err(e)) => return Err(Fail::Error(format!("cuStreamEndCapture: {e:?}"))),
        };
        // SAFETY: a valid graph; its template is no longer needed once instantiated.
        let exec = unsafe { result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) };
        // SAFETY: as above.
        let _ = unsafe { result::graph::destroy(graph) };
        exec.map(GraphExec).map_err(drv("cuGraphInstantiate"))
    }
    fn launch(&self, stream: sys::CUstream) -> Res<()> {
        // SAFETY: a live executable graph whose captured buffers outlive it; the bench's stream.
        unsafe { result::graph::launch(self.0, stream) }.map_err(drv("cuGraphLaunch"))
    }
}

impl Drop for GraphExec {
    fn drop(&mut self) {
        let _ = result::ctx::synchronize();
        // SAFETY: instantiated by capture, destroyed once, after the device is idle.
        let _ = unsafe { result::graph::exec_destroy(self.0) };
    }
}

fn sync(stream: sys::CUstream) -> Res<()> {
    // SAFETY: the bench's live stream.
    unsafe { result::stream::synchronize(stream) }.map_err(drv("cuStreamSynchronize"))
}

/// Waits for everything on the device, including the synchronous (legacy-stream) copies of the setup, which a
/// non-blocking stream does not order against.
fn sync_device() -> Res<()> {
    result::ctx::synchronize().map_err(drv("cuCtxSynchronize"))
}

/// Times `n` runs: one event pair around each run, all read after a single synchronize. Milliseconds per run.
fn time_each(stream: sys::CUstream, n: usize, mut run: impl FnMut(usize) -> Res<()>) -> Res<Vec<f64>> {
    let events: Vec<Event> = (0..2 * n).map(|_| Event::new()).collect::<Res<_>>()?;
    for i in 0..n {
        events[2 * i].record(stream)?;
        run(i)?;
        events[2 * i + 1].record(stream)?;
    }
    sync(stream)?;
    (0..n).map(|i| events[2 * i + 1].ms_since(&events[2 * i])).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// hip-attn contexts
// ---------------------------------------------------------------------------------------------------------------

/// A hip-attn context, destroyed on drop (after the device is idle, as hip_ctx_destroy requires).
struct Ctx {
    raw: *mut hip_ctx,
    cuda: bool,
}

impl Ctx {
    fn create(cfg: &hip_config) -> Res<Ctx> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: cfg is a hip_config from hip_config_default (correct struct_size) whose pointers are NULL or
        // live for this call; raw is writable.
        let st = unsafe { hip_ctx_create(cfg, &mut raw) };
        // A backend without SCAN kernels says UNSUPPORTED: the row reports it and the run goes on.
        let uses_scan = cfg.decode_selection != hip_selection::HIP_ATTN_SELECT_TREE as u32 || cfg.prefill_scan_tail > 0;
        if st == hip_status::HIP_ATTN_STATUS_UNSUPPORTED && uses_scan {
            return Err(Fail::Skip(format!("unsupported by this build: {}", last_error())));
        }
        check(st, "hip_ctx_create")?;
        Ok(Ctx { raw, cuda: cfg.backend == hip_backend::HIP_ATTN_BACKEND_CUDA as u32 })
    }
    fn prefill_ws(&self, batch: usize, total_q: usize, max_q: usize, max_k: usize) -> Res<usize> {
        let mut n = 0usize;
        // SAFETY: live context, writable out.
        let st = unsafe {
            hip_prefill_workspace_size(self.raw, batch as u32, total_q as u32, max_q as u32, max_k as u32, &mut n)
        };
        check(st, "hip_prefill_workspace_size")?;
        Ok(n)
    }
    fn decode_ws(&self, batch: usize, max_k: usize) -> Res<usize> {
        let mut n = 0usize;
        // SAFETY: live context, writable out.
        check(
            unsafe { hip_decode_workspace_size(self.raw, batch as u32, max_k as u32, &mut n) },
            "hip_decode_workspace_size",
        )?;
        Ok(n)
    }
    fn state_size(&self, batch: usize) -> Res<usize> {
        let mut n = 0usize;
        // SAFETY: live context, writable out.
        check(unsafe { hip_mask_state_size(self.raw, batch as u32, &mut n) }, "hip_mask_state_size")?;
        Ok(n)
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if self.cuda {
            let _ = result::ctx::synchronize();
        }
        // SAFETY: created by hip_ctx_create, destroyed once, no call running and no work queued.
        unsafe { hip_ctx_destroy(self.raw) }
    }
}

/// A prefill of one sequence of `t` tokens over [t, heads, D] tensors at the given addresses (device or host).
#[allow(clippy::too_many_arguments)]
fn prefill_args(
    q: *const c_void,
    k: *const c_void,
    v: *const c_void,
    o: *mut c_void,
    cu_q: *const c_void,
    cu_k: *const c_void,
    tq: usize,
    tk: usize,
    hq: usize,
    hkv: usize,
) -> hip_prefill_args {
    let view = |data, heads: usize| hip_tensor { data, token_stride: (heads * D) as i64, head_stride: D as i64 };
    hip_prefill_args {
        struct_size: std::mem::size_of::<hip_prefill_args>() as u32,
        batch_size: 1,
        total_q: tq as u32,
        total_k: tk as u32,
        max_seqlen_q: tq as u32,
        max_seqlen_k: tk as u32,
        q: view(q, hq),
        k: view(k, hkv),
        v: view(v, hkv),
        o: hip_tensor_mut { data: o, token_stride: (hq * D) as i64, head_stride: D as i64 },
        cu_seqlens_q: cu_q as *const i32,
        cu_seqlens_k: cu_k as *const i32,
        lse: std::ptr::null_mut(),
        mask_state_out: std::ptr::null_mut(),
        reserved: [0; 4],
    }
}

/// A decode step of `batch` sequences with queries and outputs [batch, hq, D].
#[allow(clippy::too_many_arguments)]
fn decode_args(
    q: *const c_void,
    o: *mut c_void,
    kv: hip_kv_cache,
    lens: *const c_void,
    state: *mut c_void,
    batch: usize,
    hq: usize,
    max_seqlen_k: usize,
) -> hip_decode_args {
    hip_decode_args {
        struct_size: std::mem::size_of::<hip_decode_args>() as u32,
        batch_size: batch as u32,
        max_seqlen_k: max_seqlen_k as u32,
        reserved_u32: 0,
        q: hip_tensor { data: q, token_stride: (hq * D) as i64, head_stride: D as i64 },
        kv,
        seqlens_k: lens as *const i32,
        mask_state: state,
        o: hip_tensor_mut { data: o, token_stride: (hq * D) as i64, head_stride: D as i64 },
        lse: std::ptr::null_mut(),
        reserved: [0; 4],
    }
}

/// The paged cache descriptor: a pool of pages [PAGE, hkv, D] and a page table [batch, pages_per_seq].
fn paged_kv(
    k: *const c_void,
    v: *const c_void,
    table: *const c_void,
    hkv: usize,
    pages_per_seq: usize,
    num_pages: usize,
) -> hip_kv_cache {
    hip_kv_cache {
        layout: hip_kv_layout::HIP_ATTN_KV_PAGED as u32,
        page_size: PAGE as u32,
        k,
        v,
        seq_stride: (PAGE * hkv * D) as i64,
        token_stride: (hkv * D) as i64,
        head_stride: D as i64,
        page_table: table as *const i32,
        page_table_stride: pages_per_seq as u32,
        num_pages: num_pages as u32,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Correctness check against the CPU backend
// ---------------------------------------------------------------------------------------------------------------

/// Squared-error sums of one comparison.
#[derive(Clone, Copy, Debug, Default)]
struct Cmp {
    num: f64,
    den: f64,
    nonfinite: usize,
}

impl Cmp {
    fn add(&mut self, want: &[f32], got: &[f32]) {
        for (&w, &g) in want.iter().zip(got) {
            if !g.is_finite() {
                self.nonfinite += 1; // poisoned (unwritten) or overflowed
                continue;
            }
            self.num += (g as f64 - w as f64).powi(2);
            self.den += (w as f64).powi(2);
        }
    }
}

/// One checked unit: output comparisons (prefill: one; decode: eager and graph) and the mask comparison. When
/// the masks agree, the reference output is the CPU backend's; when they differ, it is exact f64 attention over
/// the key sets of the device's own mask, so the attention is still checked, and the mask difference is reported
/// on its own.
#[derive(Debug, Default)]
struct UnitOutcome {
    cmp: Vec<Cmp>,
    mask_differs: bool,
    /// The masks differ and the f64 replay of the search meets a score gap below TIE_EPS at some cut: a
    /// legitimate near-tie (likely; the replay cannot tell which cut the device decided differently).
    tie: bool,
}

/// What a row reports about its check.
#[derive(Clone, Debug)]
struct CheckResult {
    rel_l2: f64,
    units: usize,
    ties: usize,
    /// Units whose masks differ without a near-tie. More than half of the units fail the row: a search that
    /// disagrees everywhere is wrong even if each output is consistent with its own mask.
    mask_mismatches: usize,
    nonfinite: usize,
    what: String,
}

impl CheckResult {
    fn from_units(units: &[UnitOutcome], which: usize, what: String) -> CheckResult {
        let mut total = Cmp::default();
        let (mut ties, mut mism) = (0, 0);
        for u in units {
            ties += (u.mask_differs && u.tie) as usize;
            mism += (u.mask_differs && !u.tie) as usize;
            if let Some(c) = u.cmp.get(which) {
                total.num += c.num;
                total.den += c.den;
                total.nonfinite += c.nonfinite;
            }
        }
        let rel_l2 =
            if total.nonfinite > 0 || total.den <= 0.0 { f64::INFINITY } else { (total.num / total.den).sqrt() };
        CheckResult { rel_l2, units: units.len(), ties, mask_mismatches: mism, nonfinite: total.nonfinite, what }
    }
    fn pass(&self) -> bool {
        self.rel_l2 < TOLERANCE && 2 * self.mask_mismatches <= self.units
    }
    fn cell(&self) -> String {
        let mut s = format!("{} {:.1e}", if self.pass() { "PASS" } else { "FAIL" }, self.rel_l2);
        if self.ties > 0 {
            let _ = write!(s, " (masks differ by near-tie in {} of {} units)", self.ties, self.units);
        }
        if self.mask_mismatches > 0 {
            let _ = write!(s, " (masks differ beyond near-tie in {} of {} units)", self.mask_mismatches, self.units);
        }
        if self.nonfinite > 0 {
            let _ = write!(s, " ({} NaN)", self.nonfinite);
        }
        s
    }
}

/// The smallest score gap between the last kept and the first dropped branch over the iterations of docs/ALGORITHM.md's
/// tree search, replayed with f64 scores. Two implementations may select differently only where it is below the
/// arithmetic precision.
fn search_margin(nb: usize, kb: usize, mut score: impl FnMut(usize) -> f64) -> f64 {
    if kb == 0 || nb <= kb {
        return f64::INFINITY;
    }
    let mut chunks: Vec<(usize, usize)> = (0..kb).map(|c| (c * nb / kb, (c + 1) * nb / kb)).collect();
    let mut margin = f64::INFINITY;
    while chunks.iter().any(|&(f, l)| l - f > 1) {
        let mut cands: Vec<(f64, usize, (usize, usize))> = Vec::with_capacity(2 * kb);
        for &(f, l) in &chunks {
            let halves = if l - f >= 2 {
                let m = f + (l - f).div_ceil(2);
                vec![(f, m), (m, l)]
            } else {
                vec![(f, l)]
            };
            for (a, b) in halves {
                let rep = (a + b - 1) / 2;
                cands.push((score(rep), rep, (a, b)));
            }
        }
        cands.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        if cands.len() > kb {
            margin = margin.min(cands[kb - 1].0 - cands[kb].0);
        }
        cands.truncate(kb);
        chunks = cands.iter().map(|c| c.2).collect();
    }
    margin
}

/// f64 branch score: max over the (already sampled) queries and the keys of representative block `rep` taken
/// with stride sk. `keys` is one kv head's [tokens, D] rows.
fn score_f64(keys_geo: &BlockKeys, rep: usize, sk: usize, queries: &[Vec<f32>], keys: &[f32]) -> f64 {
    let (a, b) = keys_geo.block_range(rep);
    let mut best = f64::NEG_INFINITY;
    for q in queries {
        for t in (a..b).step_by(sk) {
            let k = &keys[t * D..(t + 1) * D];
            best = best.max(q.iter().zip(k).map(|(&x, &y)| x as f64 * y as f64).sum());
        }
    }
    best
}

/// Whether differing masks are a near-tie of the selection `sel` for the block whose first query sits at `p0`.
fn is_near_tie(hip: &Hip, sel: Selection, p0: usize, tk: usize, queries: &[Vec<f32>], keys: &[f32]) -> bool {
    let geo = BlockKeys::new(p0, tk, hip.sink, hip.window, hip.bk, true);
    let score = |rep| score_f64(&geo, rep, hip.sk, queries, keys);
    let margin = match sel {
        Selection::Tree => search_margin(geo.nb, hip.kb(), score),
        Selection::Scan => scan::scan_margin(geo.nb, hip.kb(), score),
    };
    margin < TIE_EPS
}

/// Exact f64 attention (docs/ALGORITHM.md §6) of query `q` at position `p` over the keys that `geo` and the
/// `selected` blocks give it, with the default scale 1/sqrt(D). `keys` and `values` are one kv head's [tokens, D].
fn attend_f64(geo: &BlockKeys, p: usize, selected: &[i32], q: &[f32], keys: &[f32], values: &[f32]) -> Vec<f32> {
    let scale = 1.0 / (D as f64).sqrt();
    let sel: Vec<u32> = selected.iter().map(|&x| x as u32).collect();
    let mut logits: Vec<(usize, f64)> = Vec::new();
    geo.for_each_key(p, true, &sel, |j| {
        let k = &keys[j * D..(j + 1) * D];
        logits.push((j, scale * q.iter().zip(k).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>()));
    });
    let m = logits.iter().map(|l| l.1).fold(f64::NEG_INFINITY, f64::max);
    let mut acc = vec![0f64; D];
    let mut sum = 0f64;
    for &(j, s) in &logits {
        let w = (s - m).exp();
        sum += w;
        for (a, &v) in acc.iter_mut().zip(&values[j * D..(j + 1) * D]) {
            *a += w * v as f64;
        }
    }
    acc.iter().map(|a| (a / sum) as f32).collect()
}

/// Everything one prefill check unit needs: which block of which mask head, and what the device produced.
struct PrefillUnit {
    mh: usize,
    j: usize,
    /// Device output rows of the block, heads of the mask only: [nq][heads_per_mask][D].
    gpu_o: Vec<f32>,
    /// Device mask of (block j, mask head mh): selected block indices.
    gpu_mask: Vec<i32>,
    /// Compare with the f64 reference over the device's mask even when the masks agree (--self-test only).
    force_reference: bool,
}

/// Offsets into a prefill's outputs for unit (mh, j) of a batch-1 prefill of `t` tokens: the byte offset and
/// element count of the block's O rows (all heads), and the byte offsets of its mask count and indices in the
/// workspace (slot j: cu_seqlens_q[0] / bq + 0 + j).
fn prefill_unit_spans(
    shape: &Shape,
    hip: &Hip,
    cfg: &Config,
    layout: &PrefillWorkspace,
    t: usize,
    mh: usize,
    j: usize,
) -> (usize, usize, usize, usize) {
    let p0 = j * hip.bq;
    let nq = hip.bq.min(t - p0);
    let rec = PrefillWorkspace::slot(cfg, 0, 0, j) * cfg.mask_heads() + mh;
    (p0 * shape.hq * D * 2, nq * shape.hq * D, layout.cnt_offset + 4 * rec, layout.idx_offset + 4 * rec * cfg.kb())
}

/// The heads of mask head `mh` from full rows [nq][hq][D] (bf16 bits): [nq][heads_per_mask][D] as f32.
fn unit_heads(shape: &Shape, rows: &[u16], nq: usize, mh: usize) -> Vec<f32> {
    let (nh, h0) = (shape.heads_per_mask(), shape.first_head(mh));
    let mut out = Vec::with_capacity(nq * nh * D);
    for i in 0..nq {
        let at = (i * shape.hq + h0) * D;
        out.extend(to_f32(&rows[at..at + nh * D]));
    }
    out
}

/// Recomputes one prefill unit on the CPU backend: block j's bq queries of the heads of mask head mh, as a chunked
/// prefill over the key prefix [0, (j+1)*bq) of their kv head. docs/ALGORITHM.md's key sets depend only on the block's
/// first position p0 = Tk - Tq = j*bq, so this is exactly what block j of the full prefill computes.
fn cpu_prefill_unit(shape: Shape, hip: Hip, t: usize, noise: [Noise; 3], unit: &PrefillUnit) -> Res<UnitOutcome> {
    let us = shape.unit();
    let nh = us.hq;
    let h0 = shape.first_head(unit.mh);
    let g = shape.kv_head_of(h0);
    let p0 = unit.j * hip.bq;
    let nq = hip.bq.min(t - p0);
    let end = p0 + nq;
    // The unit is a chunked prefill whose last query block is block j, so it selects by SCAN exactly when block j
    // holds one of the whole sequence's last scan_tail queries.
    let in_tail = hip.scan_tail > 0 && end + hip.scan_tail > t;
    let hip = Hip { scan_tail: in_tail as usize, ..hip };
    let sel = if in_tail { Selection::Scan } else { Selection::Tree };
    let mut q = HostBuf::new(nq * nh * D * 2, 0);
    par_rows(q.u16s_mut(), D, |r, dst| noise[0].fill(((p0 + r / nh) * shape.hq + h0 + r % nh) * D, dst));
    let mut k = HostBuf::new(end * D * 2, 0);
    par_rows(k.u16s_mut(), D, |tok, dst| noise[1].fill((tok * shape.hkv + g) * D, dst));
    let mut v = HostBuf::new(end * D * 2, 0);
    par_rows(v.u16s_mut(), D, |tok, dst| noise[2].fill((tok * shape.hkv + g) * D, dst));
    let cfg = us.config(&hip, Backend::Cpu);
    let ctx = Ctx::create(&cfg)?;
    let ws_bytes = ctx.prefill_ws(1, nq, nq, end)?;
    let mut ws = HostBuf::new(ws_bytes.max(16), 0xFF);
    let mut o = HostBuf::new(nq * nh * D * 2, 0xFF);
    let (cu_q, cu_k) = (HostBuf::from_i32s(&[0, nq as i32]), HostBuf::from_i32s(&[0, end as i32]));
    let args = prefill_args(q.ptr(), k.ptr(), v.ptr(), o.mut_ptr(), cu_q.ptr(), cu_k.ptr(), nq, end, nh, 1);
    // SAFETY: every pointer is host memory of this function spanning the extents `args` describes; the CPU backend
    // computes before returning and keeps no pointer.
    check(unsafe { hip_prefill(ctx.raw, &args, ws.mut_ptr(), ws_bytes, std::ptr::null_mut()) }, "hip_prefill (CPU)")?;

    let vc = validated(&cfg)?;
    let layout = PrefillWorkspace::new(&vc, 1, nq).map_err(|e| Fail::Error(e.to_string()))?;
    let ints = ws.i32s();
    let cnt = ints[layout.cnt_offset / 4].clamp(0, vc.kb() as i32) as usize;
    let cpu_mask = &ints[layout.idx_offset / 4..layout.idx_offset / 4 + cnt];
    let mut out = UnitOutcome::default();
    let mut want = to_f32(o.u16s());
    if cpu_mask != unit.gpu_mask.as_slice() || unit.force_reference {
        out.mask_differs = cpu_mask != unit.gpu_mask.as_slice();
        let (qf, kf, vf) = (to_f32(q.u16s()), to_f32(k.u16s()), to_f32(v.u16s()));
        let queries: Vec<Vec<f32>> = (0..nh)
            .flat_map(|hh| (0..nq).step_by(hip.sq).map(move |i| (i * nh + hh) * D))
            .map(|at| qf[at..at + D].to_vec())
            .collect();
        out.tie = is_near_tie(&hip, sel, p0, end, &queries, &kf);
        let geo = BlockKeys::new(p0, end, hip.sink, hip.window, hip.bk, true);
        for r in 0..nq * nh {
            let row = attend_f64(&geo, p0 + r / nh, &unit.gpu_mask, &qf[r * D..(r + 1) * D], &kf, &vf);
            want[r * D..(r + 1) * D].copy_from_slice(&row);
        }
    }
    let mut c = Cmp::default();
    c.add(&want, &unit.gpu_o);
    out.cmp.push(c);
    Ok(out)
}

/// Everything one decode check unit needs.
struct DecodeUnit {
    b: usize,
    mh: usize,
    /// Device outputs of the unit's heads [heads_per_mask][D]: eager step, then graph replay (when it ran).
    gpu_o: Vec<Vec<f32>>,
    /// Device mask-state record of (b, mh): e and the selected blocks.
    gpu_e: usize,
    gpu_blocks: Vec<i32>,
    /// As in PrefillUnit (--self-test only).
    force_reference: bool,
}

/// The selected blocks of a mask-state record (header: magic, step, e, count; then the blocks).
fn record_blocks(rec: &[i32]) -> Vec<i32> {
    let count = rec[plan::STATE_COUNT_IDX].clamp(0, (rec.len() - plan::STATE_HEADER) as i32) as usize;
    rec[plan::STATE_HEADER..plan::STATE_HEADER + count].to_vec()
}

/// Where a decode cache's inputs come from: generators and the logical layout [batch, cap, hkv, D].
#[derive(Clone, Copy)]
struct CacheSource {
    k: Noise,
    v: Noise,
    cap: usize,
}

/// Recomputes one decode unit on the CPU backend: sequence b of `len` keys, the q heads of mask head mh and their
/// kv head, from a zeroed mask state (so the CPU searches at p = len - 1, as the device's first step did).
fn cpu_decode_unit(
    shape: Shape,
    hip: Hip,
    src: CacheSource,
    qnoise: Noise,
    len: usize,
    unit: &DecodeUnit,
) -> Res<UnitOutcome> {
    let us = shape.unit();
    let nh = us.hq;
    let h0 = shape.first_head(unit.mh);
    let g = shape.kv_head_of(h0);
    let mut k = HostBuf::new(len * D * 2, 0);
    par_rows(k.u16s_mut(), D, |tok, dst| src.k.fill(((unit.b * src.cap + tok) * shape.hkv + g) * D, dst));
    let mut v = HostBuf::new(len * D * 2, 0);
    par_rows(v.u16s_mut(), D, |tok, dst| src.v.fill(((unit.b * src.cap + tok) * shape.hkv + g) * D, dst));
    let mut q = HostBuf::new(nh * D * 2, 0);
    qnoise.fill((unit.b * shape.hq + h0) * D, q.u16s_mut());
    let cfg = us.config(&hip, Backend::Cpu);
    let ctx = Ctx::create(&cfg)?;
    let ws_bytes = ctx.decode_ws(1, len)?;
    let mut ws = HostBuf::new(ws_bytes.max(16), 0xFF);
    let mut state = HostBuf::new(ctx.state_size(1)?, 0);
    let mut o = HostBuf::new(nh * D * 2, 0xFF);
    let lens = HostBuf::from_i32s(&[len as i32]);
    let kv = hip_kv_cache {
        layout: hip_kv_layout::HIP_ATTN_KV_CONTIGUOUS as u32,
        page_size: 0,
        k: k.ptr(),
        v: v.ptr(),
        seq_stride: (len * D) as i64,
        token_stride: D as i64,
        head_stride: D as i64,
        page_table: std::ptr::null(),
        page_table_stride: 0,
        num_pages: 0,
    };
    let args = decode_args(q.ptr(), o.mut_ptr(), kv, lens.ptr(), state.mut_ptr(), 1, nh, len);
    // SAFETY: host buffers of this function spanning what `args` describes; the CPU backend computes before
    // returning and keeps no pointer.
    check(
        unsafe { hip_decode_step(ctx.raw, &args, ws.mut_ptr(), ws_bytes, std::ptr::null_mut()) },
        "hip_decode_step (CPU)",
    )?;

    let vc = validated(&cfg)?;
    let at = plan::state_record(&vc, 0, 0);
    let cpu_blocks = record_blocks(&state.i32s()[at..at + plan::state_ints(&vc)]);
    let cpu_e = state.i32s()[at + plan::STATE_E_IDX] as usize;
    let mut out = UnitOutcome::default();
    let mut want = to_f32(o.u16s());
    let differs = cpu_blocks != unit.gpu_blocks || cpu_e != unit.gpu_e;
    if differs || unit.force_reference {
        out.mask_differs = differs;
        let (qf, kf, vf) = (to_f32(q.u16s()), to_f32(k.u16s()), to_f32(v.u16s()));
        let queries: Vec<Vec<f32>> = qf.chunks(D).map(|c| c.to_vec()).collect();
        out.tie = cpu_e == unit.gpu_e && is_near_tie(&hip, hip.sel, len - 1, len, &queries, &kf);
        // The device attends S, its blocks and [e, p] with the e stored in its record (docs/ALGORITHM.md "Decode").
        let geo = BlockKeys::with_e(unit.gpu_e.clamp(hip.sink, len), len, hip.sink, hip.bk);
        for hh in 0..nh {
            let row = attend_f64(&geo, len - 1, &unit.gpu_blocks, &qf[hh * D..(hh + 1) * D], &kf, &vf);
            want[hh * D..(hh + 1) * D].copy_from_slice(&row);
        }
    }
    for got in &unit.gpu_o {
        let mut c = Cmp::default();
        c.add(&want, got);
        out.cmp.push(c);
    }
    Ok(out)
}

/// Runs `f` on every item in its own thread (the CPU backend is single-threaded; units are independent).
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> Res<R> + Sync) -> Res<Vec<R>> {
    let f = &f;
    let results: Vec<Res<R>> = std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|it| s.spawn(move || f(it))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|p| Err(Fail::Error(format!("check thread panicked: {}", panic_text(&p)))))
            })
            .collect()
    });
    results.into_iter().collect()
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

// ---------------------------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Target {
    MaxMs(f64),
    MinTflops(f64),
}

impl Target {
    fn text(&self) -> String {
        match *self {
            Target::MaxMs(ms) => format!("<= {}", fmt_ms(ms)),
            Target::MinTflops(tf) => format!(">= {tf:.0} TFLOP/s"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Stats {
    median: f64,
    p10: f64,
    p90: f64,
    min: f64,
    mean: f64,
    n: usize,
}

fn stats(ms: &[f64]) -> Stats {
    let mut v = ms.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
    Stats {
        median: at(0.5),
        p10: at(0.1),
        p90: at(0.9),
        min: v[0],
        mean: v.iter().sum::<f64>() / v.len() as f64,
        n: v.len(),
    }
}

#[derive(Clone, Debug, Default)]
struct Row {
    id: String,
    work: String,
    shape: String,
    length: String,
    tokens: usize,
    batch: usize,
    time: Option<Stats>,
    counted: Option<Work>,
    ws_bytes: Option<usize>,
    state_bytes: Option<usize>,
    check: Option<CheckResult>,
    target: Option<Target>,
    skipped: Option<String>,
    error: Option<String>,
    notes: Vec<String>,
}

impl Row {
    fn new(id: &str, work: &str, shape: &str, tokens: usize, batch: usize, target: Option<Target>) -> Row {
        let length = if batch > 1 { format!("{} x{batch}", len_label(tokens)) } else { len_label(tokens) };
        Row { id: id.into(), work: work.into(), shape: shape.into(), length, tokens, batch, target, ..Row::default() }
    }
    fn tflops(&self) -> Option<f64> {
        Some(self.counted?.flops / (self.time?.median * 1e-3) / 1e12)
    }
    fn gbps(&self) -> Option<f64> {
        Some(self.counted?.bytes / (self.time?.median * 1e-3) / 1e9)
    }
    fn target_met(&self) -> Option<bool> {
        let t = self.time?;
        Some(match self.target? {
            Target::MaxMs(ms) => t.median <= ms,
            Target::MinTflops(tf) => self.tflops()? >= tf,
        })
    }
    fn failed(&self) -> bool {
        self.error.is_some() || self.check.as_ref().is_some_and(|c| !c.pass())
    }
    fn apply(&mut self, f: &Fail) {
        match f {
            Fail::Skip(m) => self.skipped = Some(m.clone()),
            Fail::Error(m) => self.error = Some(m.clone()),
        }
    }
    fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("ERROR: {e}");
        }
        if let Some(s) = &self.skipped {
            return format!("skipped: {s}");
        }
        let mut s = String::new();
        if let Some(t) = self.time {
            let _ =
                write!(s, "median {} (p10 {}, p90 {}, {} runs)", fmt_ms(t.median), fmt_ms(t.p10), fmt_ms(t.p90), t.n);
        }
        if let Some(f) = self.tflops() {
            let _ = write!(s, ", {f:.1} TFLOP/s, {:.0} GB/s", self.gbps().unwrap_or(0.0));
        }
        if let Some(c) = &self.check {
            let _ = write!(s, ", check {}", c.cell());
        }
        if let Some(m) = self.target_met() {
            let _ = write!(s, ", target {}", if m { "met" } else { "MISSED" });
        }
        s
    }
}

fn len_label(t: usize) -> String {
    if t >= 1 << 20 && t % (1 << 20) == 0 {
        format!("{}M", t >> 20)
    } else if t >= 1024 && t % 1024 == 0 {
        format!("{}k", t >> 10)
    } else {
        t.to_string()
    }
}

fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        "-".into()
    } else if ms >= 1000.0 {
        format!("{:.2} s", ms / 1e3)
    } else if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.1} us", ms * 1e3)
    }
}

fn fmt_bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Command line and device
// ---------------------------------------------------------------------------------------------------------------

struct Args {
    quick: bool,
    only: Vec<String>,
    /// --json PATH; each mode has its own default file name.
    json: Option<std::path::PathBuf>,
    with_512k: bool,
    seed: u64,
    device: i32,
    gqa_per_q_head: bool,
    budget_s: f64,
    plan: bool,
    self_test: bool,
    quality: bool,
    /// --scan: the SCAN rows and their baselines instead of the default set.
    scan: bool,
    quality_gpu: bool,
    /// --cpu: --quality-gpu on the CPU backend at small sizes.
    cpu: bool,
    command_line: String,
}

fn parse_args() -> Result<Option<Args>, String> {
    let argv: Vec<String> = std::env::args().collect();
    let seed_default =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let mut a = Args {
        quick: false,
        only: Vec::new(),
        json: None,
        with_512k: false,
        seed: seed_default,
        device: 0,
        gqa_per_q_head: false,
        budget_s: DEFAULT_BUDGET_S,
        plan: false,
        self_test: false,
        quality: false,
        scan: false,
        quality_gpu: false,
        cpu: false,
        command_line: argv.join(" "),
    };
    let mut it = argv.iter().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value =
            |name: &str| inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| format!("{name} needs a value"));
        match flag {
            "-h" | "--help" => return Ok(None),
            "--quick" => a.quick = true,
            "--with-512k" => a.with_512k = true,
            "--gqa-mask-per-q-head" => a.gqa_per_q_head = true,
            "--plan" => a.plan = true,
            "--self-test" => a.self_test = true,
            "--quality" => a.quality = true,
            "--scan" => a.scan = true,
            "--quality-gpu" => a.quality_gpu = true,
            "--cpu" => a.cpu = true,
            "--only" => a.only.extend(value("--only")?.split(',').filter(|s| !s.is_empty()).map(|s| s.to_lowercase())),
            "--json" => a.json = Some(value("--json")?.into()),
            "--seed" => a.seed = value("--seed")?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--device" => a.device = value("--device")?.parse().map_err(|e| format!("--device: {e}"))?,
            "--budget" => a.budget_s = value("--budget")?.parse().map_err(|e| format!("--budget: {e}"))?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(a))
}

struct Device {
    // Keeps the primary context retained (and current on this thread) for the whole run.
    _ctx: Arc<CudaContext>,
    stream: sys::CUstream,
    ordinal: i32,
    name: String,
    cc: (i32, i32),
    sm_count: usize,
    l2_bytes: usize,
    total_mem: usize,
    driver: String,
}

enum OpenError {
    NoDevice(String),
    Cuda(String),
}

fn open_device(ordinal: i32) -> Result<Device, OpenError> {
    // cudarc panics when libcuda is missing; hip-attn's probe turns that into an error first.
    hip_attn::cuda::ensure_driver().map_err(|e| OpenError::NoDevice(e.to_string()))?;
    let n = result::device::get_count().map_err(|e| OpenError::NoDevice(format!("cuDeviceGetCount: {e:?}")))?;
    if n <= 0 {
        return Err(OpenError::NoDevice("the CUDA driver reports no device".into()));
    }
    if ordinal < 0 || ordinal >= n {
        return Err(OpenError::NoDevice(format!("device {ordinal} requested, the driver reports {n}")));
    }
    fn cuda(what: &'static str) -> impl Fn(result::DriverError) -> OpenError {
        move |e| OpenError::Cuda(format!("{what}: {e:?}"))
    }
    let ctx = CudaContext::new(ordinal as usize).map_err(cuda("primary context"))?;
    ctx.bind_to_thread().map_err(cuda("cuCtxSetCurrent"))?;
    let dev = result::device::get(ordinal).map_err(cuda("cuDeviceGet"))?;
    let attr = |a| {
        // SAFETY: dev comes from device::get.
        unsafe { result::device::get_attribute(dev, a) }.map_err(cuda("cuDeviceGetAttribute"))
    };
    use sys::CUdevice_attribute as A;
    let cc = (
        attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
        attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
    );
    let sm_count = attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1) as usize;
    let l2_bytes = attr(A::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?.max(0) as usize;
    // SAFETY: as above.
    let total_mem = unsafe { result::device::total_mem(dev) }.map_err(cuda("cuDeviceTotalMem"))?;
    let name = result::device::get_name(dev).map_err(cuda("cuDeviceGetName"))?;
    let mut v = 0i32;
    // SAFETY: v is a writable int.
    unsafe { sys::cuDriverGetVersion(&mut v) }.result().map_err(cuda("cuDriverGetVersion"))?;
    let driver = format!("{}.{}", v / 1000, (v % 1000) / 10);
    let stream = result::stream::create(result::stream::StreamKind::NonBlocking).map_err(cuda("cuStreamCreate"))?;
    Ok(Device { _ctx: ctx, stream, ordinal, name, cc, sm_count, l2_bytes, total_mem, driver })
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = sync_device();
        // SAFETY: created in open_device, destroyed once, idle.
        let _ = unsafe { result::stream::destroy(self.stream) };
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The benchmark
// ---------------------------------------------------------------------------------------------------------------

struct Bench {
    dev: Device,
    args: Args,
    start: Instant,
}

impl Bench {
    fn progress(&self, msg: impl std::fmt::Display) {
        elog!("[{:7.1} s] {msg}", self.start.elapsed().as_secs_f64());
    }
    fn wanted(&self, id: &str) -> bool {
        let id = id.to_lowercase();
        self.args.only.is_empty() || self.args.only.iter().any(|p| id.contains(p.as_str()))
    }
    fn over_budget(&self) -> Option<Fail> {
        let t = self.start.elapsed().as_secs_f64();
        (t > self.args.budget_s)
            .then(|| Fail::Skip(format!("time budget ({:.0} s) spent after {t:.0} s", self.args.budget_s)))
    }
    /// A per-configuration seed, so configurations never share inputs.
    fn seed_for(&self, id: &str) -> u64 {
        id.bytes().fold(mix64(self.args.seed), |h, b| mix64(h ^ b as u64))
    }
    fn stream(&self) -> sys::CUstream {
        self.dev.stream
    }
    /// Skips (not an error) when `need` bytes and a margin do not fit in free device memory.
    fn ensure_free(&self, need: usize, what: &str) -> Res<()> {
        let (free, _) = result::mem_get_info().map_err(drv("cuMemGetInfo"))?;
        if need.saturating_add(MEM_MARGIN) > free {
            return Err(Fail::Skip(format!(
                "{what}: needs {:.1} GiB (+{:.0} GiB margin), {:.1} GiB free",
                need as f64 / (1u64 << 30) as f64,
                (MEM_MARGIN >> 30) as f64,
                free as f64 / (1u64 << 30) as f64
            )));
        }
        Ok(())
    }
}

// ----- context creation -----

unsafe extern "C" fn collect_log(user: *mut c_void, _level: u32, msg: *const c_char) {
    if user.is_null() || msg.is_null() {
        return;
    }
    // SAFETY: user is the Vec<String> that ctx_create_rows passes as log_user_data, alive and not otherwise
    // borrowed during hip_ctx_create (the only time the library calls back); msg is a NUL-terminated string valid
    // during the call (hip_attn.h).
    let (log, text) = unsafe { (&mut *(user as *mut Vec<String>), CStr::from_ptr(msg)) };
    log.push(text.to_string_lossy().into_owned());
}

/// hip_ctx_create with a log collector; returns (seconds, log).
fn timed_create(cfg: &hip_config) -> Res<(f64, Vec<String>)> {
    let mut log: Vec<String> = Vec::new();
    let mut c = *cfg;
    c.log_callback = Some(collect_log);
    c.log_user_data = &mut log as *mut Vec<String> as *mut c_void;
    let t0 = Instant::now();
    let ctx = Ctx::create(&c)?;
    let secs = t0.elapsed().as_secs_f64();
    drop(ctx);
    Ok((secs, log))
}

fn ctx_create_rows(b: &Bench) -> Vec<Row> {
    let id = "ctx-create/MHA-32";
    let mut cold = Row::new(
        &format!("{id}/cold"),
        "context creation, cold (empty kernel cache)",
        "MHA-32",
        0,
        1,
        Some(Target::MaxMs(3000.0)),
    );
    let mut warm =
        Row::new(&format!("{id}/cached"), "context creation, kernel cache", "MHA-32", 0, 1, Some(Target::MaxMs(200.0)));
    cold.length = "-".into();
    warm.length = "-".into();
    b.progress(format_args!("start {id}"));
    let dir = std::env::temp_dir().join(format!("hip-bench-kcache-{}-{}", std::process::id(), b.args.seed));
    let run = |cold: &mut Row, warm: &mut Row| -> Res<()> {
        let _ = std::fs::remove_dir_all(&dir);
        let cdir = CString::new(dir.to_string_lossy().as_bytes()).map_err(|e| Fail::Error(e.to_string()))?;
        let mut cfg = MHA32.config(&HEADLINE, Backend::Cuda(b.dev.ordinal));
        cfg.kernel_cache_dir = cdir.as_ptr();
        let (secs, log) = timed_create(&cfg)?;
        cold.time = Some(stats(&[secs * 1e3]));
        cold.notes.push(format!("library log: {}", log.join(" | ")));
        let mut times = Vec::new();
        let mut last_log = Vec::new();
        for _ in 0..5 {
            let (secs, log) = timed_create(&cfg)?;
            times.push(secs * 1e3);
            last_log = log;
        }
        warm.time = Some(stats(&times));
        if !last_log.iter().any(|l| l.contains("kernel cache")) {
            warm.notes.push("the library log does not mention the kernel cache".into());
        }
        warm.notes.push(format!("library log: {}", last_log.join(" | ")));
        Ok(())
    };
    if let Err(f) = run(&mut cold, &mut warm) {
        cold.apply(&f);
        warm.apply(&f);
    }
    let _ = std::fs::remove_dir_all(&dir);
    b.progress(format_args!("done  {id}: cold {}; cached {}", cold.summary(), warm.summary()));
    vec![cold, warm]
}

// ----- prefill -----

struct PrefillJob {
    id: String,
    work: String,
    shape: Shape,
    hip: Hip,
    t: usize,
    target: Option<Target>,
    /// Sampled (mask head, query block) units for the check.
    units: usize,
}

fn prefill_row(b: &Bench, job: &PrefillJob) -> Row {
    let mut row = Row::new(&job.id, &job.work, job.shape.name, job.t, 1, job.target);
    row.counted = Some(count_prefill(&job.shape, &job.hip, job.t));
    b.progress(format_args!("start {}", job.id));
    let r = match b.over_budget() {
        Some(f) => Err(f),
        None => prefill_inner(b, job, &mut row),
    };
    if let Err(f) = r {
        row.apply(&f);
    }
    b.progress(format_args!("done  {}: {}", job.id, row.summary()));
    row
}

fn prefill_inner(b: &Bench, job: &PrefillJob, row: &mut Row) -> Res<()> {
    let (shape, hip, t) = (job.shape, job.hip, job.t);
    let stream = b.stream();
    let cfg = shape.config(&hip, Backend::Cuda(b.dev.ordinal));
    let ctx = Ctx::create(&cfg)?;
    let ws_bytes = ctx.prefill_ws(1, t, t, t)?;
    row.ws_bytes = Some(ws_bytes);
    let (q_bytes, kv_bytes) = (t * shape.hq * D * 2, t * shape.hkv * D * 2);
    b.ensure_free(2 * q_bytes + 2 * kv_bytes + ws_bytes, "Q, K, V, O and workspace")?;
    let q = DevBuf::alloc(q_bytes, "Q")?;
    let k = DevBuf::alloc(kv_bytes, "K")?;
    let v = DevBuf::alloc(kv_bytes, "V")?;
    let o = DevBuf::alloc(q_bytes, "O")?;
    let ws = DevBuf::alloc(ws_bytes, "workspace")?;
    let cu = DevBuf::alloc(8, "cu_seqlens")?;
    cu.upload(0, &[0i32, t as i32])?;
    let seed = b.seed_for(&job.id);
    let noise = [Noise::new(seed, TAG_Q), Noise::new(seed, TAG_K), Noise::new(seed, TAG_V)];
    q.upload_generated(t, shape.hq * D, token_rows(noise[0], shape.hq))?;
    k.upload_generated(t, shape.hkv * D, token_rows(noise[1], shape.hkv))?;
    v.upload_generated(t, shape.hkv * D, token_rows(noise[2], shape.hkv))?;
    sync_device()?;

    // Tq = Tk = t, so one cu_seqlens array serves both.
    let args = prefill_args(q.ptr(), k.ptr(), v.ptr(), o.ptr(), cu.ptr(), cu.ptr(), t, t, shape.hq, shape.hkv);
    let launch = || -> Res<()> {
        // SAFETY: every address in `args` and the workspace is a live device buffer of this function spanning the
        // extents the args describe (sized from the same t, heads and the size query); the buffers are freed only
        // after the device is idle (DevBuf::drop).
        check(unsafe { hip_prefill(ctx.raw, &args, ws.ptr(), ws_bytes, stream as *mut c_void) }, "hip_prefill")
    };
    for _ in 0..PREFILL_WARMUP {
        launch()?;
    }
    sync(stream)?;
    let probe = time_each(stream, 1, |_| launch())?[0];
    let runs = ((PREFILL_TIMED_MS / probe.max(1e-3)) as usize).clamp(PREFILL_MIN_RUNS, PREFILL_MAX_RUNS);
    row.time = Some(stats(&time_each(stream, runs, |_| launch())?));

    // Check: poison O, one more call, then sampled units against the CPU backend.
    o.fill_async(0xFF, stream)?;
    launch()?;
    sync(stream)?;
    let vc = validated(&cfg)?;
    let layout = PrefillWorkspace::new(&vc, 1, t).map_err(|e| Fail::Error(e.to_string()))?;
    let nblocks = t.div_ceil(hip.bq);
    let mut rng = Rng(seed ^ 0xC4EC);
    let mut picks: Vec<(usize, usize)> = Vec::new();
    for i in 0..job.units {
        let j = match i {
            0 => nblocks - 1,
            1 => nblocks / 2,
            2 => nblocks / 8,
            3 if hip.scan_tail > 0 => nblocks - 1 - rng.below(hip.scan_tail.div_ceil(hip.bq).min(nblocks)),
            _ => rng.below(nblocks),
        };
        let mh = match i {
            0 => 0,
            1 => shape.mask_heads() - 1,
            _ => rng.below(shape.mask_heads()),
        };
        picks.push((mh, j));
    }
    let mut units = Vec::new();
    for &(mh, j) in &picks {
        let (o_off, o_n, cnt_off, idx_off) = prefill_unit_spans(&shape, &hip, &vc, &layout, t, mh, j);
        let nq = hip.bq.min(t - j * hip.bq);
        let rows: Vec<u16> = o.download(o_off, o_n)?;
        let cnt = ws.download::<i32>(cnt_off, 1)?[0].clamp(0, vc.kb() as i32) as usize;
        let gpu_mask: Vec<i32> = ws.download(idx_off, cnt)?;
        units.push(PrefillUnit { mh, j, gpu_o: unit_heads(&shape, &rows, nq, mh), gpu_mask, force_reference: false });
    }
    let outcomes = par_map(&units, |u| cpu_prefill_unit(shape, hip, t, noise, u))?;
    let what = format!(
        "{} units of bq={} queries (blocks {:?})",
        units.len(),
        hip.bq,
        picks.iter().map(|p| p.1).collect::<Vec<_>>()
    );
    row.check = Some(CheckResult::from_units(&outcomes, 0, what));
    Ok(())
}

// ----- decode -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DecodeMode {
    Cached,
    SearchEveryStep,
    /// `--scan` rows (scan.rs): SCAN at refresh 1 and 8, and dense decode through the same kernels.
    ScanEveryStep,
    ScanRefresh8,
    Dense,
}

impl DecodeMode {
    /// The settings of the mode's steps over a cache of `cap` tokens.
    fn hip(self, cap: usize) -> Hip {
        match self {
            DecodeMode::Cached => Hip { refresh: CACHED_REFRESH, ..HEADLINE },
            DecodeMode::SearchEveryStep => Hip { refresh: 1, ..HEADLINE },
            DecodeMode::ScanEveryStep => Hip { refresh: 1, sel: Selection::Scan, ..HEADLINE },
            DecodeMode::ScanRefresh8 => Hip { refresh: 8, sel: Selection::Scan, ..HEADLINE },
            // window >= every length: the search domain is empty and every key is in the local set.
            DecodeMode::Dense => Hip { refresh: CACHED_REFRESH, window: cap, ..HEADLINE },
        }
    }
    fn work(self) -> &'static str {
        match self {
            DecodeMode::Cached => "decode, cached mask",
            DecodeMode::SearchEveryStep => "decode, search every step",
            DecodeMode::ScanEveryStep => "decode, SCAN every step",
            DecodeMode::ScanRefresh8 => "decode, SCAN at refresh 8, per step over 1 SCAN + 7 cached steps",
            DecodeMode::Dense => "decode, dense (window >= T, no search)",
        }
    }
    /// Steps per refresh cycle whose mean the rows report (1: every step alike).
    fn cycle(self) -> usize {
        match self {
            DecodeMode::ScanRefresh8 => 8,
            _ => 1,
        }
    }
}

struct DecodeModeJob {
    mode: DecodeMode,
    id: String,
    target: Option<Target>,
}

struct DecodeJob {
    shape: Shape,
    t: usize,
    batch: usize,
    modes: Vec<DecodeModeJob>,
}

/// The paged KV cache shared by the modes of one decode job.
struct PagedCache {
    k: DevBuf,
    v: DevBuf,
    table: DevBuf,
    pages_per_seq: usize,
    num_pages: usize,
    src: CacheSource,
}

impl PagedCache {
    fn build(b: &Bench, shape: &Shape, batch: usize, cap: usize, seed: u64) -> Res<PagedCache> {
        let pages_per_seq = cap / PAGE;
        let num_pages = batch * pages_per_seq;
        let row = shape.hkv * D;
        let pool_bytes = num_pages * PAGE * row * 2;
        b.ensure_free(2 * pool_bytes, "the paged KV cache")?;
        let (table, owner) = shuffled_pages(batch, pages_per_seq, seed);
        let src = CacheSource { k: Noise::new(seed, TAG_CACHE_K), v: Noise::new(seed, TAG_CACHE_V), cap };
        let k = DevBuf::alloc(pool_bytes, "K cache")?;
        let v = DevBuf::alloc(pool_bytes, "V cache")?;
        let t = DevBuf::alloc(num_pages * 4, "page table")?;
        t.upload(0, &table)?;
        k.upload_generated(num_pages * PAGE, row, pool_rows(src.k, &owner, cap, shape.hkv))?;
        v.upload_generated(num_pages * PAGE, row, pool_rows(src.v, &owner, cap, shape.hkv))?;
        sync_device()?;
        Ok(PagedCache { k, v, table: t, pages_per_seq, num_pages, src })
    }
    fn desc(&self, hkv: usize) -> hip_kv_cache {
        paged_kv(self.k.ptr(), self.v.ptr(), self.table.ptr(), hkv, self.pages_per_seq, self.num_pages)
    }
}

/// One decode input set: its own queries, sequence lengths, mask state and output.
struct DecodeSet {
    _q: DevBuf,
    o: DevBuf,
    _lens: DevBuf,
    state: DevBuf,
    len: usize,
    qnoise: Noise,
    args: hip_decode_args,
}

fn decode_rows(b: &Bench, job: &DecodeJob) -> Vec<Row> {
    let modes: Vec<&DecodeModeJob> = job.modes.iter().filter(|m| b.wanted(&m.id)).collect();
    let mut rows = Vec::new();
    for m in &modes {
        let work = m.mode.work();
        for how in ["eager", "graph"] {
            rows.push(Row::new(
                &format!("{}/{how}", m.id),
                &format!("{work} ({how})"),
                job.shape.name,
                job.t,
                job.batch,
                m.target,
            ));
        }
    }
    if modes.is_empty() {
        return rows;
    }
    let shape = job.shape;
    // Input sets: enough that one round over them touches 4x the L2 (counted bytes of a cached step each).
    let step_bytes = count_decode(
        &shape,
        &Hip { refresh: CACHED_REFRESH, ..HEADLINE },
        job.t,
        job.batch,
        false,
        job.t,
        b.dev.sm_count,
    )
    .bytes;
    let nsets = ((4.0 * b.dev.l2_bytes as f64 / step_bytes).ceil() as usize).clamp(2, MAX_SETS);
    let cap = (job.t + (nsets - 1) * SET_SPACING).div_ceil(PAGE) * PAGE;
    let cache_id = format!(
        "decode-cache/{}/{}{}",
        shape.name,
        len_label(job.t),
        if job.batch > 1 { format!("x{}", job.batch) } else { String::new() }
    );
    b.progress(format_args!("start {cache_id}: {} sequence(s) x {cap} tokens (paged, {nsets} input sets)", job.batch));
    let cache = match b
        .over_budget()
        .map_or_else(|| PagedCache::build(b, &shape, job.batch, cap, b.seed_for(&cache_id)), Err)
    {
        Ok(c) => c,
        Err(f) => {
            for r in &mut rows {
                r.apply(&f);
            }
            b.progress(format_args!("done  {cache_id}: {}", rows[0].summary()));
            return rows;
        }
    };
    b.progress(format_args!("      {cache_id}: {:.2} GB of K and V uploaded", 2.0 * cache.k.bytes as f64 / 1e9));
    for (i, m) in modes.iter().enumerate() {
        let (eager, graph) = rows[2 * i..2 * i + 2].split_at_mut(1);
        let (eager, graph) = (&mut eager[0], &mut graph[0]);
        b.progress(format_args!("start {}", m.id));
        let r = match b.over_budget() {
            Some(f) => Err(f),
            None => decode_mode(b, job, m.mode, &cache, nsets, eager, graph),
        };
        if let Err(f) = r {
            eager.apply(&f);
            if graph.error.is_none() && graph.skipped.is_none() {
                graph.apply(&f);
            }
        }
        for r in [&*eager, &*graph] {
            b.progress(format_args!("done  {}: {}", r.id, r.summary()));
        }
    }
    rows
}

fn decode_mode(
    b: &Bench,
    job: &DecodeJob,
    mode: DecodeMode,
    cache: &PagedCache,
    nsets: usize,
    eager: &mut Row,
    graph: &mut Row,
) -> Res<()> {
    let (shape, batch, stream) = (job.shape, job.batch, b.stream());
    let cap = cache.src.cap;
    let hip = mode.hip(cap);
    let cfg = shape.config(&hip, Backend::Cuda(b.dev.ordinal));
    let ctx = Ctx::create(&cfg)?;
    let ws_bytes = ctx.decode_ws(batch, cap)?;
    let state_bytes = ctx.state_size(batch)?;
    // Counted work averaged over the input sets (their lengths differ by SET_SPACING).
    let mut work = Work::default();
    for r in 0..nsets {
        let w = scan::decode_work(&shape, mode, job.t + r * SET_SPACING, batch, cap, b.dev.sm_count);
        work.flops += w.flops / nsets as f64;
        work.bytes += w.bytes / nsets as f64;
    }
    for row in [&mut *eager, &mut *graph] {
        row.ws_bytes = Some(ws_bytes);
        row.state_bytes = Some(state_bytes);
        row.counted = Some(work);
        row.notes.push(format!("{nsets} input sets, lengths {}..{}", job.t, job.t + (nsets - 1) * SET_SPACING));
    }
    let qo_bytes = batch * shape.hq * D * 2;
    b.ensure_free(ws_bytes + nsets * (2 * qo_bytes + state_bytes + 4 * batch), "decode inputs")?;
    let ws = DevBuf::alloc(ws_bytes, "workspace")?;
    let seed = b.seed_for(&format!("{:?}/{}/{}/{}", mode, shape.name, job.t, batch));
    let mut sets = Vec::with_capacity(nsets);
    for r in 0..nsets {
        let len = job.t + r * SET_SPACING;
        let qnoise = Noise::new(seed, TAG_DECODE_Q + r as u64);
        let q = DevBuf::alloc(qo_bytes, "q")?;
        q.upload_generated(batch, shape.hq * D, token_rows(qnoise, shape.hq))?;
        let o = DevBuf::alloc(qo_bytes, "o")?;
        let lens = DevBuf::alloc(4 * batch, "seqlens_k")?;
        lens.upload(0, &vec![len as i32; batch])?;
        // A sequence's mask state is zeroed before its first step, which then searches (docs/ALGORITHM.md).
        let state = DevBuf::alloc(state_bytes, "mask state")?;
        state.fill_async(0, stream)?;
        let args = decode_args(q.ptr(), o.ptr(), cache.desc(shape.hkv), lens.ptr(), state.ptr(), batch, shape.hq, cap);
        sets.push(DecodeSet { _q: q, o, _lens: lens, state, len, qnoise, args });
    }
    sync_device()?;
    let step = |s: &DecodeSet| -> Res<()> {
        // SAFETY: s.args addresses live device buffers (cache, the set's buffers) spanning what it describes (sized
        // from the same batch, heads, capacity and size queries); the workspace spans ws_bytes; everything is freed
        // only after the device is idle.
        check(
            unsafe { hip_decode_step(ctx.raw, &s.args, ws.ptr(), ws_bytes, stream as *mut c_void) },
            "hip_decode_step",
        )
    };
    // Steps run on each set so far: a set's step searches when its count is a multiple of the refresh.
    let mut done = vec![0usize; nsets];
    // Warm-up; the first round fills every set's mask state (a searching step).
    for _ in 0..DECODE_WARMUP_ROUNDS {
        for (i, s) in sets.iter().enumerate() {
            step(s)?;
            done[i] += 1;
        }
    }
    let cycle = mode.cycle();
    scan::align_cycles(&mut done, cycle, |i| step(&sets[i]))?;
    sync(stream)?;
    let steps = scan::cycle_steps(if b.args.quick { DECODE_STEPS_QUICK } else { DECODE_STEPS }, nsets, cycle);
    let (st, note) = scan::cycle_stats(&time_each(stream, steps, |i| step(&sets[i % nsets]))?, nsets, cycle);
    eager.time = Some(st);
    eager.notes.extend(note);
    for i in 0..steps {
        done[i % nsets] += 1;
    }

    // Check material, eager: poison set 0's output, one step, read outputs and mask records of the units.
    let vc = validated(&cfg)?;
    let mut rng = Rng(seed ^ 0xDEC0DE);
    let mh_n = shape.mask_heads();
    let picks: Vec<(usize, usize)> = if batch == 1 {
        vec![(0, 0), (0, mh_n - 1), (0, rng.below(mh_n))]
    } else {
        vec![(0, rng.below(mh_n)), (batch - 1, rng.below(mh_n)), (batch / 2, 0)]
    };
    let nh = shape.heads_per_mask();
    let read_o = |s: &DecodeSet, bi: usize, mh: usize| -> Res<Vec<f32>> {
        let at = (bi * shape.hq + shape.first_head(mh)) * D;
        Ok(to_f32(&s.o.download::<u16>(at * 2, nh * D)?))
    };
    let s0 = &sets[0];
    s0.o.fill_async(0xFF, stream)?;
    step(s0)?;
    done[0] += 1;
    sync(stream)?;
    let mut units = Vec::new();
    for &(bi, mh) in &picks {
        let at = plan::state_record(&vc, bi, mh);
        let rec: Vec<i32> = s0.state.download(at * 4, plan::state_ints(&vc))?;
        let gpu_e = rec[plan::STATE_E_IDX].max(0) as usize;
        units.push(DecodeUnit {
            b: bi,
            mh,
            gpu_o: vec![read_o(s0, bi, mh)?],
            gpu_e,
            gpu_blocks: record_blocks(&rec),
            force_reference: false,
        });
    }

    // Graph: capture one step per set, replay round-robin. Its failure leaves the eager row intact.
    let mut graph_run = || -> Res<()> {
        let execs: Vec<GraphExec> = sets.iter().map(|s| GraphExec::capture(stream, || step(s))).collect::<Res<_>>()?;
        for (i, g) in execs.iter().enumerate() {
            g.launch(stream)?;
            done[i] += 1;
        }
        scan::align_cycles(&mut done, cycle, |i| execs[i].launch(stream))?;
        sync(stream)?;
        let times = time_each(stream, steps, |i| execs[i % nsets].launch(stream))?;
        let (st, note) = scan::cycle_stats(&times, nsets, cycle);
        graph.time = Some(st);
        graph.notes.extend(note);
        s0.o.fill_async(0xFF, stream)?;
        execs[0].launch(stream)?;
        sync(stream)?;
        for u in &mut units {
            u.gpu_o.push(read_o(s0, u.b, u.mh)?);
        }
        Ok(())
    };
    if let Err(f) = graph_run() {
        graph.apply(&f);
        sync(stream)?; // a device fault shows here and fails the eager row too
    }

    let (src, qnoise, len0) = (cache.src, s0.qnoise, s0.len);
    let outcomes = par_map(&units, |u| cpu_decode_unit(shape, hip, src, qnoise, len0, u))?;
    let what = format!("{} (sequence, mask head) units of input set 0 at length {len0}", units.len());
    eager.check = Some(CheckResult::from_units(&outcomes, 0, what.clone()));
    if graph.error.is_none() && units.iter().all(|u| u.gpu_o.len() == 2) {
        graph.check = Some(CheckResult::from_units(&outcomes, 1, what));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// The configuration list
// ---------------------------------------------------------------------------------------------------------------

const K: usize = 1024;
const M: usize = 1 << 20;

fn prefill_jobs(args: &Args, shapes: &[Shape]) -> Vec<PrefillJob> {
    let mut lengths = if args.quick { vec![8 * K] } else { vec![8 * K, 32 * K, 128 * K] };
    if args.with_512k && !args.quick {
        lengths.push(512 * K);
    }
    let mut jobs = Vec::new();
    for shape in shapes {
        for &t in &lengths {
            let target = match (shape.name, t) {
                ("MHA-32", t) if t == 8 * K => Some(Target::MaxMs(1.0)),
                ("MHA-32", t) if t == 32 * K => Some(Target::MaxMs(6.0)),
                ("MHA-32", t) if t == 128 * K => Some(Target::MaxMs(25.0)),
                _ => None,
            };
            jobs.push(PrefillJob {
                id: format!("prefill/{}/{}", shape.name, len_label(t)),
                work: "prefill".into(),
                shape: *shape,
                hip: HEADLINE,
                t,
                target,
                units: 6,
            });
        }
    }
    if !args.quick {
        let t = 32 * K;
        let exact = |id: &str, work: &str, shape: Shape, hip: Hip, target: Option<Target>| PrefillJob {
            id: format!("{id}/{}/{}", shape.name, len_label(t)),
            work: work.into(),
            shape,
            hip,
            t,
            target,
            units: 4,
        };
        for shape in shapes {
            let target = (shape.name == "MHA-32").then_some(Target::MinTflops(300.0));
            jobs.push(exact(
                "exact-window",
                "prefill, exact (window >= T)",
                *shape,
                Hip { window: t, ..HEADLINE },
                target,
            ));
        }
        let target = Some(Target::MinTflops(300.0));
        // The same exact attention with 128-query blocks (a compile-time option like any other): each gathered
        // K/V tile then serves 4x the queries, which is what dense kernels do with their 128-row tiles.
        let bq128 = Hip { window: t, bq: 128, ..HEADLINE };
        jobs.push(exact("exact-window-bq128", "prefill, exact (window >= T, bq 128)", MHA32, bq128, target));
        let k_eq_t = Hip { k: t, bk: 64, ..HEADLINE };
        jobs.push(exact("exact-k", "prefill, exact (k = T, bk 64)", MHA32, k_eq_t, target));
    }
    jobs
}

fn decode_jobs(args: &Args, shapes: &[Shape]) -> Vec<DecodeJob> {
    let mut jobs = Vec::new();
    for shape in shapes {
        let mha = shape.name == "MHA-32";
        let mode = |mode: DecodeMode, kind: &str, t: usize, target: Option<f64>| DecodeModeJob {
            mode,
            id: format!("{kind}/{}/{}", shape.name, len_label(t)),
            target: target.filter(|_| mha).map(Target::MaxMs),
        };
        jobs.push(DecodeJob {
            shape: *shape,
            t: 32 * K,
            batch: 1,
            modes: vec![
                mode(DecodeMode::Cached, "decode-cached", 32 * K, None),
                mode(DecodeMode::SearchEveryStep, "decode-search", 32 * K, None),
            ],
        });
        jobs.push(DecodeJob {
            shape: *shape,
            t: 32 * K,
            batch: 16,
            modes: vec![mode(DecodeMode::Cached, "decode-cached-b16", 32 * K, Some(0.060))],
        });
        if !args.quick {
            jobs.push(DecodeJob {
                shape: *shape,
                t: 128 * K,
                batch: 1,
                modes: vec![
                    mode(DecodeMode::Cached, "decode-cached", 128 * K, Some(0.020)),
                    mode(DecodeMode::SearchEveryStep, "decode-search", 128 * K, Some(0.150)),
                ],
            });
            jobs.push(DecodeJob {
                shape: *shape,
                t: M,
                batch: 1,
                modes: vec![mode(DecodeMode::Cached, "decode-cached", M, Some(0.025))],
            });
        }
    }
    jobs
}

fn shapes(args: &Args) -> Vec<Shape> {
    vec![MHA32, if args.gqa_per_q_head { GQA8_PER_Q } else { GQA8 }]
}

/// The configurations of this run: `--scan`'s set (scan.rs) or the default one.
fn job_lists(args: &Args, shapes: &[Shape]) -> (Vec<PrefillJob>, Vec<DecodeJob>) {
    if args.scan {
        (scan::prefill_jobs(shapes), scan::decode_jobs(shapes))
    } else {
        (prefill_jobs(args, shapes), decode_jobs(args, shapes))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------------------------

struct Header {
    device: String,
    driver: String,
    date: String,
    command: String,
    seed: u64,
    elapsed_s: f64,
    library: String,
    extra: Vec<(String, String)>,
    /// Fields written to the JSON as they are (already JSON values).
    raw: Vec<(String, String)>,
}

fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = secs.div_euclid(86400) + 719_468;
    let rem = secs.rem_euclid(86400);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn markdown(h: &Header, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## hip-bench results\n");
    let _ = writeln!(s, "- device: {}", h.device);
    let _ = writeln!(s, "- driver: {}; library: {}", h.driver, h.library);
    let _ = writeln!(s, "- date: {}; elapsed {:.1} s", h.date, h.elapsed_s);
    let _ = writeln!(s, "- command: `{}`", h.command);
    let _ = writeln!(s, "- seed: {}", h.seed);
    for (k, v) in &h.extra {
        let _ = writeln!(s, "- {k}: {v}");
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| work | shape | length | median | TFLOP/s | GB/s | floor | x floor | workspace (per token) | check (rel L2) \
         | target | status |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let opt = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or("-".to_string(), f);
        let median = r.time.map(|t| t.median);
        let floor = r.counted.map(|w| w.floor_ms());
        let ratio = median.zip(floor).map(|(m, f)| m / f);
        let ws = r.ws_bytes.map_or("-".to_string(), |w| {
            let per = if r.tokens > 0 {
                format!(" ({:.0} B)", w as f64 / (r.tokens * r.batch) as f64)
            } else {
                String::new()
            };
            let state = r.state_bytes.map_or(String::new(), |s| format!(" + state {}", fmt_bytes(s as f64)));
            format!("{}{per}{state}", fmt_bytes(w as f64))
        });
        let status = if r.error.is_some() {
            "ERROR".to_string()
        } else if r.skipped.is_some() {
            "skipped".to_string()
        } else {
            match r.target_met() {
                Some(true) => "met".into(),
                Some(false) => "MISSED".into(),
                None => "-".into(),
            }
        };
        let check = match (&r.error, &r.skipped, &r.check) {
            (Some(e), _, _) => format!("error: {}", cell_text(e)),
            (_, Some(m), _) => format!("skipped: {}", cell_text(m)),
            (_, _, Some(c)) => c.cell(),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.work,
            r.shape,
            r.length,
            opt(median, &fmt_ms),
            opt(r.tflops(), &|x| format!("{x:.1}")),
            opt(r.gbps(), &|x| format!("{x:.0}")),
            opt(floor, &fmt_ms),
            opt(ratio, &|x| format!("{x:.1}")),
            ws,
            check,
            r.target.map_or("-".into(), |t| t.text()),
            status
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Floor = max(counted FLOPs / {:.0} TFLOP/s, counted bytes / {:.1} TB/s). Prefill FLOPs: 4*D per (query, \
         attended key, head) with attended = min(sink, p+1) + min(Kb*bk, search domain) + local part, plus the \
         search's 2*D per (scored query, representative key) over ceil(log2(ceil(NB/Kb))) iterations of 2*Kb \
         representatives; prefill bytes: Q, K, V read once + O written + masks. Decode bytes: q + o + the gathered \
         K/V rows of the attended keys (+ representative keys when searching) + mask state + split-K partials. \
         Check: sampled units of the same run (prefill: query blocks of one mask head; decode: (sequence, mask \
         head) of input set 0, eager step and graph replay) recomputed by the CPU backend; where the device's mask \
         differs from the CPU's, the reference is exact f64 attention over the device's own mask, and the \
         difference is counted as a near-tie when the f64 replay of the search has a gap below {TIE_EPS:.0e} at \
         some cut. PASS: rel L2 < {TOLERANCE:.0e} and at most half of the units with masks differing beyond a \
         near-tie.",
        PEAK_FLOPS / 1e12,
        PEAK_BYTES_PER_S / 1e12
    );
    let notes: Vec<String> =
        rows.iter().flat_map(|r| r.notes.iter().map(move |n| format!("- {}: {n}", r.id))).collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\nNotes:\n{}", notes.join("\n"));
    }
    s
}

/// A message fit for one table cell: one line, no column separators, at most 200 characters (the JSON and the
/// progress lines carry the whole message).
fn cell_text(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "/");
    if one.chars().count() > 200 {
        format!("{}...", one.chars().take(200).collect::<String>())
    } else {
        one
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

fn json(h: &Header, rows: &[Row]) -> String {
    let mut s = String::from("{\n");
    let _ = writeln!(s, "  \"tool\": \"hip-bench\",");
    let _ = writeln!(s, "  \"library\": {},", json_str(&h.library));
    let _ = writeln!(s, "  \"device\": {},", json_str(&h.device));
    let _ = writeln!(s, "  \"driver_version\": {},", json_str(&h.driver));
    let _ = writeln!(s, "  \"date\": {},", json_str(&h.date));
    let _ = writeln!(s, "  \"command\": {},", json_str(&h.command));
    let _ = writeln!(s, "  \"seed\": {},", h.seed);
    let _ = writeln!(s, "  \"elapsed_s\": {},", json_num(Some(h.elapsed_s)));
    for (k, v) in &h.extra {
        let _ = writeln!(s, "  {}: {},", json_str(&k.replace(' ', "_")), json_str(v));
    }
    for (k, v) in &h.raw {
        let _ = writeln!(s, "  {}: {v},", json_str(k));
    }
    let _ = writeln!(
        s,
        "  \"ceilings\": {{\"tflops\": {}, \"tb_per_s\": {}}},",
        PEAK_FLOPS / 1e12,
        PEAK_BYTES_PER_S / 1e12
    );
    let _ = writeln!(s, "  \"rows\": [");
    for (i, r) in rows.iter().enumerate() {
        let t = r.time;
        let c = r.check.as_ref();
        let fields = [
            ("id", json_str(&r.id)),
            ("work", json_str(&r.work)),
            ("shape", json_str(&r.shape)),
            ("length", json_str(&r.length)),
            ("tokens", r.tokens.to_string()),
            ("batch", r.batch.to_string()),
            ("median_ms", json_num(t.map(|t| t.median))),
            ("p10_ms", json_num(t.map(|t| t.p10))),
            ("p90_ms", json_num(t.map(|t| t.p90))),
            ("min_ms", json_num(t.map(|t| t.min))),
            ("mean_ms", json_num(t.map(|t| t.mean))),
            ("runs", t.map_or("null".into(), |t| t.n.to_string())),
            ("counted_flops", json_num(r.counted.map(|w| w.flops))),
            ("counted_bytes", json_num(r.counted.map(|w| w.bytes))),
            ("tflops", json_num(r.tflops())),
            ("gb_per_s", json_num(r.gbps())),
            ("floor_ms", json_num(r.counted.map(|w| w.floor_ms()))),
            ("workspace_bytes", r.ws_bytes.map_or("null".into(), |w| w.to_string())),
            (
                "workspace_bytes_per_token",
                json_num(r.ws_bytes.filter(|_| r.tokens > 0).map(|w| w as f64 / (r.tokens * r.batch) as f64)),
            ),
            ("mask_state_bytes", r.state_bytes.map_or("null".into(), |w| w.to_string())),
            ("rel_l2", json_num(c.map(|c| c.rel_l2))),
            ("check_pass", c.map_or("null".into(), |c| c.pass().to_string())),
            ("check_units", c.map_or("null".into(), |c| c.units.to_string())),
            ("check_ties", c.map_or("null".into(), |c| c.ties.to_string())),
            ("check_mask_mismatches", c.map_or("null".into(), |c| c.mask_mismatches.to_string())),
            ("check_what", c.map_or("null".into(), |c| json_str(&c.what))),
            ("target", r.target.map_or("null".into(), |t| json_str(&t.text()))),
            ("target_met", r.target_met().map_or("null".into(), |m| m.to_string())),
            ("skipped", r.skipped.as_deref().map_or("null".into(), json_str)),
            ("error", r.error.as_deref().map_or("null".into(), json_str)),
            ("notes", format!("[{}]", r.notes.iter().map(|n| json_str(n)).collect::<Vec<_>>().join(", "))),
        ];
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
        let _ = writeln!(s, "    {{{}}}{}", body.join(", "), if i + 1 < rows.len() { "," } else { "" });
    }
    s.push_str("  ]\n}\n");
    s
}

/// `--quality`: the quality table on stdout, JSON to --json PATH or hip-quality.json (and $OUT/hip-quality.json).
fn run_quality(args: &Args) -> i32 {
    let k = 1024;
    let lengths: &[usize] = if args.quick { &[8 * k] } else { &[8 * k, 32 * k, 128 * k] };
    let start = Instant::now();
    let rows = quality::run(lengths, args.seed, |id| elog!("[{:6.1} s] {id}", start.elapsed().as_secs_f64()));
    let text = format!(
        "## hip-bench quality\n\n- {}; seed {}; command `{}`\n\n{}",
        quality::SETTINGS,
        args.seed,
        args.command_line,
        quality::markdown(&rows)
    );
    let shown = emit(&text);
    let path = args.json.clone().unwrap_or_else(|| "hip-quality.json".into());
    let written = write_json(&path, "hip-quality.json", &quality::json(&rows, args.seed));
    if shown && written {
        0
    } else {
        1
    }
}

/// Writes `text` to `path` and, when $OUT is set, to $OUT/`name` as well.
fn write_json(path: &std::path::Path, name: &str, text: &str) -> bool {
    let mut paths = vec![path.to_path_buf()];
    if let Some(out) = std::env::var_os("OUT").filter(|o| !o.is_empty()) {
        let p = std::path::Path::new(&out).join(name);
        if p != path {
            paths.push(p);
        }
    }
    let mut ok = true;
    for p in paths {
        match std::fs::write(&p, text) {
            Ok(()) => elog!("wrote {}", p.display()),
            Err(e) => {
                elog!("error: cannot write {}: {e}", p.display());
                ok = false;
            }
        }
    }
    ok
}

fn library_line() -> String {
    // SAFETY: hip_version returns a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(hip_version()) }.to_string_lossy().into_owned();
    format!("hip-attn {v} (ABI {})", hip_abi_version())
}

// ---------------------------------------------------------------------------------------------------------------
// --plan and --self-test (no GPU needed)
// ---------------------------------------------------------------------------------------------------------------

/// Prints every configuration with its counted work and floor (H100: 132 SMs, 50 MB L2 assumed).
fn print_plan(args: &Args) -> i32 {
    let (sms, l2) = (132usize, 50usize << 20);
    let mut s = String::from("| id | counted GFLOP | counted MB | floor | device memory |\n|---|---|---|---|---|\n");
    let (pjobs, djobs) = job_lists(args, &shapes(args));
    for j in pjobs {
        let w = count_prefill(&j.shape, &j.hip, j.t);
        let mem = (2 * j.t * j.shape.hq + 2 * j.t * j.shape.hkv) * D * 2;
        let _ = writeln!(
            s,
            "| {} | {:.1} | {:.1} | {} | {} |",
            j.id,
            w.flops / 1e9,
            w.bytes / 1e6,
            fmt_ms(w.floor_ms()),
            fmt_bytes(mem as f64)
        );
    }
    for j in djobs {
        let hip0 = Hip { refresh: CACHED_REFRESH, ..HEADLINE };
        let step = count_decode(&j.shape, &hip0, j.t, j.batch, false, j.t, sms).bytes;
        let nsets = ((4.0 * l2 as f64 / step).ceil() as usize).clamp(2, MAX_SETS);
        let cap = (j.t + (nsets - 1) * SET_SPACING).div_ceil(PAGE) * PAGE;
        let mem = 2 * j.batch * cap * j.shape.hkv * D * 2;
        for m in &j.modes {
            let w = scan::decode_work(&j.shape, m.mode, j.t, j.batch, cap, sms);
            let _ = writeln!(
                s,
                "| {} | {:.3} | {:.2} | {} | {} ({nsets} sets) |",
                m.id,
                w.flops / 1e9,
                w.bytes / 1e6,
                fmt_ms(w.floor_ms()),
                fmt_bytes(mem as f64)
            );
        }
    }
    if emit(&s) {
        0
    } else {
        1
    }
}

/// The check harness with the CPU backend standing in for the device: a full CPU prefill and paged CPU decode
/// provide the "device" outputs, then the same unit code recomputes sampled units. Everything must match exactly.
fn self_test(args: &Args) -> i32 {
    let mut failed = false;
    let mut report = |what: &str, r: Res<Vec<UnitOutcome>>| match r {
        Ok(units) => {
            let c = CheckResult::from_units(&units, 0, String::new());
            let exact = c.rel_l2 == 0.0
                && units.iter().all(|u| !u.mask_differs && u.cmp.iter().all(|x| x.num == 0.0 && x.nonfinite == 0));
            elog!(
                "self-test {what}: {} units, rel L2 {:.1e}, masks equal: {} -> {}",
                units.len(),
                c.rel_l2,
                units.iter().all(|u| !u.mask_differs),
                if exact { "ok" } else { "MISMATCH" }
            );
            failed |= !exact;
        }
        Err(Fail::Error(e)) | Err(Fail::Skip(e)) => {
            elog!("self-test {what}: error: {e}");
            failed = true;
        }
    };
    let small = [
        Shape { name: "MHA-2", hq: 2, hkv: 2, share_kv: false },
        Shape { name: "GQA-4/2 kv-mask", hq: 4, hkv: 2, share_kv: true },
        Shape { name: "GQA-4/2 q-mask", hq: 4, hkv: 2, share_kv: false },
    ];
    let hip = Hip { k: 64, window: 32, ..HEADLINE };
    for shape in small {
        report(&format!("prefill {}", shape.name), self_test_prefill(shape, hip, 1000, args.seed));
        report(&format!("decode {}", shape.name), self_test_decode(shape, hip, args.seed));
    }
    let scan = scan::SELF_TEST_HIP;
    for shape in &small[..2] {
        report(&format!("prefill {} SCAN tail", shape.name), self_test_prefill(*shape, scan, 1000, args.seed));
        report(&format!("decode {} SCAN", shape.name), self_test_decode(*shape, scan, args.seed));
    }
    if failed {
        1
    } else {
        0
    }
}

fn self_test_prefill(shape: Shape, hip: Hip, t: usize, seed: u64) -> Res<Vec<UnitOutcome>> {
    let noise = [Noise::new(seed, TAG_Q), Noise::new(seed, TAG_K), Noise::new(seed, TAG_V)];
    let gen = |n: Noise, heads: usize| {
        let mut b = HostBuf::new(t * heads * D * 2, 0);
        par_rows(b.u16s_mut(), heads * D, token_rows(n, heads));
        b
    };
    let (q, k, v) = (gen(noise[0], shape.hq), gen(noise[1], shape.hkv), gen(noise[2], shape.hkv));
    let cfg = shape.config(&hip, Backend::Cpu);
    let ctx = Ctx::create(&cfg)?;
    let ws_bytes = ctx.prefill_ws(1, t, t, t)?;
    let mut ws = HostBuf::new(ws_bytes, 0xFF);
    let mut o = HostBuf::new(t * shape.hq * D * 2, 0xFF);
    let cu = HostBuf::from_i32s(&[0, t as i32]);
    let args = prefill_args(q.ptr(), k.ptr(), v.ptr(), o.mut_ptr(), cu.ptr(), cu.ptr(), t, t, shape.hq, shape.hkv);
    // SAFETY: host buffers spanning what args describes; the CPU backend computes before returning.
    check(unsafe { hip_prefill(ctx.raw, &args, ws.mut_ptr(), ws_bytes, std::ptr::null_mut()) }, "hip_prefill (CPU)")?;
    let vc = validated(&cfg)?;
    let layout = PrefillWorkspace::new(&vc, 1, t).map_err(|e| Fail::Error(e.to_string()))?;
    let nblocks = t.div_ceil(hip.bq);
    let mut units = Vec::new();
    for (mh, j) in [(0, nblocks - 1), (shape.mask_heads() - 1, nblocks / 2), (shape.mask_heads() / 2, 3), (0, 0)] {
        let (o_off, o_n, cnt_off, idx_off) = prefill_unit_spans(&shape, &hip, &vc, &layout, t, mh, j);
        let nq = hip.bq.min(t - j * hip.bq);
        let rows = &o.u16s()[o_off / 2..o_off / 2 + o_n];
        let cnt = ws.i32s()[cnt_off / 4] as usize;
        let gpu_mask = ws.i32s()[idx_off / 4..idx_off / 4 + cnt].to_vec();
        units.push(PrefillUnit { mh, j, gpu_o: unit_heads(&shape, rows, nq, mh), gpu_mask, force_reference: false });
    }
    let mut outcomes = par_map(&units, |u| cpu_prefill_unit(shape, hip, t, noise, u))?;
    // Negative control: a wrong block and a wrong output element must be seen (a mask difference and a non-zero
    // error against the f64 reference over the wrong mask); the control is not among the returned units.
    let mut bad = PrefillUnit {
        mh: units[0].mh,
        j: units[0].j,
        gpu_o: units[0].gpu_o.clone(),
        gpu_mask: units[0].gpu_mask.clone(),
        force_reference: false,
    };
    let taken = bad.gpu_mask.clone();
    if let Some(free) = (0..).find(|x| !taken.contains(x)) {
        bad.gpu_mask[0] = free;
        bad.gpu_mask.sort();
    }
    bad.gpu_o[5] += 0.25;
    let control = cpu_prefill_unit(shape, hip, t, noise, &bad)?;
    if !(control.mask_differs && control.cmp[0].num > 0.0) {
        outcomes[0].cmp[0].num = f64::NAN; // makes the self-test report a mismatch
        elog!("self-test: the negative control was not detected: {control:?}");
    }
    // The f64 reference itself: over the right mask it must agree with the CPU backend to bf16 output rounding.
    let forced = PrefillUnit {
        force_reference: true,
        gpu_o: units[0].gpu_o.clone(),
        gpu_mask: units[0].gpu_mask.clone(),
        ..units[0]
    };
    let r = cpu_prefill_unit(shape, hip, t, noise, &forced)?;
    let rel = (r.cmp[0].num / r.cmp[0].den).sqrt();
    elog!("self-test: prefill f64 reference vs CPU backend: rel L2 {rel:.1e}");
    if !(rel > 0.0 && rel < 5e-3) {
        outcomes[0].cmp[0].num = f64::NAN;
    }
    Ok(outcomes)
}

fn self_test_decode(shape: Shape, hip: Hip, seed: u64) -> Res<Vec<UnitOutcome>> {
    let (batch, t, nsets) = (3usize, 900usize, 2usize);
    let cap = (t + (nsets - 1) * SET_SPACING).div_ceil(PAGE) * PAGE;
    let pages_per_seq = cap / PAGE;
    let num_pages = batch * pages_per_seq;
    let (table, owner) = shuffled_pages(batch, pages_per_seq, seed);
    let src = CacheSource { k: Noise::new(seed, TAG_CACHE_K), v: Noise::new(seed, TAG_CACHE_V), cap };
    let row = shape.hkv * D;
    let mut k = HostBuf::new(num_pages * PAGE * row * 2, 0);
    par_rows(k.u16s_mut(), row, pool_rows(src.k, &owner, cap, shape.hkv));
    let mut v = HostBuf::new(num_pages * PAGE * row * 2, 0);
    par_rows(v.u16s_mut(), row, pool_rows(src.v, &owner, cap, shape.hkv));
    let pt = HostBuf::from_i32s(&table);
    let qnoise = Noise::new(seed, TAG_DECODE_Q);
    let mut q = HostBuf::new(batch * shape.hq * D * 2, 0);
    par_rows(q.u16s_mut(), shape.hq * D, token_rows(qnoise, shape.hq));
    let cfg = shape.config(&Hip { refresh: CACHED_REFRESH, ..hip }, Backend::Cpu);
    let ctx = Ctx::create(&cfg)?;
    let ws_bytes = ctx.decode_ws(batch, cap)?;
    let mut ws = HostBuf::new(ws_bytes, 0xFF);
    let mut state = HostBuf::new(ctx.state_size(batch)?, 0);
    let mut o = HostBuf::new(batch * shape.hq * D * 2, 0xFF);
    let lens = HostBuf::from_i32s(&vec![t as i32; batch]);
    let kv = paged_kv(k.ptr(), v.ptr(), pt.ptr(), shape.hkv, pages_per_seq, num_pages);
    let args = decode_args(q.ptr(), o.mut_ptr(), kv, lens.ptr(), state.mut_ptr(), batch, shape.hq, cap);
    for _ in 0..3 {
        // SAFETY: host buffers spanning what args describes; the CPU backend computes before returning.
        check(
            unsafe { hip_decode_step(ctx.raw, &args, ws.mut_ptr(), ws_bytes, std::ptr::null_mut()) },
            "hip_decode_step (CPU)",
        )?;
    }
    let vc = validated(&cfg)?;
    let nh = shape.heads_per_mask();
    let mut units = Vec::new();
    for (bi, mh) in [(0, 0), (batch - 1, shape.mask_heads() - 1), (1, shape.mask_heads() / 2)] {
        let at = (bi * shape.hq + shape.first_head(mh)) * D;
        let rec_at = plan::state_record(&vc, bi, mh);
        let rec = &state.i32s()[rec_at..rec_at + plan::state_ints(&vc)];
        let gpu_e = rec[plan::STATE_E_IDX].max(0) as usize;
        units.push(DecodeUnit {
            b: bi,
            mh,
            gpu_o: vec![to_f32(&o.u16s()[at..at + nh * D])],
            gpu_e,
            gpu_blocks: record_blocks(rec),
            force_reference: false,
        });
    }
    let hip_c = Hip { refresh: CACHED_REFRESH, ..hip };
    let mut outcomes = par_map(&units, |u| cpu_decode_unit(shape, hip_c, src, qnoise, t, u))?;
    let u0 = &units[0];
    let forced =
        DecodeUnit { force_reference: true, gpu_o: u0.gpu_o.clone(), gpu_blocks: u0.gpu_blocks.clone(), ..*u0 };
    let r = cpu_decode_unit(shape, hip_c, src, qnoise, t, &forced)?;
    let rel = (r.cmp[0].num / r.cmp[0].den).sqrt();
    elog!("self-test: decode f64 reference vs CPU backend: rel L2 {rel:.1e}");
    if !(rel > 0.0 && rel < 5e-3) {
        outcomes[0].cmp[0].num = f64::NAN;
    }
    Ok(outcomes)
}

// ---------------------------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------------------------

fn main() {
    std::process::exit(real_main());
}

fn real_main() -> i32 {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            emit(&format!("{USAGE}\n"));
            return 0;
        }
        Err(e) => {
            elog!("hip-bench: {e}\n\n{USAGE}");
            return 64;
        }
    };
    if hip_abi_version() != HIP_ATTN_ABI_VERSION {
        elog!("hip-bench: library ABI {} != header ABI {HIP_ATTN_ABI_VERSION}", hip_abi_version());
        return 1;
    }
    if args.plan {
        return print_plan(&args);
    }
    if args.self_test {
        return self_test(&args);
    }
    if args.quality {
        return run_quality(&args);
    }
    if args.quality_gpu {
        return quality_gpu::run(&args);
    }
    let dev = match open_device(args.device) {
        Ok(d) => d,
        Err(OpenError::NoDevice(msg)) => {
            elog!("no CUDA device: {msg}");
            return 2;
        }
        Err(OpenError::Cuda(msg)) => {
            elog!("hip-bench: CUDA error while opening the device: {msg}");
            return 1;
        }
    };
    let b = Bench { dev, args, start: Instant::now() };
    let header_line = format!(
        "{} (device {}, compute capability {}.{}, {} SMs, {} MB L2, {:.1} GB)",
        b.dev.name,
        b.dev.ordinal,
        b.dev.cc.0,
        b.dev.cc.1,
        b.dev.sm_count,
        b.dev.l2_bytes >> 20,
        b.dev.total_mem as f64 / 1e9
    );
    b.progress(format_args!("{header_line}; driver {}; {}; seed {}", b.dev.driver, library_line(), b.args.seed));

    let mut rows: Vec<Row> = Vec::new();
    let shapes = shapes(&b.args);
    let guarded = |f: &dyn Fn() -> Vec<Row>| -> Vec<Row> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
            let mut r = Row::new("internal", "internal error", "-", 0, 1, None);
            r.error = Some(format!("panic: {}", panic_text(&p)));
            vec![r]
        })
    };
    if b.wanted("ctx-create/MHA-32") && !b.args.scan {
        rows.extend(guarded(&|| ctx_create_rows(&b)));
    }
    let (pjobs, djobs) = job_lists(&b.args, &shapes);
    for job in pjobs {
        if b.wanted(&job.id) {
            rows.extend(guarded(&|| vec![prefill_row(&b, &job)]));
        }
    }
    for job in djobs {
        rows.extend(guarded(&|| decode_rows(&b, &job)));
    }

    if rows.is_empty() {
        elog!("hip-bench: no configuration matches --only {}", b.args.only.join(","));
        return 64;
    }
    let elapsed = b.start.elapsed().as_secs_f64();
    b.progress(format_args!("finished {} rows in {elapsed:.1} s", rows.len()));
    let mut header = Header {
        device: header_line,
        driver: b.dev.driver.clone(),
        date: utc_now(),
        command: b.args.command_line.clone(),
        seed: b.args.seed,
        elapsed_s: elapsed,
        library: library_line(),
        extra: vec![
            (
                "shapes".into(),
                "MHA-32: 32 q / 32 kv heads; GQA-8: 32 q / 8 kv heads, one mask search per kv head (GQA-8q: one per \
                 q head); D=128, bf16, causal, batch 1 unless xN"
                    .into(),
            ),
            (
                "hip".into(),
                "k=512 bq=32 bk=2 sink 4 window 128 sq 1 sk 1 (decode refresh: 2^30 cached, 1 search every step); \
                 decode KV cache paged, 64 tokens per page"
                    .into(),
            ),
        ],
        raw: Vec::new(),
    };
    let mut text = String::new();
    if b.args.scan {
        header.extra.push(("scan rows".into(), scan::SETTINGS.into()));
        let ratios = scan::ratios(&rows);
        header.raw.push(("ratios".into(), scan::ratio_json(&ratios)));
        text = scan::ratio_markdown(&ratios);
    }
    text.insert_str(0, &markdown(&header, &rows));
    let printed = emit(&text);
    let path = b.args.json.clone().unwrap_or_else(|| "hip-bench.json".into());
    let json_ok = write_json(&path, "hip-bench.json", &json(&header, &rows));
    let failed = rows.iter().filter(|r| r.failed()).count();
    if failed > 0 {
        elog!("hip-bench: {failed} row(s) failed (check or error)");
    }
    if failed > 0 || !json_ok || !printed {
        1
    } else {
        0
    }
}

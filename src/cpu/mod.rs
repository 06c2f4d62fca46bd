//! The CPU reference backend: docs/ALGORITHM.md computed directly, one query at a time, with no shortcuts. It is the
//! oracle for the CUDA kernels and what the examples and CI run. Logits are f32 as the spec says; softmax sums
//! and the weighted value sum accumulate in f64 so the oracle's own rounding stays far below any tolerance.
//!
//! Memory model: every pointer is a host pointer that the caller promised spans its validated extent. Caller
//! memory is touched only through raw reads and writes (never Rust references), so inputs may alias each other
//! and outputs may alias inputs without undefined behaviour. All index data is validated in a first pass before
//! the first output element is written, so a failing call leaves every output untouched.
//!
//! Memory use: a run call copies nothing that grows with a sequence, the batch or the cache. Keys, values and
//! index data are read in place when they are used (index data is checked again at that point, so one that an
//! output overlaps, and that changed since the first pass, stops the call with `HIP_ATTN_STATUS_BAD_INDEX`
//! instead of steering a read outside the tensors); attention streams its softmax. Rows of one head live on the
//! stack. The one heap allocation is `Scratch`, bounded by the configuration, reserved fallibly before anything
//! is written: a host that cannot provide it gets `HIP_ATTN_STATUS_OUT_OF_MEMORY`, never an abort.

mod decode;
mod merge;
mod prefill;
#[cfg(any(test, feature = "internals"))]
pub mod shard;

pub use decode::decode;
pub use merge::merge;
pub use prefill::prefill;

use crate::config::Config;
use crate::spec::{dot, e4m3_to_f32, quantize_e4m3, BlockKeys, SearchScratch};
use crate::status::{Error, Result};
use crate::tensor::{LseView, TensorView};

/// Reads row (row, head) of a view into `out` (f32).
///
/// # Safety
/// The view was validated and its memory is readable host memory of its extent.
unsafe fn read_row(view: &TensorView, row: usize, head: usize, out: &mut [f32]) {
    let base = view.addr as *const u8;
    let off = view.offset(row, head);
    for (d, x) in out.iter_mut().enumerate() {
        // SAFETY: off + d lies inside the validated extent (row < rows, head < heads, d < head_dim).
        *x = unsafe { view.dtype.read(base, off + d) };
    }
}

/// Writes `vals` to row (row, head) of an output view, rounding to its dtype.
///
/// # Safety
/// The view was validated and its memory is writable host memory of its extent.
unsafe fn write_row(view: &TensorView, row: usize, head: usize, vals: &[f32]) {
    let base = view.addr as *mut u8;
    let off = view.offset(row, head);
    for (d, &x) in vals.iter().enumerate() {
        // SAFETY: as in read_row, for a writable view.
        unsafe { view.dtype.write(base, off + d, x) };
    }
}

/// # Safety
/// `lse` was validated (row < rows, head < heads) and points to writable host memory.
unsafe fn write_lse(lse: &Option<LseView>, row: usize, head: usize, value: f32) {
    if let Some(l) = lse {
        // SAFETY: dense [rows, heads] f32 array of validated size.
        unsafe { (l.addr as *mut f32).add(row * l.heads + head).write(value) };
    }
}

/// Reads element `i` of an i32 array in host memory.
///
/// # Safety
/// `addr` points to more than `i` readable, 4-byte-aligned i32s.
unsafe fn read_i32(addr: usize, i: usize) -> i32 {
    // SAFETY: forwarded from the caller's contract; a raw read, no reference to caller memory.
    unsafe { (addr as *const i32).add(i).read() }
}

/// The largest head_dim a configuration may have (config::SUPPORTED_HEAD_DIMS): rows of one head live on the
/// stack, so reading a row or accumulating an output allocates nothing.
const MAX_HEAD_DIM: usize = 256;
const _: () = {
    let mut i = 0;
    while i < crate::config::SUPPORTED_HEAD_DIMS.len() {
        assert!(crate::config::SUPPORTED_HEAD_DIMS[i] <= MAX_HEAD_DIM);
        i += 1;
    }
};

/// The keys and values of one (sequence, kv head), read straight from caller memory one token row at a time
/// (converted to f32): nothing proportional to a sequence is ever copied.
trait KvRows {
    /// Reads token `t`'s key row (its value row when `value`) into `out` (head_dim f32).
    ///
    /// # Safety
    /// The views behind `self` were validated for the sequence's length. Implementations check `t` against that
    /// length too, so a wrong key index is a panic (an internal error), never a read outside the caller's tensors.
    unsafe fn read(&self, t: usize, value: bool, out: &mut [f32]);
}

/// Host scratch of one prefill or decode call: the sampled queries of one mask head's query block and the
/// search arrays. Its size depends only on the configuration (and max_seqlen_q, which only lowers it); it is
/// reserved once, fallibly, before the first output is written, and never grows.
struct Scratch {
    /// Up to `rows` sampled query rows of head_dim f32.
    queries: Vec<f32>,
    search: SearchScratch,
    /// The Kb blocks of a mask-state record being reused.
    blocks: Vec<u32>,
}

impl Scratch {
    fn try_new(cfg: &Config, rows: usize) -> Result<Scratch> {
        let d = cfg.head_dim;
        let bytes = rows
            .checked_mul(d * std::mem::size_of::<f32>())
            .and_then(|q| q.checked_add(SearchScratch::bytes(cfg.kb())?)?.checked_add(4 * cfg.kb()))
            .ok_or_else(|| Error::overflow("CPU backend scratch"))?;
        let fail = || {
            Error::out_of_memory(format!(
                "the CPU backend could not allocate {bytes} bytes of host scratch ({rows} sampled query rows of \
                 head_dim {d} and the search arrays for Kb = {})",
                cfg.kb()
            ))
        };
        let mut queries = Vec::new();
        queries.try_reserve_exact(rows * d).map_err(|_| fail())?;
        let search = SearchScratch::try_new(cfg.kb()).map_err(|_| fail())?;
        let mut blocks = Vec::new();
        blocks.try_reserve_exact(cfg.kb()).map_err(|_| fail())?;
        Ok(Scratch { queries, search, blocks })
    }

    /// Fills the query buffer with `n` rows, each written by `read(row index, row)`; `n` is at most the rows
    /// reserved, so the buffer never reallocates.
    fn load_queries(&mut self, d: usize, n: usize, mut read: impl FnMut(usize, &mut [f32])) {
        debug_assert!(n * d <= self.queries.capacity(), "{n} query rows exceed the reserved scratch");
        self.queries.clear();
        self.queries.resize(n * d, 0.0);
        for (r, row) in self.queries.chunks_exact_mut(d).enumerate() {
            read(r, row);
        }
    }
}

/// Branch score of docs/ALGORITHM.md: the max of q.k over the sampled queries (one row of head_dim each in `queries`,
/// all of one kv head: a mask head's q heads share their kv head) and the keys of block `rep` taken with stride
/// sk. The max does not depend on the order of its terms, so keys are read once each. With `k8_scale` (the
/// FP8-scored search, section 9) each key element is first replaced by the value of its E4M3 code at that scale
/// (the caller has rounded the queries the same way).
fn block_score(
    cfg: &Config,
    keys: &BlockKeys,
    queries: &[f32],
    kv: &impl KvRows,
    rep: usize,
    k8_scale: Option<f32>,
) -> f32 {
    let d = cfg.head_dim;
    let mut buf = [0f32; MAX_HEAD_DIM];
    let row = &mut buf[..d];
    let (a, b) = keys.block_range(rep);
    let mut best = f32::NEG_INFINITY;
    for t in (a..b).step_by(cfg.sk) {
        // SAFETY: the search domain [sink, e) ends at or before the sequence's length (BlockKeys).
        unsafe { kv.read(t, false, row) };
        if let Some(s) = k8_scale {
            row.iter_mut().for_each(|x| *x = e4m3_to_f32(quantize_e4m3(*x, s)));
        }
        for q in queries.chunks_exact(d) {
            best = best.max(dot(q, row));
        }
    }
    best
}

/// Softmax attention of one query over the keys that `for_each_key` yields, streamed in two passes over the
/// keys (the max logit, then the weighted sums) so that memory does not grow with their number. Each pass
/// computes the same f32 logits; the sums accumulate in f64 in key order. Returns the LSE (natural log); a
/// query with no keys gets zeros and -inf.
fn attend(
    q: &[f32],
    scale: f32,
    for_each_key: impl Fn(&mut dyn FnMut(usize)),
    kv: &impl KvRows,
    out: &mut [f32],
) -> f32 {
    let d = q.len();
    let (mut kbuf, mut vbuf, mut acc) = ([0f32; MAX_HEAD_DIM], [0f32; MAX_HEAD_DIM], [0f64; MAX_HEAD_DIM]);
    let (krow, vrow, acc) = (&mut kbuf[..d], &mut vbuf[..d], &mut acc[..d]);
    let mut logit = |j: usize| {
        // SAFETY: every key of S, M and L_B lies below the sequence's length (BlockKeys::for_each_key).
        unsafe { kv.read(j, false, krow) };
        scale * dot(q, krow)
    };
    let (mut m, mut nan) = (f32::NEG_INFINITY, false);
    for_each_key(&mut |j| {
        let s = logit(j);
        m = m.max(s);
        nan |= s.is_nan();
    });
    out.iter_mut().for_each(|x| *x = 0.0);
    // No key, or only keys whose logits are -inf (a product that overflowed): nothing to attend, as on CUDA, where
    // such a row is zeros with lse -inf too. A NaN logit still makes the row NaN (below).
    if m == f32::NEG_INFINITY && !nan {
        return f32::NEG_INFINITY;
    }
    let mut sum = 0f64;
    for_each_key(&mut |j| {
        let w = ((logit(j) - m) as f64).exp();
        sum += w;
        // SAFETY: as for the key.
        unsafe { kv.read(j, true, vrow) };
        for (a, &v) in acc.iter_mut().zip(vrow.iter()) {
            *a += w * v as f64;
        }
    });
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        *o = (a / sum) as f32;
    }
    (m as f64 + sum.ln()) as f32
}

//! `--quality-gpu`: how much of dense attention the backend's own decode selection keeps (docs/BENCHMARK-PROTOCOL.md,
//! quality figures), for TREE and SCAN, measured on what the kernels return rather than on the definition's host
//! functions (`--quality`). `--cpu` runs the same code on the CPU backend at a small size (no GPU needed).
//!
//! For each input kind of `--quality` (random, drift, rotary: its generators, one independent head per kv head),
//! length T and head count H (MHA, one mask per q head; head_dim 128, bf16):
//! - the KV cache holds the T tokens of the H heads (head-major, shared by every sequence of a step: contiguous
//!   layout with sequence stride 0); sequence b of a step has T - 257*b keys (less apart at small T) and its query
//!   is the kind's query at its last position, so every sequence and head is its own sample;
//! - one decode step per (selection, k) from a zeroed mask state (so it searches), at the headline settings
//!   otherwise (bq 32, bk 2, sink 4, window 128); the output and the mask-state records (e and the selected
//!   blocks, src/plan.rs) are read back;
//! - on the host, dense causal attention of each query over all its keys in f64: recall = the share of its softmax
//!   probability on the keys the record makes the step attend (sink, selected blocks, [e, p]); error = relative L2
//!   of the backend's output (bf16) against the dense output; the records are also compared with the definition's
//!   selection computed on the host from the same scores (spec.rs; a difference where the f32 scores' gap at the
//!   cut is below the tie threshold is counted as a near-tie);
//! - salient key: per head, one key of the search domain, at a uniformly random position, is replaced by
//!   alpha * q / |q| with alpha = 2 * (largest key norm of the head), so that its logit is at least twice any other
//!   (positive) one; one decode step (batch 1) per run, a hit when the record selects that key's block. The same
//!   positions serve every (selection, k). SCAN must find every one (its block has the highest score).
//!
//! Where the host would be slow the scale shrinks: 1M uses 8 heads (the search is per head, so fewer heads only
//! means fewer samples).

use super::quality::{make_head, quantile, Kind};
use crate::{
    api::{check, decode_args, validated, Ctx, Fail, Res},
    check::{record_blocks, TIE_EPS},
    cli::Args,
    device::{open_device, sync, sync_device, DevBuf, Device, OpenError},
    inputs::{mix64, HostBuf, Rng},
    report::{cell_text, emit, json_text, len_label, library_line, utc_now, write_json},
    workloads::{Backend, Hip, Shape, D, HEADLINE, K, M},
};
use hip_attn::config::Selection;
use hip_attn::plan;
use hip_attn::spec::{query_block_score, scan_select, tree_search, BlockKeys};
use hip_attn::{hip_decode_step, hip_kv_cache, hip_kv_layout};
use std::ffi::c_void;
use std::fmt::Write as _;
use std::time::Instant;

/// One scale: keys T, heads H, sequences per step (each a sample per head), salient runs (each a trial per head),
/// and the budgets k.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub t: usize,
    pub heads: usize,
    pub seqs: usize,
    pub salient_runs: usize,
    pub budgets: &'static [usize],
}

/// On a GPU: 128 samples and 64 salient trials per row at 32k and 128k, 64 and 64 at 1M.
const GPU_SCALES: [Scale; 3] = [
    Scale { t: 32 * K, heads: 32, seqs: 4, salient_runs: 2, budgets: &[128, 512, 2048] },
    Scale { t: 128 * K, heads: 32, seqs: 4, salient_runs: 2, budgets: &[128, 512, 2048] },
    Scale { t: M, heads: 8, seqs: 8, salient_runs: 8, budgets: &[512] },
];
/// `--cpu`: small enough for the CPU backend in seconds.
const CPU_SCALES: [Scale; 1] = [Scale { t: 4 * K, heads: 4, seqs: 4, salient_runs: 16, budgets: &[128, 512] }];

/// Tokens between the lengths of a step's sequences (and of the salient runs), unless that would take them below
/// T/2.
const LEN_STEP: usize = 257;
const TAG_QGPU: u64 = 3000;
const TAG_SALIENT: u64 = 3100;
/// What every row measures besides its k and selection.
pub const SETTINGS: &str = "decode, MHA (one mask per q head), bq 32, bk 2, sink 4, window 128, D=128, bf16; \
                            dense reference in f64";

#[derive(Clone, Debug)]
pub struct QgRow {
    pub kind: &'static str,
    pub t: usize,
    pub heads: usize,
    pub seqs: usize,
    pub sel: Selection,
    pub k: usize,
    pub samples: usize,
    pub recall_mean: f64,
    pub recall_p5: f64,
    pub err_mean: f64,
    pub err_p95: f64,
    pub attended_mean: f64,
    pub salient_found: usize,
    pub salient_trials: usize,
    pub mask_equal: usize,
    pub mask_ties: usize,
    /// Set when the row was not measured: unsupported by the backend, time budget, or an error.
    pub status: Option<String>,
    /// An error (not a skip): fails the run.
    pub failed: bool,
}

impl QgRow {
    fn new(kind: Kind, s: &Scale, sel: Selection, k: usize) -> QgRow {
        QgRow {
            kind: kind.name(),
            t: s.t,
            heads: s.heads,
            seqs: s.seqs,
            sel,
            k,
            samples: 0,
            recall_mean: f64::NAN,
            recall_p5: f64::NAN,
            err_mean: f64::NAN,
            err_p95: f64::NAN,
            attended_mean: f64::NAN,
            salient_found: 0,
            salient_trials: 0,
            mask_equal: 0,
            mask_ties: 0,
            status: None,
            failed: false,
        }
    }
    fn mask_mismatches(&self) -> usize {
        self.samples - self.mask_equal - self.mask_ties
    }
    /// What makes the run fail besides errors: the masks differ from the definition's beyond near-ties in more than
    /// half of the samples (the speed rows' rule), or SCAN misses a salient key (it cannot, by definition).
    pub fn suspicious(&self) -> bool {
        self.status.is_none()
            && (2 * self.mask_mismatches() > self.samples
                || (self.sel == Selection::Scan && self.salient_found < self.salient_trials))
    }
}

fn sel_name(sel: Selection) -> &'static str {
    match sel {
        Selection::Tree => "TREE",
        Selection::Scan => "SCAN",
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Where the step runs: the CPU backend on host memory or the CUDA backend on device memory
// ---------------------------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
pub enum On<'a> {
    Cpu,
    Cuda(&'a Device),
}

impl On<'_> {
    fn backend(&self) -> Backend {
        match self {
            On::Cpu => Backend::Cpu,
            On::Cuda(d) => Backend::Cuda(d.ordinal),
        }
    }
    fn stream(&self) -> *mut c_void {
        match self {
            On::Cpu => std::ptr::null_mut(),
            On::Cuda(d) => d.stream as *mut c_void,
        }
    }
}

/// A buffer of the backend's memory.
enum Mem {
    Host(HostBuf),
    Dev(DevBuf),
}

impl Mem {
    fn alloc(on: On, bytes: usize, what: &str) -> Res<Mem> {
        Ok(match on {
            On::Cpu => Mem::Host(HostBuf::new(bytes, 0)),
            On::Cuda(_) => Mem::Dev(DevBuf::alloc(bytes, what)?),
        })
    }
    fn bytes(&self) -> usize {
        match self {
            Mem::Host(h) => h.bytes,
            Mem::Dev(d) => d.bytes,
        }
    }
    fn ptr(&mut self) -> *mut c_void {
        match self {
            Mem::Host(h) => h.mut_ptr(),
            Mem::Dev(d) => d.ptr(),
        }
    }
    fn span_ok(&self, offset: usize, bytes: usize) -> Res<()> {
        if offset.checked_add(bytes).is_none_or(|end| end > self.bytes()) {
            let size = self.bytes();
            return Err(Fail::Error(format!("internal: access [{offset}, +{bytes}) outside a {size}-byte buffer")));
        }
        Ok(())
    }
    /// Copies `data` to byte `offset` (synchronously).
    fn write<T: Copy>(&mut self, offset: usize, data: &[T]) -> Res<()> {
        match self {
            Mem::Dev(d) => d.upload(offset, data),
            Mem::Host(h) => {
                let n = std::mem::size_of_val(data);
                if offset.checked_add(n).is_none_or(|end| end > h.bytes) {
                    return Err(Fail::Error(format!("internal: write [{offset}, +{n}) outside {} bytes", h.bytes)));
                }
                // SAFETY: the destination span lies inside the buffer's initialised bytes (checked), the source is a
                // live slice of n bytes, and the two cannot overlap (the buffer is borrowed mutably here).
                unsafe {
                    std::ptr::copy_nonoverlapping(data.as_ptr() as *const u8, (h.mut_ptr() as *mut u8).add(offset), n)
                };
                Ok(())
            }
        }
    }
    /// Reads `n` elements from byte `offset`; the caller has waited for the work that wrote them.
    fn read<T: Copy + Default>(&self, offset: usize, n: usize) -> Res<Vec<T>> {
        match self {
            Mem::Dev(d) => d.download(offset, n),
            Mem::Host(h) => {
                self.span_ok(offset, n * std::mem::size_of::<T>())?;
                let mut out = vec![T::default(); n];
                // SAFETY: the source span lies inside the buffer's initialised bytes (checked); `out` holds exactly n
                // elements of a plain-data type for which any bit pattern the library wrote is valid (u16, i32).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        (h.ptr() as *const u8).add(offset),
                        out.as_mut_ptr() as *mut u8,
                        n * std::mem::size_of::<T>(),
                    )
                };
                Ok(out)
            }
        }
    }
    /// Sets every byte to `byte` before the next step reads or writes it.
    fn fill(&mut self, on: On, byte: u8) -> Res<()> {
        match self {
            Mem::Host(h) => {
                let bytes = h.bytes;
                *h = HostBuf::new(bytes, byte);
                Ok(())
            }
            Mem::Dev(d) => {
                let On::Cuda(dev) = on else { return Err(Fail::Error("internal: device buffer on the CPU".into())) };
                d.fill_async(byte, dev.stream)?;
                sync(dev.stream)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Inputs and the host reference
// ---------------------------------------------------------------------------------------------------------------

/// One head's keys and values [T][D] (f32 values of bf16 numbers), its queries (one per sequence or salient run:
/// the kind's query at the last position of `lengths`' r-th length) and its largest key norm.
struct HeadData {
    k: Vec<f32>,
    v: Vec<f32>,
    q: Vec<Vec<f32>>,
    knorm_max: f32,
}

/// Keys of sequence (or salient run) r: T - r * step, all within [T/2, T].
fn lengths(s: &Scale) -> Vec<usize> {
    let n = s.seqs.max(s.salient_runs);
    let step = LEN_STEP.min(s.t / (2 * n.max(1)));
    (0..n).map(|r| s.t - r * step).collect()
}

/// Calls `f(i)` for i in 0..n on all cores; results in order.
fn par_each<R: Send>(n: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |x| x.get()).min(n.max(1));
    let f = &f;
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|w| sc.spawn(move || (w..n).step_by(threads).map(|i| (i, f(i))).collect::<Vec<_>>()))
            .collect();
        for h in handles {
            for (i, r) in h.join().expect("quality-gpu worker panicked") {
                out[i] = Some(r);
            }
        }
    });
    out.into_iter().map(|r| r.expect("every index computed")).collect()
}

fn gen_heads(kind: Kind, s: &Scale, seed: u64) -> Vec<HeadData> {
    let lens = lengths(s);
    par_each(s.heads, |h| {
        let head = make_head(kind, s.t, mix64(seed ^ mix64(TAG_QGPU + h as u64)));
        let q = lens.iter().map(|&len| head.q[(len - 1) * D..len * D].to_vec()).collect();
        let knorm_max = head.k.chunks(D).map(|r| r.iter().map(|x| x * x).sum::<f32>().sqrt()).fold(0f32, f32::max);
        HeadData { k: head.k, v: head.v, q, knorm_max }
    })
}

fn bf16_bits(x: &[f32]) -> Vec<u16> {
    x.iter().map(|&v| half::bf16::from_f32(v).to_bits()).collect()
}

/// Dense attention of one query (at p = len - 1, over keys [0, len)) and the definition's block scores of its search
/// domain (f32, spec.rs's order, so they equal the CPU backend's).
struct Reference {
    len: usize,
    geo: BlockKeys,
    /// Largest logit and the softmax denominator sum exp(l - m), f64.
    m: f64,
    z: f64,
    o: Vec<f64>,
    scores: Vec<f32>,
}

fn scale() -> f64 {
    1.0 / (D as f64).sqrt()
}

fn reference(h: &HeadData, q: &[f32], len: usize) -> Reference {
    let hip = HEADLINE;
    let key = |t: usize| &h.k[t * D..(t + 1) * D];
    let dense = testkit::attend(q, scale(), (0..len).map(|t| (key(t), &h.v[t * D..(t + 1) * D])));
    let (m, z, o) = (dense.max, dense.z, dense.o);
    let geo = BlockKeys::new(len - 1, len, hip.sink, hip.window, hip.bk, true);
    let scores = (0..geo.nb).map(|j| query_block_score(q, geo.block_range(j), hip.sk, key)).collect();
    Reference { len, geo, m, z, o, scores }
}

/// Recall and attended keys of the record (e, blocks) for the query of `r`.
fn recall(h: &HeadData, q: &[f32], r: &Reference, e: usize, blocks: &[i32]) -> (f64, usize) {
    let hip = HEADLINE;
    let geo = BlockKeys::with_e(e.clamp(hip.sink, r.len), r.len, hip.sink, hip.bk);
    let sel: Vec<u32> = blocks.iter().map(|&x| x.max(0) as u32).collect();
    let (mut mass, mut n) = (0f64, 0usize);
    geo.for_each_key(r.len - 1, true, &sel, |j| {
        mass += (scale() * testkit::dot(q, &h.k[j * D..(j + 1) * D]) - r.m).exp();
        n += 1;
    });
    (mass / r.z, n)
}

/// Whether the record (e, blocks) is the definition's selection for `r`: Some(true) equal, Some(false) a near-tie
/// (the f32 scores' gap at a cut is below the tie threshold, scaled to the scores' magnitude), None otherwise.
fn matches_spec(r: &Reference, sel: Selection, kb: usize, e: usize, blocks: &[i32]) -> Option<bool> {
    let score = |j: usize| r.scores[j];
    let want = match sel {
        Selection::Tree => tree_search(r.geo.nb, kb, score),
        Selection::Scan => scan_select(r.geo.nb, kb, score),
    };
    let got: Vec<u32> = blocks.iter().map(|&x| x.max(0) as u32).collect();
    if e == r.geo.e && got == want {
        return Some(true);
    }
    // TIE_EPS is set for scores of magnitude ~10 (uniform inputs); larger scores carry larger rounding.
    let magnitude = r.scores.iter().fold(0f32, |a, &s| a.max(s.abs())) as f64;
    let eps = TIE_EPS * (magnitude / 10.0).max(1.0);
    let margin = match sel {
        Selection::Tree => testkit::tree_replay(r.geo.nb, kb, |j| r.scores[j] as f64).1,
        Selection::Scan => testkit::scan_margin(r.geo.nb, kb, |j| r.scores[j] as f64),
    };
    (e == r.geo.e && margin < eps).then_some(false)
}

// ---------------------------------------------------------------------------------------------------------------
// One decode step on the backend
// ---------------------------------------------------------------------------------------------------------------

/// The KV cache of one (kind, scale): K and V [H][T][D] bf16 in the backend's memory.
struct Cache {
    k: Mem,
    v: Mem,
    t: usize,
    heads: usize,
}

impl Cache {
    fn upload(on: On, heads: &[HeadData], t: usize) -> Res<Cache> {
        let bytes = heads.len() * t * D * 2;
        let (mut k, mut v) = (Mem::alloc(on, bytes, "K")?, Mem::alloc(on, bytes, "V")?);
        for (h, hd) in heads.iter().enumerate() {
            k.write(h * t * D * 2, &bf16_bits(&hd.k))?;
            v.write(h * t * D * 2, &bf16_bits(&hd.v))?;
        }
        Ok(Cache { k, v, t, heads: heads.len() })
    }
    /// Contiguous, head-major, every sequence on the same tokens (sequence stride 0).
    fn desc(&mut self) -> hip_kv_cache {
        hip_kv_cache {
            layout: hip_kv_layout::HIP_ATTN_KV_CONTIGUOUS as u32,
            page_size: 0,
            k: self.k.ptr(),
            v: self.v.ptr(),
            seq_stride: 0,
            token_stride: D as i64,
            head_stride: (self.t * D) as i64,
            page_table: std::ptr::null(),
            page_table_stride: 0,
            num_pages: 0,
        }
    }
    /// Writes key row `j` of head `h` (bf16 bits).
    fn write_key(&mut self, h: usize, j: usize, row: &[u16]) -> Res<()> {
        self.k.write((h * self.t + j) * D * 2, row)
    }
}

/// What a step left: per (sequence, head), the output row (f32 of bf16) and the record's e and blocks.
struct StepOut {
    o: Vec<Vec<f32>>,
    e: Vec<usize>,
    blocks: Vec<Vec<i32>>,
}

fn shape_of(heads: usize) -> Shape {
    let name = match heads {
        32 => "MHA-32",
        8 => "MHA-8",
        4 => "MHA-4",
        _ => "MHA",
    };
    Shape { name, hq: heads, hkv: heads, share_kv: false }
}

/// One decode step of `queries.len()` sequences (queries[b]: the H query rows of sequence b, lengths lens[b])
/// from a zeroed mask state.
fn step(on: On, ctx: &Ctx, hip: &Hip, cache: &mut Cache, queries: &[Vec<&[f32]>], lens: &[usize]) -> Res<StepOut> {
    let (batch, hq) = (queries.len(), cache.heads);
    let cfg = validated(&shape_of(hq).config(hip, on.backend()))?;
    let ws_bytes = ctx.decode_ws(batch, cache.t)?;
    let state_bytes = ctx.state_size(batch)?;
    let mut q = Mem::alloc(on, batch * hq * D * 2, "q")?;
    let qbits: Vec<u16> = queries.iter().flat_map(|heads| heads.iter().flat_map(|r| bf16_bits(r))).collect();
    q.write(0, &qbits)?;
    let mut o = Mem::alloc(on, batch * hq * D * 2, "o")?;
    o.fill(on, 0xFF)?; // NaN: a row the step does not write shows
    let mut len_buf = Mem::alloc(on, 4 * batch, "seqlens_k")?;
    len_buf.write(0, &lens.iter().map(|&l| l as i32).collect::<Vec<_>>())?;
    let mut state = Mem::alloc(on, state_bytes, "mask state")?;
    state.fill(on, 0)?;
    let mut ws = Mem::alloc(on, ws_bytes, "workspace")?;
    if let On::Cuda(_) = on {
        sync_device()?; // the synchronous copies above are not ordered with the bench's non-blocking stream
    }
    let args = decode_args(q.ptr(), o.ptr(), cache.desc(), len_buf.ptr(), state.ptr(), batch, hq, cache.t);
    // SAFETY: every address in `args` and the workspace belongs to a live buffer of the context's backend spanning
    // what `args` describes (q, o [batch, hq, D]; the cache [hq][T][D] with sequence stride 0 and every length
    // <= T; seqlens_k; the mask state and workspace sized by the library's queries); the buffers outlive the call
    // and, on CUDA, the synchronize below.
    check(unsafe { hip_decode_step(ctx.raw, &args, ws.ptr(), ws_bytes, on.stream()) }, "hip_decode_step")?;
    if let On::Cuda(dev) = on {
        sync(dev.stream)?;
    }
    let obits: Vec<u16> = o.read(0, batch * hq * D)?;
    let ints: Vec<i32> = state.read(0, state_bytes / 4)?;
    let mut out = StepOut { o: Vec::new(), e: Vec::new(), blocks: Vec::new() };
    for b in 0..batch {
        for h in 0..hq {
            let at = (b * hq + h) * D;
            out.o.push(obits[at..at + D].iter().map(|&x| half::bf16::from_bits(x).to_f32()).collect());
            let r = plan::state_record(&cfg, b, h);
            let rec = &ints[r..r + plan::state_ints(&cfg)];
            out.e.push(rec[plan::STATE_E_IDX].max(0) as usize);
            out.blocks.push(record_blocks(rec));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------------
// The measurement
// ---------------------------------------------------------------------------------------------------------------

/// Every row of one (kind, scale): for each budget k, TREE then SCAN.
pub fn measure(on: On, kind: Kind, s: &Scale, seed: u64, mut progress: impl FnMut(&str)) -> Vec<QgRow> {
    let mut rows = Vec::new();
    for &k in s.budgets {
        for sel in [Selection::Tree, Selection::Scan] {
            rows.push(QgRow::new(kind, s, sel, k));
        }
    }
    let id = format!("quality-gpu/{}/{}", kind.name(), len_label(s.t));
    progress(&format!("{id}: generating {} heads of {} tokens", s.heads, s.t));
    let seed = mix64(seed ^ mix64(s.t as u64) ^ kind as u64);
    let heads = gen_heads(kind, s, seed);
    let mut cache = match Cache::upload(on, &heads, s.t) {
        Ok(c) => c,
        Err(f) => {
            for r in &mut rows {
                set_fail(r, &f);
            }
            return rows;
        }
    };
    progress(&format!("{id}: dense references"));
    let lens = lengths(s);
    let samples: Vec<(usize, usize)> = (0..s.seqs).flat_map(|b| (0..s.heads).map(move |h| (b, h))).collect();
    let refs: Vec<Reference> = par_each(samples.len(), |i| {
        let (b, h) = samples[i];
        reference(&heads[h], &heads[h].q[b], lens[b])
    });
    let plants = salient_positions(s, seed);
    for r in &mut rows {
        progress(&format!("{id}: {} k={}", sel_name(r.sel), r.k));
        if let Err(f) = measure_row(on, r, s, &heads, &refs, &plants, &mut cache) {
            set_fail(r, &f);
        }
    }
    rows
}

fn set_fail(r: &mut QgRow, f: &Fail) {
    match f {
        Fail::Skip(m) => r.status = Some(format!("skipped: {m}")),
        Fail::Error(m) => {
            r.status = Some(format!("error: {m}"));
            r.failed = true;
        }
    }
}

/// Per salient run, the planted key's position for every head (uniform over the search domain of that run's
/// query; none where the domain is empty).
fn salient_positions(s: &Scale, seed: u64) -> Vec<Vec<Option<usize>>> {
    let hip = HEADLINE;
    let mut rng = Rng::from_state(seed ^ TAG_SALIENT);
    lengths(s)[..s.salient_runs]
        .iter()
        .map(|&len| {
            let geo = BlockKeys::new(len - 1, len, hip.sink, hip.window, hip.bk, true);
            (0..s.heads).map(|_| (geo.e > hip.sink).then(|| hip.sink + rng.below(geo.e - hip.sink))).collect()
        })
        .collect()
}

fn measure_row(
    on: On,
    row: &mut QgRow,
    s: &Scale,
    heads: &[HeadData],
    refs: &[Reference],
    plants: &[Vec<Option<usize>>],
    cache: &mut Cache,
) -> Res<()> {
    let hip = Hip { k: row.k, sel: row.sel, refresh: 1, ..HEADLINE };
    let ctx = Ctx::create(&shape_of(s.heads).config(&hip, on.backend()))?;
    let lens = lengths(s);

    // Recall, error and masks: one step of every sequence.
    let queries: Vec<Vec<&[f32]>> = (0..s.seqs).map(|b| heads.iter().map(|h| h.q[b].as_slice()).collect()).collect();
    let out = step(on, &ctx, &hip, cache, &queries, &lens[..s.seqs])?;
    let per: Vec<(f64, f64, usize, Option<bool>)> = par_each(refs.len(), |i| {
        let (b, h) = (i / s.heads, i % s.heads);
        let (r, hd, q) = (&refs[i], &heads[h], &heads[h].q[b]);
        let (rec, n) = recall(hd, q, r, out.e[i], &out.blocks[i]);
        let (mut num, mut den) = (0f64, 0f64);
        for (&g, &w) in out.o[i].iter().zip(&r.o) {
            num += (g as f64 - w) * (g as f64 - w);
            den += w * w;
        }
        let err = if out.o[i].iter().all(|x| x.is_finite()) { (num / den.max(1e-300)).sqrt() } else { f64::INFINITY };
        (rec, err, n, matches_spec(r, row.sel, hip.kb(), out.e[i], &out.blocks[i]))
    });
    let mut rec: Vec<f64> = per.iter().map(|x| x.0).collect();
    let mut err: Vec<f64> = per.iter().map(|x| x.1).collect();
    let n = per.len() as f64;
    row.samples = per.len();
    row.recall_mean = rec.iter().sum::<f64>() / n;
    row.recall_p5 = quantile(&mut rec, 0.05);
    row.err_mean = err.iter().sum::<f64>() / n;
    row.err_p95 = quantile(&mut err, 0.95);
    row.attended_mean = per.iter().map(|x| x.2 as f64).sum::<f64>() / n;
    row.mask_equal = per.iter().filter(|x| x.3 == Some(true)).count();
    row.mask_ties = per.iter().filter(|x| x.3 == Some(false)).count();

    // Salient keys: one step per run, batch 1, each head with its own planted key.
    for (run, plant) in plants.iter().enumerate() {
        let len = lens[run];
        let mut saved = Vec::new();
        for (h, &j) in plant.iter().enumerate() {
            let Some(j) = j else { continue };
            let q = &heads[h].q[run];
            let qn = q.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-30);
            let alpha = 2.0 * heads[h].knorm_max;
            let planted: Vec<f32> = q.iter().map(|x| alpha * x / qn).collect();
            cache.write_key(h, j, &bf16_bits(&planted))?;
            saved.push((h, j));
        }
        let result = step(on, &ctx, &hip, cache, &[heads.iter().map(|h| h.q[run].as_slice()).collect()], &[len]);
        // Restore before anything else can fail: the next row reads the same cache.
        for &(h, j) in &saved {
            cache.write_key(h, j, &bf16_bits(&heads[h].k[j * D..(j + 1) * D]))?;
        }
        let out = result?;
        for &(h, j) in &saved {
            let block = ((j - HEADLINE.sink) / HEADLINE.bk) as i32;
            row.salient_trials += 1;
            row.salient_found += out.blocks[h].contains(&block) as usize;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Output and the command
// ---------------------------------------------------------------------------------------------------------------

pub fn markdown(rows: &[QgRow]) -> String {
    let mut s = String::from(
        "| input | length | heads x seqs | selection | k | recall mean | recall p5 | output rel L2 mean | output rel \
         L2 p95 | keys attended (mean) | salient key found | masks = reference |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let lead =
            format!("| {} | {} | {} x {} | {} | {} |", r.kind, len_label(r.t), r.heads, r.seqs, sel_name(r.sel), r.k);
        if let Some(st) = &r.status {
            let _ = writeln!(s, "{lead} {} | - | - | - | - | - | - |", cell_text(st));
            continue;
        }
        let mut masks = format!("{}/{}", r.mask_equal, r.samples);
        if r.mask_ties > 0 {
            let _ = write!(masks, " ({} near-tie)", r.mask_ties);
        }
        if r.mask_mismatches() > 0 {
            let _ = write!(masks, " ({} DIFFER)", r.mask_mismatches());
        }
        let _ = writeln!(
            s,
            "{lead} {:.3} | {:.3} | {:.2e} | {:.2e} | {:.0} | {}/{} | {masks} |",
            r.recall_mean, r.recall_p5, r.err_mean, r.err_p95, r.attended_mean, r.salient_found, r.salient_trials
        );
    }
    s
}

/// The JSON report of `--quality-gpu`: the header fields `head`, then the rows (keys as in
/// bench-results/*-quality-gpu.json).
pub fn json(rows: &[QgRow], head: serde_json::Value) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "input": r.kind, "length": r.t, "heads": r.heads, "seqs": r.seqs, "selection": sel_name(r.sel),
                "k": r.k, "samples": r.samples, "recall_mean": r.recall_mean, "recall_p5": r.recall_p5,
                "rel_l2_mean": r.err_mean, "rel_l2_p95": r.err_p95, "attended_mean": r.attended_mean,
                "salient_found": r.salient_found, "salient_trials": r.salient_trials,
                "masks_equal_spec": r.mask_equal, "masks_near_tie": r.mask_ties, "status": r.status,
            })
        })
        .collect();
    let mut top = serde_json::Map::new();
    top.insert("kind".into(), "hip-bench quality-gpu".into());
    if let serde_json::Value::Object(head) = head {
        top.extend(head);
    }
    top.insert("rows".into(), rows.into());
    top.into()
}

/// `--quality-gpu [--cpu]`: the table on stdout, JSON to --json PATH or hip-quality-gpu.json (and $OUT).
pub fn run(args: &Args) -> i32 {
    let start = Instant::now();
    let dev = if args.cpu {
        None
    } else {
        match open_device(args.device) {
            Ok(d) => Some(d),
            Err(OpenError::NoDevice(msg)) => {
                elog!("no CUDA device: {msg} (--quality-gpu --cpu runs on the CPU backend)");
                return 2;
            }
            Err(OpenError::Cuda(msg)) => {
                elog!("hip-bench: CUDA error while opening the device: {msg}");
                return 1;
            }
        }
    };
    let (on, scales, device): (On, &[Scale], String) = match &dev {
        None => (On::Cpu, &CPU_SCALES, "CPU backend".into()),
        Some(d) => {
            let scales: &[Scale] = if args.quick { &GPU_SCALES[..1] } else { &GPU_SCALES };
            (On::Cuda(d), scales, format!("{} (device {}), driver {}", d.name, d.ordinal, d.driver))
        }
    };
    let log = |m: &str| elog!("[{:7.1} s] {m}", start.elapsed().as_secs_f64());
    log(&format!("{device}; {}; seed {}", library_line(), args.seed));
    let mut rows = Vec::new();
    for s in scales {
        for kind in Kind::ALL {
            if start.elapsed().as_secs_f64() > args.budget_s {
                for &k in s.budgets {
                    for sel in [Selection::Tree, Selection::Scan] {
                        let mut r = QgRow::new(kind, s, sel, k);
                        r.status = Some(format!("skipped: time budget ({:.0} s) spent", args.budget_s));
                        rows.push(r);
                    }
                }
                continue;
            }
            rows.extend(measure(on, kind, s, args.seed, log));
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    log(&format!("finished {} rows in {elapsed:.1} s", rows.len()));
    let text = format!(
        "## hip-bench quality on the backend\n\n- {device}; {}; {}\n- seed {}; date {}; elapsed {elapsed:.1} s; \
         command `{}`\n- samples per row: heads x sequences (one query each, at lengths T - 257 b or closer); \
         salient: one planted key per head and run\n\n{}",
        library_line(),
        SETTINGS,
        args.seed,
        utc_now(),
        args.command_line,
        markdown(&rows)
    );
    let shown = emit(&text);
    let head = serde_json::json!({
        "device": device, "library": library_line(), "settings": SETTINGS, "seed": args.seed, "date": utc_now(),
        "command": args.command_line, "elapsed_s": elapsed,
    });
    let path = args.json.clone().unwrap_or_else(|| "hip-quality-gpu.json".into());
    let written = write_json(&path, "hip-quality-gpu.json", &json_text(&json(&rows, head)));
    let bad: Vec<&QgRow> = rows.iter().filter(|r| r.failed || r.suspicious()).collect();
    for r in &bad {
        log(&format!(
            "FAILED {} {} {} k={}: {}",
            r.kind,
            len_label(r.t),
            sel_name(r.sel),
            r.k,
            r.status.clone().unwrap_or_else(|| "masks differ from the definition or SCAN missed a salient key".into())
        ));
    }
    if bad.is_empty() && shown && written {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU backend computes the definition itself: every mask must equal the host's, SCAN must find every planted
    /// key and keep at least TREE's mass, and a budget covering every key must give dense attention.
    #[test]
    fn cpu_backend_matches_spec_and_scan_finds_every_salient_key() {
        let s = Scale { t: 2048, heads: 2, seqs: 3, salient_runs: 32, budgets: &[64, 4096] };
        for kind in Kind::ALL {
            let rows = measure(On::Cpu, kind, &s, 11, |_| {});
            assert_eq!(rows.len(), 4);
            for r in &rows {
                let what = format!("{} {} k={}", r.kind, sel_name(r.sel), r.k);
                assert!(r.status.is_none(), "{what}: {:?}", r.status);
                assert_eq!(r.samples, 6, "{what}");
                assert_eq!(r.mask_equal, r.samples, "{what}: masks differ from docs/ALGORITHM.md");
                assert!(r.recall_mean > 0.0 && r.recall_mean <= 1.0 + 1e-9, "{what}: recall {}", r.recall_mean);
                assert!(r.err_mean.is_finite(), "{what}");
                assert_eq!(r.salient_trials, 64, "{what}");
                assert!(!r.suspicious(), "{what}");
                if r.k >= s.t {
                    assert!((r.recall_p5 - 1.0).abs() < 1e-9, "{what}: recall {}", r.recall_p5);
                    // Dense attention, up to the bf16 rounding of the output.
                    assert!(r.err_p95 < 1e-2, "{what}: error {}", r.err_p95);
                    assert_eq!(r.salient_found, r.salient_trials, "{what}");
                }
            }
            let (tree, scan) = (&rows[0], &rows[1]);
            assert_eq!(scan.salient_found, scan.salient_trials, "{}", scan.kind);
            assert!(tree.salient_found < scan.salient_found, "{}: TREE found {}", tree.kind, tree.salient_found);
            let (a, b) = (scan.recall_mean, tree.recall_mean);
            assert!(a >= b - 1e-3, "{}: SCAN recall {a} below TREE's {b}", scan.kind);
        }
    }

    #[test]
    fn a_wrong_record_is_seen() {
        let s = Scale { t: 1024, heads: 1, seqs: 1, salient_runs: 0, budgets: &[64] };
        let heads = gen_heads(Kind::Random, &s, 5);
        let r = reference(&heads[0], &heads[0].q[0], s.t);
        let kb = 32;
        let good: Vec<i32> = tree_search(r.geo.nb, kb, |j| r.scores[j]).iter().map(|&x| x as i32).collect();
        assert_eq!(matches_spec(&r, Selection::Tree, kb, r.geo.e, &good), Some(true));
        let mut bad = good.clone();
        let free = (0..r.geo.nb as i32).find(|x| !good.contains(x)).unwrap();
        bad[0] = free;
        bad.sort();
        assert_eq!(matches_spec(&r, Selection::Tree, kb, r.geo.e, &bad), None);
        assert_eq!(matches_spec(&r, Selection::Tree, kb, r.geo.e + 1, &good), None);
        let (all, n) = recall(&heads[0], &heads[0].q[0], &r, HEADLINE.sink, &[]);
        assert!((all - 1.0).abs() < 1e-9 && n == s.t, "e = sink attends everything: {all}, {n}");
    }
}

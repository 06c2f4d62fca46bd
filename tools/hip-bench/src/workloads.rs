//! What is measured: the shapes and HiP settings of docs/BENCHMARK-PROTOCOL.md, the configurations of a run
//! (`--quick`, `--scan`, `--with-512k`), and the counted work that gives each its floor (`--plan`).

use hip_attn::config::Selection;
use hip_attn::plan::{self};
use hip_attn::{hip_backend, hip_config, hip_config_default, hip_dtype, hip_mask_sharing, hip_selection};
use std::fmt::Write as _;

use crate::{
    cli::Args,
    report::{emit, fmt_bytes, fmt_ms, len_label},
};

/// Head dimension of every shape of docs/BENCHMARK-PROTOCOL.md.
pub(crate) const D: usize = 128;

/// Ceilings of the H100 80GB HBM3: bf16 tensor-core rate and measured copy bandwidth.
pub(crate) const PEAK_FLOPS: f64 = 800e12;

pub(crate) const PEAK_BYTES_PER_S: f64 = 3.0e12;

/// KV-cache page size (tokens), as in an engine.
pub(crate) const PAGE: usize = 64;

/// Tokens between the sequence lengths of consecutive decode input sets.
pub(crate) const SET_SPACING: usize = 256;

/// Decode input sets: at least 2 (consecutive steps never repeat inputs), at most this many.
pub(crate) const MAX_SETS: usize = 32;

/// Refresh for the cached-mask decode rows: no timed step reaches a multiple of it.
pub(crate) const CACHED_REFRESH: usize = 1 << 30;

pub(crate) const PREFILL_WARMUP: usize = 2;

pub(crate) const PREFILL_MIN_RUNS: usize = 20;

pub(crate) const PREFILL_MAX_RUNS: usize = 50;

/// Time the timed prefill runs of one configuration should take (runs are then clamped to [MIN, MAX]).
pub(crate) const PREFILL_TIMED_MS: f64 = 2000.0;

/// Warm-up rounds over all decode input sets (the first round of a cached-mask row is the searching step).
pub(crate) const DECODE_WARMUP_ROUNDS: usize = 3;

pub(crate) const DECODE_STEPS: usize = 300;

pub(crate) const DECODE_STEPS_QUICK: usize = 200;

/// Default time budget: configurations that would start later are skipped (a device call is limited to 10 min).
pub(crate) const DEFAULT_BUDGET_S: f64 = 480.0;
// ---------------------------------------------------------------------------------------------------------------
// Shapes and settings
// ---------------------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub(crate) name: &'static str,
    pub(crate) hq: usize,
    pub(crate) hkv: usize,
    /// One mask search per kv head (HIP_ATTN_MASK_PER_KV_HEAD) instead of per q head.
    pub(crate) share_kv: bool,
}

pub(crate) const MHA32: Shape = Shape { name: "MHA-32", hq: 32, hkv: 32, share_kv: false };
pub(crate) const GQA8: Shape = Shape { name: "GQA-8", hq: 32, hkv: 8, share_kv: true };
pub(crate) const GQA8_PER_Q: Shape = Shape { name: "GQA-8q", hq: 32, hkv: 8, share_kv: false };

impl Shape {
    pub(crate) fn group(&self) -> usize {
        self.hq / self.hkv
    }
    pub(crate) fn mask_heads(&self) -> usize {
        if self.share_kv {
            self.hkv
        } else {
            self.hq
        }
    }
    /// q heads whose queries score for (and use) one mask.
    pub(crate) fn heads_per_mask(&self) -> usize {
        if self.share_kv {
            self.group()
        } else {
            1
        }
    }
    pub(crate) fn first_head(&self, mh: usize) -> usize {
        mh * self.heads_per_mask()
    }
    pub(crate) fn kv_head_of(&self, h: usize) -> usize {
        h / self.group()
    }
    /// The shape of one check unit: the q heads of one mask and their single kv head.
    pub(crate) fn unit(&self) -> Shape {
        Shape { name: self.name, hq: self.heads_per_mask(), hkv: 1, share_kv: self.share_kv }
    }
    pub(crate) fn config(&self, hip: &Hip, backend: Backend) -> hip_config {
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
        if hip.fp8_search {
            c.flags |= hip_attn::HIP_ATTN_FLAG_FP8_SEARCH_SCORES;
        }
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
pub(crate) struct Hip {
    pub(crate) k: usize,
    pub(crate) bq: usize,
    pub(crate) bk: usize,
    pub(crate) sink: usize,
    pub(crate) window: usize,
    pub(crate) sq: usize,
    pub(crate) sk: usize,
    pub(crate) refresh: usize,
    /// Selection of a decode step that searches (docs/ALGORITHM.md "Selection modes: TREE and SCAN").
    pub(crate) sel: Selection,
    /// Prefill query blocks holding any of a sequence's last `scan_tail` queries select by SCAN.
    pub(crate) scan_tail: usize,
    /// HIP_ATTN_FLAG_FP8_SEARCH_SCORES (--fp8-search): prefill's tree search scores on E4M3 copies of Q and K.
    pub(crate) fp8_search: bool,
}

/// docs/BENCHMARK-PROTOCOL.md's headline settings (the official implementation's defaults).
pub(crate) const HEADLINE: Hip = Hip {
    k: 512,
    bq: 32,
    bk: 2,
    sink: 4,
    window: 128,
    sq: 1,
    sk: 1,
    refresh: 8,
    sel: Selection::Tree,
    scan_tail: 0,
    fp8_search: false,
};

impl Hip {
    pub(crate) fn kb(&self) -> usize {
        self.k.div_ceil(self.bk)
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Cpu,
    Cuda(i32),
}

// ---------------------------------------------------------------------------------------------------------------
// Work accounting: the floors
// ---------------------------------------------------------------------------------------------------------------

/// Counted floating-point operations and compulsory bytes of one timed run (one prefill call or one decode step).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Work {
    pub(crate) flops: f64,
    pub(crate) bytes: f64,
}

impl Work {
    /// The floor: the larger of the arithmetic time at the bf16 rate and the memory time at copy bandwidth.
    pub(crate) fn floor_ms(&self) -> f64 {
        (self.flops / PEAK_FLOPS).max(self.bytes / PEAK_BYTES_PER_S) * 1e3
    }
}

/// ceil(log2(x)) for x >= 1 (0 for x <= 1).
pub(crate) fn ceil_log2(x: usize) -> usize {
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
pub(crate) fn block_sets(hip: &Hip, p0: usize) -> (usize, usize, usize, usize) {
    let e = hip.sink.max((p0 + 1).saturating_sub(hip.window));
    let domain = e.saturating_sub(hip.sink);
    let nb = domain.div_ceil(hip.bk);
    let selected = if hip.k == 0 { 0 } else { (hip.kb() * hip.bk).min(domain) };
    (e, domain, nb, selected)
}

/// Search iterations of one query block (docs/ALGORITHM.md section 4: ceil(log2(ceil(NB / Kb))); none when
/// NB <= Kb or k = 0).
pub(crate) fn search_iterations(hip: &Hip, nb: usize) -> usize {
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
pub(crate) fn count_prefill(shape: &Shape, hip: &Hip, t: usize) -> Work {
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

/// The device the counts assume where none is at hand (`--plan`, tests): an H200 (132 SMs, clusters of 8).
pub(crate) const H200: plan::DeviceTraits =
    plan::DeviceTraits { sm_count: 132, search_cluster: 8, cluster_per_sm: 4, scan_resident: 264 };

/// Split-K partials per (sequence, q head) that a CUDA decode step writes to the workspace and reads back: the
/// plan's for this shape's configuration on `dev` (none where the cluster step kernel combines in shared memory).
/// Only the partials' few hundred KB of the byte count depend on it.
pub(crate) fn decode_partials(
    shape: &Shape,
    hip: &Hip,
    batch: usize,
    max_seqlen_k: usize,
    dev: &plan::DeviceTraits,
) -> usize {
    let cfg =
        crate::api::validated(&shape.config(hip, Backend::Cpu)).expect("the benchmark's configurations are valid");
    let p = plan::DecodePlan::new(&cfg, plan::DecodeShape { batch, max_seqlen_k }, Some(dev))
        .expect("the benchmark's decode shapes plan");
    p.launch.filter(|l| l.attn_grid.is_some()).map_or(0, |l| l.splits)
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
pub(crate) fn count_decode(
    shape: &Shape,
    hip: &Hip,
    len: usize,
    batch: usize,
    searching: bool,
    max_seqlen_k: usize,
    dev: &plan::DeviceTraits,
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
    let splits = decode_partials(shape, hip, batch, max_seqlen_k, dev);
    let partials = (shape.hq * splits * (D + 1)) as f64 * 4.0 * 2.0;
    let b = batch as f64;
    Work { flops: b * flops, bytes: b * (qo + kv + search + state + partials) }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    MaxMs(f64),
    MinTflops(f64),
}

impl Target {
    pub(crate) fn text(&self) -> String {
        match *self {
            Target::MaxMs(ms) => format!("<= {}", fmt_ms(ms)),
            Target::MinTflops(tf) => format!(">= {tf:.0} TFLOP/s"),
        }
    }
}

pub(crate) struct PrefillJob {
    pub(crate) id: String,
    pub(crate) work: String,
    pub(crate) shape: Shape,
    pub(crate) hip: Hip,
    pub(crate) t: usize,
    pub(crate) target: Option<Target>,
    /// Sampled (mask head, query block) units for the check.
    pub(crate) units: usize,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecodeMode {
    Cached,
    SearchEveryStep,
    /// A search every step at the largest selection budget the kernels take at head dim 128 (k = 2048: 1024 key
    /// blocks, four times the default's branches per iteration).
    SearchEveryStepK2048,
    /// `--scan` rows (scan.rs): SCAN at refresh 1 and 8, and dense decode through the same kernels.
    ScanEveryStep,
    ScanRefresh8,
    Dense,
}

impl DecodeMode {
    /// The settings of the mode's steps over a cache of `cap` tokens.
    pub(crate) fn hip(self, cap: usize) -> Hip {
        match self {
            DecodeMode::Cached => Hip { refresh: CACHED_REFRESH, ..HEADLINE },
            DecodeMode::SearchEveryStep => Hip { refresh: 1, ..HEADLINE },
            DecodeMode::SearchEveryStepK2048 => Hip { refresh: 1, k: 2048, ..HEADLINE },
            DecodeMode::ScanEveryStep => Hip { refresh: 1, sel: Selection::Scan, ..HEADLINE },
            DecodeMode::ScanRefresh8 => Hip { refresh: 8, sel: Selection::Scan, ..HEADLINE },
            // window >= every length: the search domain is empty and every key is in the local set.
            DecodeMode::Dense => Hip { refresh: CACHED_REFRESH, window: cap, ..HEADLINE },
        }
    }
    pub(crate) fn work(self) -> &'static str {
        match self {
            DecodeMode::Cached => "decode, cached mask",
            DecodeMode::SearchEveryStep => "decode, search every step",
            DecodeMode::SearchEveryStepK2048 => "decode, search every step, k 2048",
            DecodeMode::ScanEveryStep => "decode, SCAN every step",
            DecodeMode::ScanRefresh8 => "decode, SCAN at refresh 8, per step over 1 SCAN + 7 cached steps",
            DecodeMode::Dense => "decode, dense (window >= T, no search)",
        }
    }
    /// Steps per refresh cycle whose mean the rows report (1: every step alike).
    pub(crate) fn cycle(self) -> usize {
        match self {
            DecodeMode::ScanRefresh8 => 8,
            _ => 1,
        }
    }
}

pub(crate) struct DecodeModeJob {
    pub(crate) mode: DecodeMode,
    pub(crate) id: String,
    pub(crate) target: Option<Target>,
}

pub(crate) struct DecodeJob {
    pub(crate) shape: Shape,
    pub(crate) t: usize,
    pub(crate) batch: usize,
    pub(crate) modes: Vec<DecodeModeJob>,
}

// ---------------------------------------------------------------------------------------------------------------
// The configuration list
// ---------------------------------------------------------------------------------------------------------------

pub(crate) const K: usize = 1024;
pub(crate) const M: usize = 1 << 20;

pub(crate) fn prefill_jobs(args: &Args, shapes: &[Shape]) -> Vec<PrefillJob> {
    let mut lengths = if args.quick { vec![8 * K] } else { vec![8 * K, 32 * K, 128 * K] };
    if args.with_512k && !args.quick {
        lengths.push(512 * K);
    }
    let mut jobs = Vec::new();
    for shape in shapes {
        for &t in &lengths {
            // The rows' targets are docs/BENCHMARK-PROTOCOL.md's (MHA-32), here and in decode_jobs.
            let target = match (shape.name, t) {
                ("MHA-32", t) if t == 8 * K => Some(Target::MaxMs(0.9)),
                ("MHA-32", t) if t == 32 * K => Some(Target::MaxMs(6.0)),
                ("MHA-32", t) if t == 128 * K => Some(Target::MaxMs(30.0)),
                _ => None,
            };
            jobs.push(PrefillJob {
                id: format!("prefill/{}/{}", shape.name, len_label(t)),
                work: "prefill".into(),
                shape: *shape,
                hip: Hip { fp8_search: args.fp8_search, ..HEADLINE },
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
            let target = (shape.name == "MHA-32").then_some(Target::MinTflops(550.0));
            jobs.push(exact(
                "exact-window",
                "prefill, exact (window >= T)",
                *shape,
                Hip { window: t, ..HEADLINE },
                target,
            ));
        }
        let target = Some(Target::MinTflops(550.0));
        // The same exact attention with 128-query blocks (a compile-time option like any other): each gathered
        // K/V tile then serves 4x the queries, which is what dense kernels do with their 128-row tiles.
        let bq128 = Hip { window: t, bq: 128, ..HEADLINE };
        jobs.push(exact("exact-window-bq128", "prefill, exact (window >= T, bq 128)", MHA32, bq128, target));
        let k_eq_t = Hip { k: t, bk: 64, ..HEADLINE };
        jobs.push(exact("exact-k", "prefill, exact (k = T, bk 64)", MHA32, k_eq_t, target));
    }
    jobs
}

pub(crate) fn decode_jobs(args: &Args, shapes: &[Shape]) -> Vec<DecodeJob> {
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
            modes: vec![mode(DecodeMode::Cached, "decode-cached-b16", 32 * K, Some(0.045))],
        });
        if !args.quick {
            let mut modes = vec![
                mode(DecodeMode::Cached, "decode-cached", 128 * K, Some(0.012)),
                mode(DecodeMode::SearchEveryStep, "decode-search", 128 * K, Some(0.060)),
            ];
            if mha {
                // (on the same cache: a job's modes share its upload; the id keeps out of `--only decode-search`)
                modes.push(mode(DecodeMode::SearchEveryStepK2048, "decode-k2048-search", 128 * K, None));
            }
            jobs.push(DecodeJob { shape: *shape, t: 128 * K, batch: 1, modes });
            jobs.push(DecodeJob {
                shape: *shape,
                t: M,
                batch: 1,
                modes: vec![mode(DecodeMode::Cached, "decode-cached", M, Some(0.012))],
            });
        }
    }
    jobs
}

pub(crate) fn shapes(args: &Args) -> Vec<Shape> {
    vec![MHA32, if args.gqa_per_q_head { GQA8_PER_Q } else { GQA8 }]
}

/// The configurations of this run: `--scan`'s set (scan.rs) or the default one.
pub(crate) fn job_lists(args: &Args, shapes: &[Shape]) -> (Vec<PrefillJob>, Vec<DecodeJob>) {
    if args.scan {
        (crate::scan::prefill_jobs(shapes), crate::scan::decode_jobs(shapes))
    } else {
        (prefill_jobs(args, shapes), decode_jobs(args, shapes))
    }
}

/// Prints every configuration with its counted work and floor (H100: 132 SMs, 50 MB L2 assumed).
/// With `--dense FILE`, each configuration's dense shape and the file's rows for it follow.
pub(crate) fn print_plan(args: &Args, dense: Option<&crate::dense::Dense>) -> i32 {
    let (dev, l2) = (H200, 50usize << 20);
    let mut s = String::from("| id | counted GFLOP | counted MB | floor | device memory |\n|---|---|---|---|---|\n");
    let (pjobs, djobs) = job_lists(args, &shapes(args));
    let dense_text = dense.map(|d| {
        let shapes = crate::dense::shapes_of(&pjobs, &djobs);
        let ids: Vec<(String, Option<f64>)> = shapes.iter().map(|(id, _)| (id.clone(), None)).collect();
        crate::dense::markdown(d, &d.file.device, &crate::dense::compare(d, &shapes, &ids))
    });
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
        let step = count_decode(&j.shape, &hip0, j.t, j.batch, false, j.t, &dev).bytes;
        let nsets = ((4.0 * l2 as f64 / step).ceil() as usize).clamp(2, MAX_SETS);
        let cap = (j.t + (nsets - 1) * SET_SPACING).div_ceil(PAGE) * PAGE;
        let mem = 2 * j.batch * cap * j.shape.hkv * D * 2;
        for m in &j.modes {
            let w = crate::scan::decode_work(&j.shape, m.mode, j.t, j.batch, cap, &dev);
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
    s.push_str(&dense_text.unwrap_or_default());
    if emit(&s) {
        0
    } else {
        1
    }
}

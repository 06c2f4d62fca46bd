//! Quality beside speed (docs/BENCHMARK-PROTOCOL.md): how much of dense attention HiP keeps at the headline
//! settings. Computed on the host from the defining functions (`hip_attn::spec`, which the CPU backend is built
//! from and the CUDA kernels are tested to match), so `hip-bench --quality` needs no GPU.
//!
//! For each input kind and length: 4 heads of T tokens (independent inputs; D = 128, values rounded to bf16), in
//! each 64 rows sampled evenly over the sequence (row i at position floor((i + 1/2) T / 64)). Each row's query block is searched as in a
//! prefill (k = 512, bq = 32, bk = 2, sink 4, window 128), then compared with dense causal attention in f64:
//! - recall: the share of the row's dense softmax probability that falls on the keys HiP attends;
//! - error: ||o_hip - o_dense|| / ||o_dense||, with o_hip the softmax over HiP's keys in f64 (the selection's
//!   error alone; the kernels' rounding adds the ~2.5e-3 the speed rows' check shows).
//!
//! Each row is measured three times: with the default search ("tree"), with the proposed FP8-scored one ("tree,
//! K8 scores", docs/ALGORITHM.md §9: the tree search's block scores taken on an E4M3 copy of the head's K at scale
//! amax/448; attention still over the exact K), and with scores on E4M3 copies of both Q and K ("tree, Q8K8
//! scores", §9: K as for K8, and the query rows the block's search scores at one scale per query block), each
//! FP8-scored search with the share of the default's selected blocks that it drops. Neither option is in the
//! library; this is their quality study.
//!
//! Input kinds (v is uniform in [-1, 1) in all of them):
//! - random: q and k uniform in [-1, 1), the speed rows' inputs. Logits spread little, so dense attention is
//!   nearly flat and recall is close to the attended fraction of the keys: the worst case for any sparse method.
//! - drift: keys follow a slow random walk along the sequence (correlation 0.999 per token, unit variance per
//!   coordinate) and each query is its own position's walk plus noise: a query's mass sits on keys whose state
//!   resembles its own, near it and wherever the walk comes back.
//! - rotary: q and k are one shared direction plus noise, with rotary position encoding (base 10000, as Llama)
//!   applied: nearby keys score higher, with the long-range oscillations RoPE brings.

use crate::{
    inputs::{mix64, Noise},
    report::{emit, json_text, len_label, write_json},
    workloads::{D, HEADLINE},
};
use hip_attn::spec::{e4m3_scale, e4m3_to_f32, quantize_e4m3, query_block_score, tree_search, BlockKeys};
use std::time::Instant;

/// Heads (independent inputs) and rows sampled per head, per (kind, length).
const HEADS: usize = 4;
const ROWS: usize = 64;
const TAG_QUALITY: u64 = 2000;
/// What every row measures (HEADLINE settings, one causal head).
pub const SETTINGS: &str = "k=512 bq=32 bk=2 sink 4 window 128, causal, D=128, bf16 values";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Random,
    Drift,
    Rotary,
}

impl Kind {
    pub(super) const ALL: [Kind; 3] = [Kind::Random, Kind::Drift, Kind::Rotary];

    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Random => "random",
            Kind::Drift => "drift",
            Kind::Rotary => "rotary",
        }
    }
}

/// One head's q, k, v as f32 values of bf16 numbers, token-major [T][D].
pub(super) struct Head {
    pub(super) q: Vec<f32>,
    pub(super) k: Vec<f32>,
    pub(super) v: Vec<f32>,
}

fn bf16_round(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// Standard normal from two uniforms of `noise` (Box-Muller), element i.
fn normal(noise: &Noise, i: usize) -> f32 {
    let u = |j: usize| (half::bf16::from_bits(noise.bf16(j)).to_f32() + 1.0) * 0.5;
    let (u1, u2) = (u(2 * i).max(1e-7), u(2 * i + 1));
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

fn uniform(noise: &Noise, i: usize) -> f32 {
    half::bf16::from_bits(noise.bf16(i)).to_f32()
}

/// Rotates pairs (2i, 2i+1) of `x` by position `p` times frequency 10000^(-2i/D) (rotary position encoding).
fn rope(x: &mut [f32], p: usize) {
    for i in 0..D / 2 {
        let theta = p as f64 * 10000f64.powf(-2.0 * i as f64 / D as f64);
        let (s, c) = theta.sin_cos();
        let (a, b) = (x[2 * i] as f64, x[2 * i + 1] as f64);
        x[2 * i] = (a * c - b * s) as f32;
        x[2 * i + 1] = (a * s + b * c) as f32;
    }
}

pub(super) fn make_head(kind: Kind, t: usize, seed: u64) -> Head {
    let nq = Noise::new(seed, TAG_QUALITY + 1);
    let nk = Noise::new(seed, TAG_QUALITY + 2);
    let nv = Noise::new(seed, TAG_QUALITY + 3);
    let (mut q, mut k) = (vec![0f32; t * D], vec![0f32; t * D]);
    let v: Vec<f32> = (0..t * D).map(|i| uniform(&nv, i)).collect();
    match kind {
        Kind::Random => {
            for i in 0..t * D {
                q[i] = uniform(&nq, i);
                k[i] = uniform(&nk, i);
            }
        }
        Kind::Drift => {
            let alpha = 0.999f32;
            let step = (1.0 - alpha * alpha).sqrt();
            let mut w: Vec<f32> = (0..D).map(|d| normal(&nk, d)).collect();
            for p in 0..t {
                for (d, wd) in w.iter_mut().enumerate() {
                    let i = p * D + d;
                    if p > 0 {
                        *wd = alpha * *wd + step * normal(&nk, D + i);
                    }
                    k[i] = *wd;
                    q[i] = *wd + 0.5 * normal(&nq, i);
                }
            }
        }
        Kind::Rotary => {
            let c: Vec<f32> = (0..D).map(|d| normal(&nv, t * D + d)).collect();
            for p in 0..t {
                let (qs, ks) = (&mut q[p * D..(p + 1) * D], &mut k[p * D..(p + 1) * D]);
                for d in 0..D {
                    qs[d] = c[d] + 0.7 * normal(&nq, p * D + d);
                    ks[d] = c[d] + 0.7 * normal(&nk, p * D + d);
                }
                rope(qs, p);
                rope(ks, p);
            }
        }
    }
    for x in q.iter_mut().chain(k.iter_mut()) {
        *x = bf16_round(*x);
    }
    Head { q, k, v }
}

/// The K copy that the FP8-scored search scores on (docs/ALGORITHM.md §9, "Scoring on an FP8 copy of K"): each
/// key rounded to E4M3 at the head's scale, kept as the E4M3 values themselves (the scale is left out of the
/// scores as the softmax scale is: one positive factor per head does not change an order).
pub(super) fn k8_copy(k: &[f32]) -> Vec<f32> {
    let scale = e4m3_scale(k.iter().copied());
    k.iter().map(|&x| e4m3_to_f32(quantize_e4m3(x, scale))).collect()
}

/// The sampled query rows of the block starting at `p0` (causal, Tq = Tk = t): the rows the block's search scores,
/// `p0, p0 + sq, ...` before `min(p0 + bq, t)`, flattened [rows][D].
fn sampled_rows(q: &[f32], t: usize, p0: usize) -> Vec<f32> {
    let hip = HEADLINE;
    (p0..(p0 + hip.bq).min(t)).step_by(hip.sq).flat_map(|qi| q[qi * D..(qi + 1) * D].iter().copied()).collect()
}

/// The Q copy that the Q8K8-scored search scores with (docs/ALGORITHM.md §9, "Scoring on FP8 copies of Q and K"):
/// the query block's sampled rows (`sampled_rows`) rounded to E4M3 at one scale for all of them, amax/448, kept as
/// the E4M3 values (the scale, one positive factor for every block the search compares, is left out).
pub(super) fn q8_block(rows: &[f32]) -> Vec<f32> {
    let scale = e4m3_scale(rows.iter().copied());
    rows.iter().map(|&x| e4m3_to_f32(quantize_e4m3(x, scale))).collect()
}

/// What one selection of one row keeps of dense attention.
#[derive(Clone, Copy, Debug)]
struct Kept {
    recall: f64,
    err: f64,
    attended: usize,
}

/// One row measured with the default search (scores on Q and K), with the K8-scored one (scores of Q on `k8`) and
/// with the Q8K8-scored one (scores of the block's `q8_block` on `k8`), and for each FP8-scored search the share of
/// the default's selected blocks that it does not select.
#[derive(Clone, Copy, Debug)]
struct RowResult {
    tree: Kept,
    k8: Kept,
    differ: f64,
    q8k8: Kept,
    q8k8_differ: f64,
}

/// Selection of the block whose sampled query rows are `rows` ([rows][D]) by the tree search over scores of those
/// rows on `keys8`.
fn select(rows: &[f32], keys8: &[f32], keys: &BlockKeys) -> Vec<u32> {
    let hip = HEADLINE;
    let score = |rep: usize| {
        let block = keys.block_range(rep);
        let key = |t: usize| &keys8[t * D..(t + 1) * D];
        rows.chunks_exact(D).map(|q| query_block_score(q, block, hip.sk, key)).fold(f32::NEG_INFINITY, f32::max)
    };
    tree_search(keys.nb, hip.kb(), score)
}

/// The share of `selected` (sorted) that `other` (sorted) does not hold; 0 when `selected` is empty.
fn share_dropped(selected: &[u32], other: &[u32]) -> f64 {
    if selected.is_empty() {
        0.0
    } else {
        selected.iter().filter(|b| other.binary_search(b).is_err()).count() as f64 / selected.len() as f64
    }
}

/// Recall and output error of query row `p` (causal, Tq = Tk = t), for the three searches; `k8` is
/// `k8_copy(&h.k)`. Attention itself always uses the exact Q and K: only the selection differs.
fn row_quality(h: &Head, k8: &[f32], t: usize, p: usize) -> RowResult {
    let hip = HEADLINE;
    let p0 = p / hip.bq * hip.bq;
    let keys = BlockKeys::new(p0, t, hip.sink, hip.window, hip.bk, true);
    let rows = sampled_rows(&h.q, t, p0);
    let selected = select(&rows, &h.k, &keys);
    let selected8 = select(&rows, k8, &keys);
    let selected88 = select(&q8_block(&rows), k8, &keys);

    // Dense attention and HiP's (the softmax over the attended keys alone), both from testkit's f64 oracle. The share
    // of dense probability mass on HiP's keys is HiP's denominator over dense's, on a common scale.
    let scale = 1.0 / (D as f64).sqrt();
    let qrow = &h.q[p * D..(p + 1) * D];
    let row = |j: usize| (&h.k[j * D..(j + 1) * D], &h.v[j * D..(j + 1) * D]);
    let dense = testkit::attend(qrow, scale, (0..=p).map(row));
    let kept = |selected: &[u32]| {
        let mut attended = vec![false; p + 1];
        keys.for_each_key(p, true, selected, |j| attended[j] = true);
        let sparse = testkit::attend(qrow, scale, (0..=p).filter(|&j| attended[j]).map(row));
        let recall = sparse.z * (sparse.max - dense.max).exp() / dense.z;
        let (mut num, mut den) = (0f64, 0f64);
        for (a, b) in sparse.o.iter().zip(&dense.o) {
            num += (a - b) * (a - b);
            den += b * b;
        }
        Kept { recall, err: (num / den.max(1e-300)).sqrt(), attended: attended.iter().filter(|&&x| x).count() }
    };
    RowResult {
        tree: kept(&selected),
        k8: kept(&selected8),
        differ: share_dropped(&selected, &selected8),
        q8k8: kept(&selected88),
        q8k8_differ: share_dropped(&selected, &selected88),
    }
}

/// One row of the table: the statistics of one search over one (input kind, length).
#[derive(Clone, Debug, PartialEq)]
pub struct SearchStats {
    pub recall_mean: f64,
    pub recall_p5: f64,
    pub err_mean: f64,
    pub err_p95: f64,
    pub attended_mean: f64,
}

impl SearchStats {
    fn of(kept: impl Iterator<Item = Kept> + Clone) -> SearchStats {
        let mut recall: Vec<f64> = kept.clone().map(|r| r.recall).collect();
        let mut err: Vec<f64> = kept.clone().map(|r| r.err).collect();
        let n = recall.len() as f64;
        SearchStats {
            recall_mean: recall.iter().sum::<f64>() / n,
            recall_p5: quantile(&mut recall, 0.05),
            err_mean: err.iter().sum::<f64>() / n,
            err_p95: quantile(&mut err, 0.95),
            attended_mean: kept.map(|r| r.attended as f64).sum::<f64>() / n,
        }
    }
}

pub struct QualityRow {
    pub kind: &'static str,
    pub t: usize,
    pub rows: usize,
    /// The default search (docs/ALGORITHM.md §4, scores on K).
    pub tree: SearchStats,
    /// The FP8-scored search ("tree, K8 scores"), on the same rows.
    pub k8: SearchStats,
    /// Mean over rows of the share of the default's selected blocks that the FP8-scored search does not select
    /// (rows whose domain is empty count as 0).
    pub k8_differ_mean: f64,
    /// Share of rows whose two selections differ at all.
    pub k8_rows_differ: f64,
    /// The search scored on FP8 copies of Q and K ("tree, Q8K8 scores"), on the same rows.
    pub q8k8: SearchStats,
    /// As `k8_differ_mean`, for the Q8K8-scored search.
    pub q8k8_differ_mean: f64,
    /// As `k8_rows_differ`, for the Q8K8-scored search.
    pub q8k8_rows_differ: f64,
}

/// Value at quantile `q` (nearest rank) of `v`.
pub(super) fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

fn measure(kind: Kind, t: usize, seed: u64) -> QualityRow {
    let heads: Vec<(Head, Vec<f32>)> = (0..HEADS as u64)
        .map(|i| {
            let h = make_head(kind, t, mix64(seed ^ i));
            let k8 = k8_copy(&h.k);
            (h, k8)
        })
        .collect();
    let positions: Vec<usize> = (0..ROWS).map(|i| ((2 * i + 1) * t) / (2 * ROWS)).collect();
    let work: Vec<(usize, usize)> = (0..HEADS).flat_map(|h| positions.iter().map(move |&p| (h, p))).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(work.len());
    let results: Vec<RowResult> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let (heads, work) = (&heads, &work);
                s.spawn(move || {
                    work.iter()
                        .skip(w)
                        .step_by(threads)
                        .map(|&(h, p)| row_quality(&heads[h].0, &heads[h].1, t, p))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // (the statistics below do not depend on the order of the rows)
        handles.into_iter().flat_map(|hd| hd.join().expect("quality worker panicked")).collect()
    });
    let n = results.len() as f64;
    QualityRow {
        kind: kind.name(),
        t,
        rows: results.len(),
        tree: SearchStats::of(results.iter().map(|r| r.tree)),
        k8: SearchStats::of(results.iter().map(|r| r.k8)),
        k8_differ_mean: results.iter().map(|r| r.differ).sum::<f64>() / n,
        k8_rows_differ: results.iter().filter(|r| r.differ > 0.0).count() as f64 / n,
        q8k8: SearchStats::of(results.iter().map(|r| r.q8k8)),
        q8k8_differ_mean: results.iter().map(|r| r.q8k8_differ).sum::<f64>() / n,
        q8k8_rows_differ: results.iter().filter(|r| r.q8k8_differ > 0.0).count() as f64 / n,
    }
}

/// Every (kind, length) row, in table order; `progress` hears about each as it starts.
pub fn run(lengths: &[usize], seed: u64, mut progress: impl FnMut(&str)) -> Vec<QualityRow> {
    let mut out = Vec::new();
    for &t in lengths {
        for kind in Kind::ALL {
            progress(&format!("quality/{}/{}", kind.name(), len_label(t)));
            out.push(measure(kind, t, seed));
        }
    }
    out
}

pub fn markdown(rows: &[QualityRow]) -> String {
    let mut s = String::from(
        "| input | length | search | rows | recall mean | recall p5 | output rel L2 mean | output rel L2 p95 | \
         keys attended (mean) | blocks not in tree's selection (mean; rows with any) |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        for (search, st, differ) in [
            ("tree", &r.tree, "-".to_string()),
            ("tree, K8 scores", &r.k8, format!("{:.1}%; {:.0}%", 100.0 * r.k8_differ_mean, 100.0 * r.k8_rows_differ)),
            (
                "tree, Q8K8 scores",
                &r.q8k8,
                format!("{:.1}%; {:.0}%", 100.0 * r.q8k8_differ_mean, 100.0 * r.q8k8_rows_differ),
            ),
        ] {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.3} | {:.3} | {:.2e} | {:.2e} | {:.0} | {} |\n",
                r.kind,
                len_label(r.t),
                search,
                r.rows,
                st.recall_mean,
                st.recall_p5,
                st.err_mean,
                st.err_p95,
                st.attended_mean,
                differ
            ));
        }
    }
    s
}

/// The JSON report of `--quality` (keys as in bench-results/*-quality.json): the default search's figures under
/// the keys they always had, the K8-scored search's under `k8_`-prefixed ones and the Q8K8-scored search's under
/// `q8k8_`-prefixed ones.
pub fn json(rows: &[QualityRow], seed: u64) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "input": r.kind, "length": r.t, "rows": r.rows, "recall_mean": r.tree.recall_mean,
                "recall_p5": r.tree.recall_p5, "rel_l2_mean": r.tree.err_mean, "rel_l2_p95": r.tree.err_p95,
                "attended_mean": r.tree.attended_mean,
                "k8_recall_mean": r.k8.recall_mean, "k8_recall_p5": r.k8.recall_p5,
                "k8_rel_l2_mean": r.k8.err_mean, "k8_rel_l2_p95": r.k8.err_p95,
                "k8_attended_mean": r.k8.attended_mean, "k8_blocks_differ_mean": r.k8_differ_mean,
                "k8_rows_differ": r.k8_rows_differ,
                "q8k8_recall_mean": r.q8k8.recall_mean, "q8k8_recall_p5": r.q8k8.recall_p5,
                "q8k8_rel_l2_mean": r.q8k8.err_mean, "q8k8_rel_l2_p95": r.q8k8.err_p95,
                "q8k8_attended_mean": r.q8k8.attended_mean, "q8k8_blocks_differ_mean": r.q8k8_differ_mean,
                "q8k8_rows_differ": r.q8k8_rows_differ,
            })
        })
        .collect();
    serde_json::json!({"kind": "hip-bench quality", "seed": seed, "settings": SETTINGS, "rows": rows})
}

/// `--quality`: the quality table on stdout, JSON to --json PATH or hip-quality.json (and $OUT/hip-quality.json).
pub(super) fn run_mode(args: &crate::cli::Args) -> i32 {
    let k = 1024;
    let lengths: &[usize] = if args.quick { &[8 * k] } else { &[8 * k, 32 * k, 128 * k] };
    let start = Instant::now();
    let rows = run(lengths, args.seed, |id| elog!("[{:6.1} s] {id}", start.elapsed().as_secs_f64()));
    let text = format!(
        "## hip-bench quality\n\n- {}; seed {}; command `{}`\n\n{}",
        SETTINGS,
        args.seed,
        args.command_line,
        markdown(&rows)
    );
    let shown = emit(&text);
    let path = args.json.clone().unwrap_or_else(|| "hip-quality.json".into());
    let written = write_json(&path, "hip-quality.json", &json_text(&json(&rows, args.seed)));
    if shown && written {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_attended_means_recall_one_and_no_error_for_every_search() {
        // Rows in the first window attend every key, and up to p0 = 576 the budget covers every block of the
        // domain (NB <= Kb = 256): HiP is dense attention there, whatever the scores.
        let t = 1024;
        let h = make_head(Kind::Rotary, t, 7);
        let k8 = k8_copy(&h.k);
        for p in [0, 5, 100, 600] {
            let r = row_quality(&h, &k8, t, p);
            for (what, kept) in [("tree", r.tree), ("k8", r.k8), ("q8k8", r.q8k8)] {
                assert!((kept.recall - 1.0).abs() < 1e-12, "{what} p {p}: recall {}", kept.recall);
                assert!(kept.err < 1e-12, "{what} p {p}: error {}", kept.err);
                assert_eq!(kept.attended, p + 1, "{what} p {p}");
            }
            assert_eq!(r.differ, 0.0, "p {p}");
            assert_eq!(r.q8k8_differ, 0.0, "p {p}");
        }
    }

    #[test]
    fn k8_copy_is_on_the_e4m3_grid_with_the_largest_key_at_448() {
        let h = make_head(Kind::Drift, 256, 5);
        let k8 = k8_copy(&h.k);
        let amax = h.k.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert_eq!(k8.iter().fold(0f32, |m, x| m.max(x.abs())), 448.0);
        let scale = amax / 448.0;
        for (&x, &y) in h.k.iter().zip(&k8) {
            assert_eq!(e4m3_to_f32(hip_attn::spec::f32_to_e4m3(y)), y, "{y} is an E4M3 value");
            // E4M3 keeps 3 mantissa bits: within 1/16 relative, or half the smallest subnormal step.
            assert!((y * scale - x).abs() <= x.abs() / 16.0 + scale * 2f32.powi(-10), "{x} -> {y} * {scale}");
        }
    }

    #[test]
    fn q8_block_is_the_sampled_rows_on_the_e4m3_grid_with_the_largest_element_at_448() {
        let t = 256;
        let h = make_head(Kind::Rotary, t, 5);
        for p0 in [0, 32, 224] {
            let rows = sampled_rows(&h.q, t, p0);
            assert_eq!(rows.len(), HEADLINE.bq.div_ceil(HEADLINE.sq) * D, "p0 {p0}");
            assert_eq!(&rows[..D], &h.q[p0 * D..(p0 + 1) * D], "p0 {p0}: the first sampled row is the block's first");
            let q8 = q8_block(&rows);
            let amax = rows.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert_eq!(q8.iter().fold(0f32, |m, x| m.max(x.abs())), 448.0, "p0 {p0}");
            let scale = amax / 448.0;
            for (&x, &y) in rows.iter().zip(&q8) {
                assert_eq!(e4m3_to_f32(hip_attn::spec::f32_to_e4m3(y)), y, "{y} is an E4M3 value");
                assert!((y * scale - x).abs() <= x.abs() / 16.0 + scale * 2f32.powi(-10), "{x} -> {y} * {scale}");
            }
        }
        // A block of zero queries: the scale falls back to 1 and the copy is zero, as for K.
        assert!(q8_block(&[0.0; 4 * D]).iter().all(|&x| x == 0.0));
    }

    #[test]
    fn structured_inputs_keep_more_mass_than_random_ones() {
        let t = 4096;
        let r = measure(Kind::Random, t, 3);
        let d = measure(Kind::Drift, t, 3);
        assert!(r.tree.recall_mean > 0.0 && r.tree.recall_mean < 1.0);
        assert!(
            d.tree.recall_mean > r.tree.recall_mean,
            "drift {} vs random {}",
            d.tree.recall_mean,
            r.tree.recall_mean
        );
        assert!(r.tree.attended_mean <= (HEADLINE.k + HEADLINE.sink + HEADLINE.window + HEADLINE.bq) as f64);
        // The FP8-scored search on the same rows: its selections do differ (so the K8 copy is what it scores),
        // yet it keeps nearly the same mass.
        for (what, q) in [("random", &r), ("drift", &d)] {
            assert!(q.k8_rows_differ > 0.0, "{what}: no selection differs");
            assert!(q.k8_differ_mean > 0.0 && q.k8_differ_mean < 0.1, "{what}: {} of blocks differ", q.k8_differ_mean);
            let gap = (q.k8.recall_mean - q.tree.recall_mean).abs();
            assert!(gap < 0.02, "{what}: recall {} (K8) vs {} (tree)", q.k8.recall_mean, q.tree.recall_mean);
            // Quantizing Q too: more selections differ, the kept mass stays as close.
            assert!(q.q8k8_rows_differ > 0.0, "{what}: no Q8K8 selection differs");
            assert!(
                q.q8k8_differ_mean > 0.0 && q.q8k8_differ_mean < 0.1,
                "{what}: {} of blocks differ",
                q.q8k8_differ_mean
            );
            let gap = (q.q8k8.recall_mean - q.tree.recall_mean).abs();
            assert!(gap < 0.02, "{what}: recall {} (Q8K8) vs {} (tree)", q.q8k8.recall_mean, q.tree.recall_mean);
        }
    }

    /// One sink key far larger than the rest (as a model's first-token keys often are) sets the copy's scale, so
    /// the other keys land low in E4M3's range. Its exponent keeps their relative precision while they stay above
    /// the subnormals (2^-6 * amax / 448): up to an outlier ~1e4 times the typical key the K8 selection differs
    /// from the default's no more than without it (about 1%; at 1e5 it reaches about 5%).
    #[test]
    fn an_outlier_sink_key_sets_the_scale_without_costing_the_selection() {
        let t = 4096;
        for factor in [1.0f32, 1e2, 1e3, 1e4] {
            let mut h = make_head(Kind::Drift, t, 11);
            for x in &mut h.k[..D] {
                *x *= factor;
            }
            let k8 = k8_copy(&h.k);
            let rows: Vec<RowResult> = (0..32).map(|i| row_quality(&h, &k8, t, (2 * i + 1) * t / 64)).collect();
            let mean = |f: &dyn Fn(&RowResult) -> f64| rows.iter().map(f).sum::<f64>() / rows.len() as f64;
            let (tree, k8r, differ) = (mean(&|r| r.tree.recall), mean(&|r| r.k8.recall), mean(&|r| r.differ));
            assert!(differ < 0.02, "outlier x{factor}: {differ} of the blocks differ");
            assert!((tree - k8r).abs() < 0.005, "outlier x{factor}: recall {k8r} (K8) vs {tree} (tree)");
        }
    }

    /// One query element far larger than the rest (an outlier channel in one query of the block) sets the scale of
    /// the whole block's Q copy, so the block's other queries land low in E4M3's range: their typical elements
    /// (about 1) fall among the subnormals (below 2^-6 * amax / 448) from a factor of about 3e4. The block score is a max over the block's queries, and the
    /// outlier query's scores, exact to E4M3's 1/16 at the top of the range, then decide it: from 1e2 on the
    /// outlier changes the default's selection itself (recall falls from 0.988 to 0.86 on these rows), and up to
    /// 1e5 the Q8K8 selection keeps the default's mass as the K8 one does and differs from it hardly more.
    #[test]
    fn an_outlier_query_element_sets_the_block_scale_without_costing_the_selection() {
        let t = 4096;
        for factor in [1.0f32, 1e1, 1e2, 1e3, 1e4, 1e5] {
            let mut h = make_head(Kind::Drift, t, 11);
            let k8 = k8_copy(&h.k);
            let positions: Vec<usize> = (0..32).map(|i| (2 * i + 1) * t / 64).collect();
            for &p in &positions {
                // The measured row is its block's first; the outlier sits in the block's second query.
                assert_eq!(p % HEADLINE.bq, 0);
                h.q[(p + 1) * D + 7] *= factor;
            }
            let rows: Vec<RowResult> = positions.iter().map(|&p| row_quality(&h, &k8, t, p)).collect();
            let mean = |f: &dyn Fn(&RowResult) -> f64| rows.iter().map(f).sum::<f64>() / rows.len() as f64;
            let (tree, q8r, differ) = (mean(&|r| r.tree.recall), mean(&|r| r.q8k8.recall), mean(&|r| r.q8k8_differ));
            let k8_differ = mean(&|r| r.differ);
            assert!(differ < 0.025, "outlier x{factor}: {differ} of the blocks differ");
            assert!(differ - k8_differ < 0.005, "outlier x{factor}: {differ} (Q8K8) vs {k8_differ} (K8) differ");
            assert!((tree - q8r).abs() < 0.005, "outlier x{factor}: recall {q8r} (Q8K8) vs {tree} (tree)");
        }
    }
}

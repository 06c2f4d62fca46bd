//! Correctness in the same run: sampled units of the device's output recomputed by the CPU backend, with the
//! f64 reference and search replay of the test kit where masks differ; and `--self-test`, the same code with
//! the CPU backend standing in for the device.

use hip_attn::config::{Config, Selection};
use hip_attn::plan::{self, PrefillWorkspace};
use hip_attn::spec::BlockKeys;
use hip_attn::{hip_decode_step, hip_kv_cache, hip_kv_layout, hip_prefill};
use std::fmt::Write as _;

use crate::{
    api::{check, decode_args, paged_kv, prefill_args, validated, Ctx, Fail, Res},
    cli::Args,
    inputs::{
        par_rows, pool_rows, shuffled_pages, to_f32, token_rows, HostBuf, Noise, TAG_CACHE_K, TAG_CACHE_V,
        TAG_DECODE_Q, TAG_K, TAG_Q, TAG_V,
    },
    workloads::{Backend, Hip, Shape, CACHED_REFRESH, D, HEADLINE, PAGE, SET_SPACING},
};

/// Output relative L2 tolerance for bf16 (docs/ALGORITHM.md §10).
pub(crate) const TOLERANCE: f64 = 1e-2;
/// Score gap under which two implementations may legitimately select differently. A score is a dot product of
/// D = 128 bf16 pairs in [-1, 1) (exact products, f32 sums of magnitude ~10): summation order changes it by about
/// 1e-5, at most a few 1e-4; 1e-3 leaves a margin. (The test suite's 1e-4*D = 0.0128 is looser: with Kb = 256 the
/// gap at a cut is below it in most iterations, which would call any difference a tie.)
pub(crate) const TIE_EPS: f64 = 1e-3;
/// The near-tie gap of the FP8-scored search (--fp8-search), relative to the largest block score: the E4M3 MMA's
/// accumulation is coarser than f32's (tests/gpu.rs uses the same).
pub(crate) const FP8_TIE_REL: f64 = 1e-3;
// ---------------------------------------------------------------------------------------------------------------
// Correctness check against the CPU backend
// ---------------------------------------------------------------------------------------------------------------

/// Squared-error sums of one comparison.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cmp {
    pub(crate) num: f64,
    pub(crate) den: f64,
    pub(crate) nonfinite: usize,
}

impl Cmp {
    pub(crate) fn add(&mut self, want: &[f32], got: &[f32]) {
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
pub(crate) struct UnitOutcome {
    pub(crate) cmp: Vec<Cmp>,
    pub(crate) mask_differs: bool,
    /// The masks differ and the f64 replay of the search meets a score gap below TIE_EPS at some cut: a
    /// legitimate near-tie (likely; the replay cannot tell which cut the device decided differently).
    pub(crate) tie: bool,
}

/// What a row reports about its check.
#[derive(Clone, Debug)]
pub(crate) struct CheckResult {
    pub(crate) rel_l2: f64,
    pub(crate) units: usize,
    pub(crate) ties: usize,
    /// Units whose masks differ without a near-tie. More than half of the units fail the row: a search that
    /// disagrees everywhere is wrong even if each output is consistent with its own mask.
    pub(crate) mask_mismatches: usize,
    pub(crate) nonfinite: usize,
    pub(crate) what: String,
}

impl CheckResult {
    pub(crate) fn from_units(units: &[UnitOutcome], which: usize, what: String) -> CheckResult {
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
    pub(crate) fn pass(&self) -> bool {
        self.rel_l2 < TOLERANCE && 2 * self.mask_mismatches <= self.units
    }
    pub(crate) fn cell(&self) -> String {
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

/// f64 branch score (testkit's replay): max over the (already sampled) queries and the keys of representative block
/// `rep` taken with stride sk. `keys` is one kv head's [tokens, D] rows.
pub(crate) fn score_f64(keys_geo: &BlockKeys, rep: usize, sk: usize, queries: &[Vec<f32>], keys: &[f32]) -> f64 {
    testkit::branch_score(queries.len(), keys_geo.block_range(rep), sk, |i, t| {
        testkit::dot(&queries[i], &keys[t * D..(t + 1) * D])
    })
}

/// Whether differing masks are a near-tie of the selection `sel` for the block whose first query sits at `p0`: the
/// f64 replay of the search meets a score gap below TIE_EPS at some cut.
pub(crate) fn is_near_tie(hip: &Hip, sel: Selection, p0: usize, tk: usize, queries: &[Vec<f32>], keys: &[f32]) -> bool {
    let geo = BlockKeys::new(p0, tk, hip.sink, hip.window, hip.bk, true);
    let score = |rep| score_f64(&geo, rep, hip.sk, queries, keys);
    let margin = match sel {
        Selection::Tree => testkit::tree_replay(geo.nb, hip.kb(), score).1,
        Selection::Scan => testkit::scan_margin(geo.nb, hip.kb(), score),
    };
    margin < TIE_EPS
}

/// Exact f64 attention (docs/ALGORITHM.md §6, testkit's oracle) of query `q` at position `p` over the keys that `geo`
/// and the `selected` blocks give it, with the default scale 1/sqrt(D). `keys` and `values` are one kv head's
/// [tokens, D].
pub(crate) fn attend_f64(
    geo: &BlockKeys,
    p: usize,
    selected: &[i32],
    q: &[f32],
    keys: &[f32],
    values: &[f32],
) -> Vec<f32> {
    let sel: Vec<u32> = selected.iter().map(|&x| x as u32).collect();
    let mut attended = Vec::new();
    geo.for_each_key(p, true, &sel, |j| attended.push(j));
    let rows = attended.iter().map(|&j| (&keys[j * D..(j + 1) * D], &values[j * D..(j + 1) * D]));
    testkit::attend(q, 1.0 / (D as f64).sqrt(), rows).o.iter().map(|&a| a as f32).collect()
}

/// Everything one prefill check unit needs: which block of which mask head, and what the device produced.
pub(crate) struct PrefillUnit {
    pub(crate) mh: usize,
    pub(crate) j: usize,
    /// Device output rows of the block, heads of the mask only: [nq][heads_per_mask][D].
    pub(crate) gpu_o: Vec<f32>,
    /// Device mask of (block j, mask head mh): selected block indices.
    pub(crate) gpu_mask: Vec<i32>,
    /// Compare with the f64 reference over the device's mask even when the masks agree (--self-test only).
    pub(crate) force_reference: bool,
}

/// Offsets into a prefill's outputs for unit (mh, j) of a batch-1 prefill of `t` tokens: the byte offset and
/// element count of the block's O rows (all heads), and the byte offsets of its mask count and indices in the
/// workspace (slot j: cu_seqlens_q[0] / bq + 0 + j).
pub(crate) fn prefill_unit_spans(
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
    let (cnt_at, idx_at) = layout.mask_offsets(cfg, PrefillWorkspace::slot(cfg, 0, 0, j), mh);
    (p0 * shape.hq * D * 2, nq * shape.hq * D, cnt_at, idx_at)
}

/// The heads of mask head `mh` from full rows [nq][hq][D] (bf16 bits): [nq][heads_per_mask][D] as f32.
pub(crate) fn unit_heads(shape: &Shape, rows: &[u16], nq: usize, mh: usize) -> Vec<f32> {
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
pub(crate) fn cpu_prefill_unit(
    shape: Shape,
    hip: Hip,
    t: usize,
    noise: [Noise; 3],
    unit: &PrefillUnit,
) -> Res<UnitOutcome> {
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
    let reference = cpu_mask != unit.gpu_mask.as_slice() || unit.force_reference;
    // The unit's chunked prefill scales K over its key prefix, the whole prefill over all t keys: with the FP8-scored
    // search the mask is judged against the definition replayed at the whole sequence's scale instead.
    let fp8 = hip.fp8_search && sel == Selection::Tree;
    if reference || fp8 {
        let qf = to_f32(q.u16s());
        // The block's sampled rows, the rows its search scores.
        let queries: Vec<Vec<f32>> = (0..nh)
            .flat_map(|hh| (0..nq).step_by(hip.sq).map(move |i| (i * nh + hh) * D))
            .map(|at| qf[at..at + D].to_vec())
            .collect();
        let geo = BlockKeys::new(p0, end, hip.sink, hip.window, hip.bk, true);
        if reference {
            out.mask_differs = cpu_mask != unit.gpu_mask.as_slice();
            let (kf, vf) = (to_f32(k.u16s()), to_f32(v.u16s()));
            out.tie = is_near_tie(&hip, sel, p0, end, &queries, &kf);
            for r in 0..nq * nh {
                let row = attend_f64(&geo, p0 + r / nh, &unit.gpu_mask, &qf[r * D..(r + 1) * D], &kf, &vf);
                want[r * D..(r + 1) * D].copy_from_slice(&row);
            }
        }
        if fp8 {
            // (the output was checked over the device's mask above whenever the unit's own mask differs)
            let mut all = HostBuf::new(t * D * 2, 0);
            par_rows(all.u16s_mut(), D, |tok, dst| noise[1].fill((tok * shape.hkv + g) * D, dst));
            let k8 = crate::quality::k8_copy(&to_f32(all.u16s()));
            let keys = &k8[..end * D];
            let queries: Vec<Vec<f32>> =
                crate::quality::q8_block(&queries.concat()).chunks(D).map(<[f32]>::to_vec).collect();
            let score = |rep| score_f64(&geo, rep, hip.sk, &queries, keys);
            let (expected, margin) = testkit::tree_replay(geo.nb, hip.kb(), score);
            // The E4M3 MMA accumulates with less precision than f64: a gap relative to the scores' size.
            let top = (0..geo.nb).map(|r| score(r).abs()).fold(0f64, f64::max);
            out.mask_differs = expected != unit.gpu_mask;
            out.tie = out.mask_differs && margin < FP8_TIE_REL * top;
        }
    }
    let mut c = Cmp::default();
    c.add(&want, &unit.gpu_o);
    out.cmp.push(c);
    Ok(out)
}

/// Everything one decode check unit needs.
pub(crate) struct DecodeUnit {
    pub(crate) b: usize,
    pub(crate) mh: usize,
    /// Device outputs of the unit's heads [heads_per_mask][D]: eager step, then graph replay (when it ran).
    pub(crate) gpu_o: Vec<Vec<f32>>,
    /// Device mask-state record of (b, mh): e and the selected blocks.
    pub(crate) gpu_e: usize,
    pub(crate) gpu_blocks: Vec<i32>,
    /// As in PrefillUnit (--self-test only).
    pub(crate) force_reference: bool,
}

/// The selected blocks of a mask-state record (header: magic, step, e, count; then the blocks).
pub(crate) fn record_blocks(rec: &[i32]) -> Vec<i32> {
    let count = rec[plan::STATE_COUNT_IDX].clamp(0, (rec.len() - plan::STATE_HEADER) as i32) as usize;
    rec[plan::STATE_HEADER..plan::STATE_HEADER + count].to_vec()
}

/// Where a decode cache's inputs come from: generators and the logical layout [batch, cap, hkv, D].
#[derive(Clone, Copy)]
pub(crate) struct CacheSource {
    pub(crate) k: Noise,
    pub(crate) v: Noise,
    pub(crate) cap: usize,
}

/// Recomputes one decode unit on the CPU backend: sequence b of `len` keys, the q heads of mask head mh and their
/// kv head, from a zeroed mask state (so the CPU searches at p = len - 1, as the device's first step did).
pub(crate) fn cpu_decode_unit(
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
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> Res<R> + Sync) -> Res<Vec<R>> {
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

pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// The check harness with the CPU backend standing in for the device: a full CPU prefill and paged CPU decode
/// provide the "device" outputs, then the same unit code recomputes sampled units. Everything must match exactly.
pub(crate) fn self_test(args: &Args) -> i32 {
    let mut failed = false;
    // `loose`: outputs within bf16 rounding of the f64 reference instead of equal (the FP8-scored search: a unit's
    // chunked prefill scales K over its key prefix, so where its own mask differs the output is the f64 reference
    // over the "device" mask); masks must still equal the definition's.
    let mut report = |what: &str, loose: bool, r: Res<Vec<UnitOutcome>>| match r {
        Ok(units) => {
            let c = CheckResult::from_units(&units, 0, String::new());
            let close = |x: &Cmp| if loose { x.num <= 2.5e-5 * x.den } else { x.num == 0.0 };
            let exact = (c.rel_l2 == 0.0 || loose && c.rel_l2 < 5e-3)
                && units.iter().all(|u| !u.mask_differs && u.cmp.iter().all(|x| close(x) && x.nonfinite == 0));
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
        report(&format!("prefill {}", shape.name), false, self_test_prefill(shape, hip, 1000, args.seed));
        report(&format!("decode {}", shape.name), false, self_test_decode(shape, hip, args.seed));
    }
    let scan = crate::scan::SELF_TEST_HIP;
    for shape in &small[..2] {
        report(&format!("prefill {} SCAN tail", shape.name), false, self_test_prefill(*shape, scan, 1000, args.seed));
        report(&format!("decode {} SCAN", shape.name), false, self_test_decode(*shape, scan, args.seed));
    }
    // --fp8-search's check (masks against the FP8 definition at the whole sequence's K scale).
    let fp8 = Hip { fp8_search: true, ..hip };
    for shape in &small {
        report(&format!("prefill {} FP8 search", shape.name), true, self_test_prefill(*shape, fp8, 1000, args.seed));
    }
    if failed {
        1
    } else {
        0
    }
}

pub(crate) fn self_test_prefill(shape: Shape, hip: Hip, t: usize, seed: u64) -> Res<Vec<UnitOutcome>> {
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

pub(crate) fn self_test_decode(shape: Shape, hip: Hip, seed: u64) -> Res<Vec<UnitOutcome>> {
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

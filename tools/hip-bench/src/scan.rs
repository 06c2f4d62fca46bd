//! `--scan`: the speed rows of SCAN selection (docs/ALGORITHM.md, selection modes) and the baselines that
//! docs/BENCHMARK-PROTOCOL.md's SCAN targets are stated against, measured in the same run:
//! - `decode-dense/<shape>/<T>`: a dense decode step through the library's own decode kernels: window >= T, so
//!   the search domain is empty and every key is in the local set; the step reads all of K and V once (split-K
//!   over the whole key list, as FlashDecoding does) plus the mask-state check every cached step makes.
//! - `decode-scan-every/<shape>/<T>`: refresh 1 with SCAN, every timed step scans (reads all of the domain's K).
//! - `decode-scan-r8/<shape>/<T>`: refresh 8 with SCAN. Every step is timed alone, the input sets rotating as in
//!   every decode row, and each set's timed steps are whole refresh cycles (1 scanning step, then 7 that reuse its
//!   mask); the row's sample is the mean step time of one cycle, its median over all cycles is the row's median.
//!   The notes give the scanning and the cached steps' medians apart.
//! - batch 16 at 32k (`-b16`), the same three modes.
//! - `prefill-tail0/<shape>/128k` and `prefill-tail1024/<shape>/128k`: the headline prefill, then the same with
//!   `prefill_scan_tail = 1024` (the query blocks holding the last 1024 queries select by SCAN), one after the
//!   other.
//!
//! The ratios the protocol (docs/) sets targets for (single SCAN step / dense step, refresh-8 step / dense step,
//! prefill with the tail / without) are printed after the table and written to the JSON under "ratios", from the graph rows.

use crate::{
    api::Res,
    report::{fmt_ms, len_label, ratio_json, stats, Bound, Header, Ratio, Row, Stats},
    workloads::{
        block_sets, count_decode, DecodeJob, DecodeMode, DecodeModeJob, PrefillJob, Shape, Target, Work, D, HEADLINE,
        K, M,
    },
};
use hip_attn::plan;
use std::fmt::Write as _;

/// The header line of a `--scan` run.
pub const SETTINGS: &str = "SCAN rows: headline settings with decode_selection SCAN at refresh 1 (every step) or 8 \
                            (per step over whole cycles of 1 SCAN + 7 cached steps); dense decode: the same kernels \
                            with window >= T; prefill-tail1024: prefill_scan_tail 1024";

/// The SCAN tail of the prefill rows (docs/BENCHMARK-PROTOCOL.md).
const TAIL: usize = 1024;

/// `--self-test`'s SCAN settings (1000 tokens): the last 4 query blocks select by SCAN, the others by TREE, and
/// the domains are large enough (up to 479 blocks against Kb = 32) for the two to differ.
pub const SELF_TEST_HIP: super::Hip =
    super::Hip { k: 64, window: 32, sel: hip_attn::config::Selection::Scan, scan_tail: 100, ..HEADLINE };

pub fn prefill_jobs(shapes: &[Shape]) -> Vec<PrefillJob> {
    let t = 128 * K;
    let mut jobs = Vec::new();
    for shape in shapes {
        for tail in [0, TAIL] {
            jobs.push(PrefillJob {
                id: format!("prefill-tail{tail}/{}/{}", shape.name, len_label(t)),
                work: if tail == 0 {
                    "prefill (TREE only; beside the SCAN tail)".into()
                } else {
                    format!("prefill, SCAN for the last {tail} queries")
                },
                shape: *shape,
                hip: super::Hip { scan_tail: tail, ..HEADLINE },
                t,
                target: None,
                units: 6,
            });
        }
    }
    jobs
}

pub fn decode_jobs(shapes: &[Shape]) -> Vec<DecodeJob> {
    let mut jobs = Vec::new();
    for shape in shapes {
        let mha = shape.name == "MHA-32";
        let mode = |mode, kind: &str, t, target: Option<f64>| DecodeModeJob {
            mode,
            id: format!("{kind}/{}/{}", shape.name, len_label(t)),
            target: target.filter(|_| mha).map(Target::MaxMs),
        };
        // docs/BENCHMARK-PROTOCOL.md: refresh 8, mean per step (graph): 128k <= 55 us, 1M <= 300 us.
        for (t, r8) in [(128 * K, 0.055), (M, 0.300)] {
            jobs.push(DecodeJob {
                shape: *shape,
                t,
                batch: 1,
                modes: vec![
                    mode(DecodeMode::Dense, "decode-dense", t, None),
                    mode(DecodeMode::ScanEveryStep, "decode-scan-every", t, None),
                    mode(DecodeMode::ScanRefresh8, "decode-scan-r8", t, Some(r8)),
                ],
            });
        }
        let t = 32 * K;
        jobs.push(DecodeJob {
            shape: *shape,
            t,
            batch: 16,
            modes: vec![
                mode(DecodeMode::Dense, "decode-dense-b16", t, None),
                mode(DecodeMode::ScanEveryStep, "decode-scan-every-b16", t, None),
                mode(DecodeMode::ScanRefresh8, "decode-scan-r8-b16", t, None),
            ],
        });
    }
    jobs
}

/// Counted work of one step of `mode` (see `count_decode`), for every decode mode.
pub fn decode_work(
    shape: &Shape,
    mode: DecodeMode,
    len: usize,
    batch: usize,
    cap: usize,
    dev: &plan::DeviceTraits,
) -> Work {
    let hip = mode.hip(cap);
    match mode {
        DecodeMode::Cached | DecodeMode::Dense => count_decode(shape, &hip, len, batch, false, cap, dev),
        DecodeMode::SearchEveryStep | DecodeMode::SearchEveryStepK2048 => {
            count_decode(shape, &hip, len, batch, true, cap, dev)
        }
        DecodeMode::ScanEveryStep => count_decode_scan(shape, &hip, len, batch, cap, dev),
        DecodeMode::ScanRefresh8 => {
            let n = hip.refresh as f64;
            let scan = count_decode_scan(shape, &hip, len, batch, cap, dev);
            let cached = count_decode(shape, &hip, len, batch, false, cap, dev);
            Work {
                flops: (scan.flops + (n - 1.0) * cached.flops) / n,
                bytes: (scan.bytes + (n - 1.0) * cached.bytes) / n,
            }
        }
    }
}

/// Counted work of a SCAN step: what a cached step counts (attention, the record's read) plus, per mask head,
/// every block of the search domain scored once (ceil(bk/sk) keys of each of its NB blocks, read once and dotted
/// with the q heads sharing the mask: 2*D FLOPs each) and the whole record written. With NB <= Kb (or k = 0)
/// nothing is scored.
fn count_decode_scan(
    shape: &Shape,
    hip: &super::Hip,
    len: usize,
    batch: usize,
    cap: usize,
    dev: &plan::DeviceTraits,
) -> Work {
    let base = count_decode(shape, hip, len, batch, false, cap, dev);
    let (_, _, nb, _) = block_sets(hip, len - 1);
    let keys = if hip.k == 0 || nb <= hip.kb() { 0 } else { nb * hip.bk.div_ceil(hip.sk) };
    let mh = shape.mask_heads() as f64;
    let d = D as f64;
    let flops = 2.0 * d * (keys * shape.heads_per_mask()) as f64 * mh;
    let state_ints = plan::state_ints_for(hip.kb());
    let bytes = d * 2.0 * keys as f64 * mh + mh * 4.0 * (state_ints as f64 - 1.0);
    let b = batch as f64;
    Work { flops: base.flops + b * flops, bytes: base.bytes + b * bytes }
}

/// Runs untimed steps (`run(set)`) until every set's step count is a multiple of `cycle`: its next step is then
/// the first of a refresh cycle (the one that searches).
pub fn align_cycles(done: &mut [usize], cycle: usize, mut run: impl FnMut(usize) -> Res<()>) -> Res<()> {
    for (i, n) in done.iter_mut().enumerate() {
        while *n % cycle != 0 {
            run(i)?;
            *n += 1;
        }
    }
    Ok(())
}

/// Timed steps: at least `steps`, rounded up to whole cycles of every set (unchanged for cycle 1).
pub fn cycle_steps(steps: usize, nsets: usize, cycle: usize) -> usize {
    if cycle <= 1 {
        return steps;
    }
    steps.div_ceil(nsets * cycle) * nsets * cycle
}

/// Statistics of timed steps taken round-robin over `nsets` sets, each set starting a cycle: for cycle 1 those
/// of the steps; otherwise those of the mean step time of each set's cycles, and a note with the first (searching)
/// steps' and the other steps' medians.
pub fn cycle_stats(times: &[f64], nsets: usize, cycle: usize) -> (Stats, Option<String>) {
    if cycle <= 1 {
        return (stats(times), None);
    }
    let per_set = times.len() / nsets;
    let (mut samples, mut first, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    for s in 0..nsets {
        let steps: Vec<f64> = (0..per_set).map(|j| times[j * nsets + s]).collect();
        for c in steps.chunks_exact(cycle) {
            samples.push(c.iter().sum::<f64>() / cycle as f64);
            first.push(c[0]);
            rest.extend_from_slice(&c[1..]);
        }
    }
    let note = format!(
        "{} cycles of 1 searching + {} cached steps (each step timed alone, the input sets rotating); searching \
         steps median {}, cached steps median {}",
        samples.len(),
        cycle - 1,
        fmt_ms(stats(&first).median),
        fmt_ms(stats(&rest).median)
    );
    (stats(&samples), Some(note))
}

/// The ratios of the graph decode rows to the dense rows of the same shape and length, and of the prefill with the
/// SCAN tail to the one without; only where both rows have a time.
pub fn ratios(rows: &[Row]) -> Vec<Ratio> {
    let median = |id: &str| rows.iter().find(|r| r.id == id).and_then(|r| r.time).map(|t| t.median);
    let mut out = Vec::new();
    for r in rows {
        let (kind, rest) = r.id.split_once('/').unwrap_or((&r.id, ""));
        let mha = r.shape == "MHA-32";
        let (what, den_kind, max) = match kind {
            "decode-scan-every" if r.id.ends_with("/graph") => {
                ("single SCAN step / dense decode step (graph)", "decode-dense", mha.then_some((0.6, "<= 0.6")))
            }
            "decode-scan-every-b16" if r.id.ends_with("/graph") => {
                ("single SCAN step / dense decode step (graph)", "decode-dense-b16", None)
            }
            "decode-scan-r8" if r.id.ends_with("/graph") => {
                let target = (mha && r.tokens == M).then_some((1.0 / 12.0, "<= 1/12 (>= 12x dense)"));
                ("SCAN refresh-8 step / dense decode step (graph)", "decode-dense", target)
            }
            "decode-scan-r8-b16" if r.id.ends_with("/graph") => {
                ("SCAN refresh-8 step / dense decode step (graph)", "decode-dense-b16", None)
            }
            "prefill-tail1024" => {
                ("prefill with the SCAN tail / without", "prefill-tail0", mha.then_some((1.10, "<= 1.10")))
            }
            _ => continue,
        };
        let den = format!("{den_kind}/{rest}");
        if let (Some(n), Some(d)) = (r.time.map(|t| t.median), median(&den)) {
            let what = format!("{what}, {} {}", r.shape, r.length);
            out.push(Ratio {
                what,
                num: r.id.clone(),
                den,
                num_ms: n,
                den_ms: d,
                bound: max.map(|(m, w)| (Bound::AtMost(m), w)),
            });
        }
    }
    out
}

pub fn ratio_markdown(ratios: &[Ratio]) -> String {
    let mut s = String::from(
        "\n### SCAN against its baselines (same run)\n\n| ratio | value | numerator | denominator | target | status |\n\
         |---|---|---|---|---|---|\n",
    );
    if ratios.is_empty() {
        s.push_str("| (no pair of rows with times: SCAN unsupported, skipped or filtered out) | - | - | - | - | - |\n");
    }
    for r in ratios {
        let status = match r.met() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        let _ = writeln!(
            s,
            "| {} | {:.3} | {} ({}) | {} ({}) | {} | {status} |",
            r.what,
            r.value(),
            fmt_ms(r.num_ms),
            r.num,
            fmt_ms(r.den_ms),
            r.den,
            r.bound.map_or("-", |b| b.1)
        );
    }
    s
}

/// A `--scan` run's header (its settings and the ratios) and the ratio table that follows the main one.
pub fn with_ratios(mut header: Header, rows: &[Row]) -> (Header, String) {
    header.extra.push(("scan rows".into(), SETTINGS.into()));
    let ratios = ratios(rows);
    header.raw.push(("ratios".into(), ratio_json(&ratios)));
    (header, ratio_markdown(&ratios))
}

#[cfg(test)]
mod tests {
    use super::super::{Hip, GQA8, MHA32};
    use super::*;
    use hip_attn::config::Selection;

    #[test]
    fn existing_modes_count_as_before() {
        for shape in [MHA32, GQA8] {
            for (len, batch) in [(32 * K, 1), (128 * K, 1), (32 * K, 16)] {
                let cap = len + 1024;
                let cached = Hip { refresh: super::super::CACHED_REFRESH, ..HEADLINE };
                let a = decode_work(&shape, DecodeMode::Cached, len, batch, cap, &crate::workloads::H200);
                let b = count_decode(&shape, &cached, len, batch, false, cap, &crate::workloads::H200);
                assert_eq!((a.flops, a.bytes), (b.flops, b.bytes));
                let a = decode_work(&shape, DecodeMode::SearchEveryStep, len, batch, cap, &crate::workloads::H200);
                let b = count_decode(
                    &shape,
                    &Hip { refresh: 1, ..HEADLINE },
                    len,
                    batch,
                    true,
                    cap,
                    &crate::workloads::H200,
                );
                assert_eq!((a.flops, a.bytes), (b.flops, b.bytes));
            }
        }
    }

    #[test]
    fn scan_reads_the_domain_and_dense_reads_everything() {
        let (len, cap) = (128 * K, 128 * K + 4096);
        let dense = decode_work(&MHA32, DecodeMode::Dense, len, 1, cap, &crate::workloads::H200);
        // All of K and V of 32 heads, bf16.
        let kv = (2 * len * 32 * D * 2) as f64;
        assert!(dense.bytes >= kv && dense.bytes < kv * 1.01, "{} vs {kv}", dense.bytes);
        let scan = decode_work(&MHA32, DecodeMode::ScanEveryStep, len, 1, cap, &crate::workloads::H200);
        let cached = decode_work(&MHA32, DecodeMode::Cached, len, 1, cap, &crate::workloads::H200);
        let k_domain = ((len - 128 - 4) * 32 * D * 2) as f64;
        assert!((scan.bytes - cached.bytes - k_domain).abs() < 0.01 * k_domain);
        // A refresh cycle: one scan and 7 cached steps of the SCAN configuration (whose cached steps, unlike a
        // TREE configuration's on a GPU with clusters, run the three-kernel step and count its partials).
        let r8 = decode_work(&MHA32, DecodeMode::ScanRefresh8, len, 1, cap, &crate::workloads::H200);
        let scan_cfg = DecodeMode::ScanRefresh8.hip(cap);
        let cached_scan = count_decode(&MHA32, &scan_cfg, len, 1, false, cap, &crate::workloads::H200);
        assert!(cached_scan.bytes > cached.bytes, "the three-kernel step's partials");
        assert!((r8.bytes - (scan.bytes + 7.0 * cached_scan.bytes) / 8.0).abs() < 1.0);
        assert_eq!(DecodeMode::ScanRefresh8.hip(cap).sel, Selection::Scan);
        assert_eq!(DecodeMode::Cached.hip(cap).sel, Selection::Tree);
    }

    #[test]
    fn cycles_are_whole_and_grouped_per_set() {
        assert_eq!(cycle_steps(300, 24, 1), 300);
        assert_eq!(cycle_steps(300, 24, 8), 384);
        assert_eq!(cycle_steps(300, 2, 8), 304);
        let mut done = vec![3, 8, 0, 13];
        let mut ran = vec![0; 4];
        align_cycles(&mut done, 8, |i| {
            ran[i] += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(done, vec![8, 8, 0, 16]);
        assert_eq!(ran, vec![5, 0, 0, 3]);
        // 2 sets, 2 cycles of 4 each: the first step of every cycle is slow (10), the rest 1; set 1 is 2x set 0.
        let (nsets, cycle) = (2, 4);
        let times: Vec<f64> =
            (0..16).map(|i| (if (i / nsets) % cycle == 0 { 10.0 } else { 1.0 }) * (1 + i % 2) as f64).collect();
        let (st, note) = cycle_stats(&times, nsets, cycle);
        assert_eq!(st.n, 4);
        assert_eq!(st.min, 13.0 / 4.0);
        assert!((st.mean - (13.0 / 4.0 + 26.0 / 4.0) / 2.0).abs() < 1e-12);
        let note = note.unwrap();
        assert!(note.contains("4 cycles of 1 searching + 3 cached"), "{note}");
        let (st1, n1) = cycle_stats(&times, nsets, 1);
        assert!(n1.is_none());
        assert_eq!(st1.n, 16);
    }

    /// A prefill check unit is a chunked prefill ending at its block, so it must select by SCAN exactly when the
    /// block lies in the whole sequence's SCAN tail: the harness's units then equal the full prefill's blocks.
    #[test]
    fn check_units_select_like_the_whole_prefill() {
        let shape = Shape { name: "MHA-2", hq: 2, hkv: 2, share_kv: false };
        for (hip, t) in [(SELF_TEST_HIP, 1000), (Hip { scan_tail: 33, ..SELF_TEST_HIP }, 1000), (SELF_TEST_HIP, 999)] {
            let units = super::super::self_test_prefill(shape, hip, t, 5).unwrap_or_else(|_| panic!("prefill"));
            for u in &units {
                assert!(!u.mask_differs && u.cmp[0].num == 0.0 && u.cmp[0].nonfinite == 0, "t {t}: {u:?}");
            }
        }
        let units = super::super::self_test_decode(shape, SELF_TEST_HIP, 5).unwrap_or_else(|_| panic!("decode"));
        assert!(units.iter().all(|u| !u.mask_differs && u.cmp[0].num == 0.0));
    }

    #[test]
    fn ratios_pair_rows_of_one_shape_and_length() {
        let row = |id: &str, shape: &str, t: usize, ms: Option<f64>| {
            let mut r = Row::new(id, "w", shape, t, 1, None);
            r.time = ms.map(|m| stats(&[m]));
            r
        };
        let rows = vec![
            row("decode-dense/MHA-32/128k/graph", "MHA-32", 128 * K, Some(0.5)),
            row("decode-scan-every/MHA-32/128k/eager", "MHA-32", 128 * K, Some(0.3)),
            row("decode-scan-every/MHA-32/128k/graph", "MHA-32", 128 * K, Some(0.25)),
            row("decode-dense/MHA-32/1M/graph", "MHA-32", M, Some(4.0)),
            row("decode-scan-r8/MHA-32/1M/graph", "MHA-32", M, Some(0.4)),
            row("decode-scan-r8/GQA-8/1M/graph", "GQA-8", M, Some(0.1)),
            row("prefill-tail0/MHA-32/128k", "MHA-32", 128 * K, Some(60.0)),
            row("prefill-tail1024/MHA-32/128k", "MHA-32", 128 * K, Some(63.0)),
            row("decode-scan-every/GQA-8/128k/graph", "GQA-8", 128 * K, None),
        ];
        let r = ratios(&rows);
        assert_eq!(r.len(), 3, "{:?}", r.iter().map(|x| &x.what).collect::<Vec<_>>());
        assert_eq!(r[0].value(), 0.5);
        assert_eq!(r[0].met(), Some(true));
        assert_eq!(r[1].den, "decode-dense/MHA-32/1M/graph");
        assert_eq!(r[1].met(), Some(false)); // 0.1 > 1/12
        assert!((r[2].value() - 1.05).abs() < 1e-12);
        assert_eq!(r[2].met(), Some(true));
        let md = ratio_markdown(&r);
        assert!(md.contains("| 0.500 |") && md.contains("MISSED"), "{md}");
        let js = ratio_json(&r);
        assert_eq!(js.as_array().map(Vec::len), Some(3), "{js}");
        assert_eq!(js[1]["target_met"], false, "{js}");
        assert_eq!(js[0]["numerator"], r[0].num, "{js}");
    }
}

//! The CUDA backend against the CPU reference, on fresh random inputs with poisoned outputs: prefill and decode
//! over the configuration matrix, a 128k-token prefill, CUDA graph capture of decode across mask refreshes,
//! merge, device-side index errors, the kernel cache and the parameter-block layout.
//!
//! Without a GPU every test prints why it skips (a skip even under HIP_ATTN_REQUIRE_TOOLS=1: CI has no GPU; see
//! tests/common/tools.rs). `HIP_ATTN_GPU_TESTS_ON_CPU=1` runs the same comparisons with
//! the CPU backend standing in for the device (it checks the harness itself; everything must then match).
mod common;
use common::tools;
use common::*;
use cudarc::driver::{result, sys};
use hip_attn::config::{validate, Config, Selection};
use hip_attn::plan::{state_ints, PrefillWorkspace};
use hip_attn::spec::{self, BlockKeys};
use hip_attn::tensor::DType;
use hip_attn::*;
use std::ffi::c_void;

/// Tests run in parallel threads under `cargo test`; the out-of-memory test must not starve the others.
static DEVICE_MEMORY: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Says why a test skips, on the real stderr: libtest captures `eprintln!` of passing tests, and a skip must be
/// visible in CI's log.
fn skip(test: &str, why: impl std::fmt::Display) {
    tools::no_gpu(test, why);
}

/// The "device" side of a comparison: a GPU, or the CPU standing in for it.
fn device(test: &str) -> Option<Box<dyn Mem>> {
    device_with(test, Lock::Shared)
}

/// How a test holds DEVICE_MEMORY for as long as its `Gpu` lives.
#[derive(Clone, Copy)]
enum Lock {
    Shared,
    /// The out-of-memory test.
    Exclusive,
    /// A helper thread of a test whose own `Gpu` already holds the lock (asking again could deadlock behind a
    /// waiting writer).
    Inherited,
}

/// `device`, holding device memory as `lock` says (a poisoned lock only means another test failed).
fn device_with(test: &str, lock: Lock) -> Option<Box<dyn Mem>> {
    if std::env::var_os("HIP_ATTN_GPU_TESTS_ON_CPU").is_some() {
        eprintln!("{test}: HIP_ATTN_GPU_TESTS_ON_CPU set: comparing the CPU backend with itself");
        return Some(Box::new(Host));
    }
    // The lock is taken only once a device is known to exist (a skip holds nothing).
    if let Err(why) = gpu_mem::find() {
        skip(test, why);
        return None;
    }
    let lock: Box<dyn std::any::Any> = match lock {
        Lock::Shared => Box::new(DEVICE_MEMORY.read().unwrap_or_else(|e| e.into_inner())),
        Lock::Exclusive => Box::new(DEVICE_MEMORY.write().unwrap_or_else(|e| e.into_inner())),
        Lock::Inherited => Box::new(()),
    };
    Some(Box::new(gpu_mem::open(lock).unwrap()))
}

fn on(mem: &dyn Mem, mut cfg: hip_config) -> Ctx {
    cfg.backend = mem.backend();
    Ctx::new(&cfg).unwrap_or_else(|(st, msg)| panic!("context creation failed: {st:?}: {msg}"))
}

fn valid(cfg: &hip_config) -> Config {
    // SAFETY: no cache-dir pointer in test configs.
    unsafe { validate(cfg) }.unwrap().0
}

/// Near-tie threshold for selection differences: the two implementations sum D products in different orders.
fn tie_eps(d: usize) -> f64 {
    1e-4 * d as f64
}

/// The gap between the Kb-th and the (Kb+1)-th best block score (f64): SCAN's selection is the brute-force top-Kb,
/// so two implementations may differ only where that gap is below the arithmetic precision.
fn scan_margin(nb: usize, kb: usize, score: impl Fn(usize) -> f64) -> f64 {
    if kb == 0 || nb <= kb {
        return f64::INFINITY;
    }
    let mut all: Vec<f64> = (0..nb).map(score).collect();
    all.sort_by(|x, y| y.partial_cmp(x).unwrap());
    all[kb - 1] - all[kb]
}

/// Checks a prefill's masks (device vs CPU workspace) block by block; returns the (seq, mask head, block) whose
/// masks differ (each must be a near-tie).
fn compare_prefill_masks(
    c: &Config,
    p: &Problem,
    cpu_ws: &[u8],
    dev_ws: &[u8],
    blocks: &[(usize, usize)],
) -> Vec<(usize, usize, usize)> {
    let batch = p.tq.len();
    // With the FP8-scored search the tree search's scores are those of the E4M3 copies (ALGORITHM.md section 9):
    // K per (sequence, kv head), each block's rows at their one scale; the SCAN tail keeps the inputs' values.
    let k8 = c.fp8_search.then(|| k8_copy(p));
    let mut differ = Vec::new();
    for &(b, j) in blocks {
        let (tq, tk) = (p.tq[b], p.tk[b]);
        let slot = PrefillWorkspace::slot(c, p.q0(b), b, j);
        for mh in 0..c.mask_heads() {
            let want = workspace_mask(c, cpu_ws, p.q.rows, batch, slot, mh);
            let got = workspace_mask(c, dev_ws, p.q.rows, batch, slot, mh);
            if want == got {
                continue;
            }
            let (i0, i1) = (j * c.bq, ((j + 1) * c.bq).min(tq));
            let keys = BlockKeys::new(tk - tq + i0, tk, c.sink, c.window, c.bk, c.causal);
            let selection = c.prefill_selection(i1, tq);
            let fp8 = k8.as_ref().filter(|_| selection == Selection::Tree);
            let mut qs: Vec<(Vec<f32>, usize)> = c
                .mask_head_q_heads(mh)
                .flat_map(|h| (i0..i1).step_by(c.sq).map(move |i| (h, i)))
                .map(|(h, i)| (p.q.at(p.q0(b) + i, h).to_vec(), c.kv_head_of(h)))
                .collect();
            if fp8.is_some() {
                let s = spec::e4m3_scale(qs.iter().flat_map(|(q, _)| q.iter().copied()));
                qs.iter_mut().for_each(|(q, _)| q.iter_mut().for_each(|x| *x = e4m3_value(*x, s)));
            }
            let kt = fp8.unwrap_or(&p.k);
            let rows: Vec<(&[f32], &Tensor, usize, usize)> =
                qs.iter().map(|(q, g)| (q.as_slice(), kt, *g, p.k0(b))).collect();
            let score = |rep| {
                let (a, e) = keys.block_range(rep);
                score_f64(&rows, a, e, c.sk)
            };
            // The E4M3 MMA accumulates with less precision than f32 (and on other scales): a relative threshold.
            let eps = match fp8 {
                Some(_) => 1e-3 * (0..keys.nb).map(|r| score(r).abs()).fold(0f64, f64::max),
                None => tie_eps(c.head_dim),
            };
            let margin = match selection {
                Selection::Scan => scan_margin(keys.nb, c.kb(), score),
                Selection::Tree => search_margin(keys.nb, c.kb(), score).1,
            };
            assert!(
                margin < eps,
                "seq {b} mask head {mh} block {j}: masks differ without a near-tie (margin {margin}):\n cpu {want:?}\n dev {got:?}"
            );
            differ.push((b, mh, j));
        }
    }
    differ
}

/// The value of x's E4M3 code at scale s (ALGORITHM.md section 9).
fn e4m3_value(x: f32, s: f32) -> f32 {
    spec::e4m3_to_f32(spec::quantize_e4m3(x, s))
}

/// The FP8-scored search's copy of K: every (sequence, kv head)'s keys as the values of their E4M3 codes at the
/// scale of that head's largest finite |k| in the sequence.
fn k8_copy(p: &Problem) -> Tensor {
    let mut k8 = Tensor { rows: p.k.rows, heads: p.k.heads, d: p.k.d, pad: 0, data: p.k.data.clone() };
    for b in 0..p.tk.len() {
        for g in 0..p.k.heads {
            let s = spec::e4m3_scale((0..p.tk[b]).flat_map(|t| p.k.at(p.k0(b) + t, g).iter().copied()));
            for t in 0..p.tk[b] {
                let o = ((p.k0(b) + t) * p.k.heads + g) * p.k.d;
                k8.data[o..o + p.k.d].iter_mut().for_each(|x| *x = e4m3_value(*x, s));
            }
        }
    }
    k8
}

/// Compares outputs and LSEs row by row, skipping rows whose mask legitimately differs.
fn compare_rows(
    c: &Config,
    p: &Problem,
    cpu: &PrefillOut,
    dev: &PrefillOut,
    rows: &[usize],
    skip: &[(usize, usize, usize)],
    what: &str,
) {
    let d = c.head_dim;
    let (mut got, mut want) = (Vec::new(), Vec::new());
    let mut lse_err = 0f64;
    for b in 0..p.tq.len() {
        for i in 0..p.tq[b] {
            let r = p.q0(b) + i;
            if !rows.contains(&r) {
                continue;
            }
            for h in 0..c.num_q_heads {
                if skip.contains(&(b, c.mask_head_of(h), i / c.bq)) {
                    continue;
                }
                let at = (r * c.num_q_heads + h) * d;
                got.extend_from_slice(&dev.o[at..at + d]);
                want.extend(cpu.o[at..at + d].iter().map(|&x| x as f64));
                let (l1, l2) = (cpu.lse[r * c.num_q_heads + h], dev.lse[r * c.num_q_heads + h]);
                assert!(l2.is_finite() || l1 == l2, "{what}: lse row {r} head {h}: {l2} vs {l1}");
                if l1.is_finite() {
                    lse_err = lse_err.max(((l1 - l2) as f64).abs() / (l1 as f64).abs().max(1.0));
                }
            }
        }
    }
    let err = rel_l2(&got, &want);
    eprintln!("{what}: output rel L2 {err:.2e}, LSE max rel err {lse_err:.2e}, {} rows skipped for ties", skip.len());
    assert!(err < tolerance(p.dt), "{what}: output rel L2 {err}");
    assert!(lse_err < 1e-3, "{what}: LSE error {lse_err}");
}

struct PrefillCase {
    dt: DType,
    d: u32,
    hq: u32,
    hkv: u32,
    share: u32,
    causal: u32,
    bq: u32,
    bk: u32,
    k: u32,
    sq: u32,
    sk: u32,
    tq: &'static [usize],
    tk: &'static [usize],
}

#[allow(clippy::too_many_arguments)]
fn prefill_case(
    dt: DType,
    d: u32,
    hq: u32,
    hkv: u32,
    share: u32,
    causal: u32,
    bq: u32,
    bk: u32,
    k: u32,
    sq: u32,
    sk: u32,
    tq: &'static [usize],
    tk: &'static [usize],
) -> PrefillCase {
    PrefillCase { dt, d, hq, hkv, share, causal, bq, bk, k, sq, sk, tq, tk }
}

fn prefill_cases() -> Vec<PrefillCase> {
    use DType::*;
    let c = prefill_case;
    vec![
        c(Bf16, 128, 32, 8, 1, 1, 32, 2, 64, 1, 1, &[300, 1, 77], &[300, 40, 200]),
        c(F16, 64, 4, 4, 1, 1, 16, 1, 32, 1, 1, &[513, 33], &[513, 100]),
        c(Bf16, 128, 8, 2, 2, 1, 32, 2, 128, 2, 2, &[700], &[900]),
        c(F16, 256, 4, 1, 2, 0, 8, 4, 40, 1, 1, &[129, 64], &[129, 300]),
        c(Bf16, 64, 6, 3, 1, 1, 20, 3, 50, 3, 1, &[250, 7], &[250, 7]),
        // k far above every Tk (the CUDA backend's largest block budget, 1024 blocks): dense.
        c(Bf16, 128, 4, 4, 1, 1, 64, 2, 2048, 1, 1, &[200, 65], &[333, 65]),
        c(F16, 128, 4, 2, 2, 1, 32, 2, 0, 1, 1, &[400], &[400]),
        c(Bf16, 256, 2, 2, 1, 1, 32, 8, 96, 1, 4, &[260], &[260]),
        c(F16, 64, 8, 1, 2, 1, 1, 2, 16, 1, 1, &[40], &[90]),
        // Every block selected, so the dense attention kernel takes these (non-causal at head_dim 256; causal at
        // 64, where its tiles are 128 rows); case 0 mixes a dense sequence (Tk 40) with sparse ones.
        c(F16, 256, 4, 2, 1, 0, 16, 2, 1024, 1, 1, &[100, 37], &[300, 37]),
        c(Bf16, 64, 4, 4, 1, 1, 32, 2, 2048, 1, 1, &[1000], &[1000]),
    ]
}

#[test]
fn prefill_matches_cpu_reference() {
    let Some(dev) = device("prefill_matches_cpu_reference") else { return };
    let mut rng = Rng::fresh("gpu-prefill");
    for (n, case) in prefill_cases().iter().enumerate() {
        check_prefill_case(dev.as_ref(), &mut rng, case, 8 * (n % 2), &format!("prefill case {n}"));
    }
}

/// The block-sparse prefill attention of bf16 at head_dim 128 with bq <= 64, which an sm_90 device runs on the
/// Hopper kernel (cuda/hopper/sparse.cuh; HIP_ATTN_SPARSE_KERNEL=classic runs the same cases through
/// hip_prefill_attn), against the CPU reference: every bq class of its 64-row warpgroup (1, 16, 20, 32, 48, 64),
/// MHA and GQA with both mask sharings, causal and not, k = 0 (sinks and window only), sampled queries and keys,
/// chunked prefill (Tq < Tk), varlen batches, and key lists from one tile to many times the pipeline's depth
/// (k = 2048: the largest block list).
#[test]
fn prefill_sparse_hopper_matches_cpu_reference() {
    let Some(dev) = device("prefill_sparse_hopper_matches_cpu_reference") else { return };
    let mut rng = Rng::fresh("gpu-prefill-sparse-hopper");
    let c = prefill_case;
    let b = DType::Bf16;
    let cases = [
        c(b, 128, 32, 32, 1, 1, 32, 2, 512, 1, 1, &[2000], &[2000]),
        c(b, 128, 8, 2, 2, 1, 64, 4, 256, 1, 1, &[1000, 65, 1], &[1200, 65, 300]),
        c(b, 128, 4, 4, 1, 1, 1, 1, 64, 1, 1, &[200], &[500]),
        c(b, 128, 4, 2, 1, 0, 16, 2, 128, 1, 1, &[300, 77], &[500, 90]),
        c(b, 128, 4, 4, 1, 1, 20, 3, 200, 3, 2, &[700], &[700]),
        c(b, 128, 4, 2, 2, 1, 48, 2, 0, 1, 1, &[400, 3], &[400, 50]),
        c(b, 128, 4, 4, 1, 1, 32, 2, 2048, 1, 1, &[3000], &[3000]),
        c(b, 128, 4, 1, 2, 0, 64, 8, 96, 2, 4, &[129, 64], &[129, 1000]),
    ];
    // HIP_ATTN_TEST_CASES=3,5 runs only those cases (to replay or sanitize one).
    let only = only_cases();
    // On an sm_90 device these cases must reach the Hopper kernel: compiled for each configuration, and context
    // creation must not have fallen back to the classic kernel (it says so in the log).
    let cuda = dev.backend() == hip_backend::HIP_ATTN_BACKEND_CUDA as u32;
    let classic = std::env::var("HIP_ATTN_SPARSE_KERNEL").is_ok_and(|v| v == "classic");
    let expect_hopper = sm90a_or_none(cuda) == "sm_90a" && !classic;
    for (n, case) in cases.iter().enumerate() {
        if only.as_ref().is_some_and(|o| !o.contains(&n)) {
            continue;
        }
        if expect_hopper {
            let mut cfg = prefill_case_config(case);
            assert!(hip_attn::cuda::backend::hopper_sparse_compiled(&valid(&cfg), "sm_90a"), "case {n}");
            let mut log: Vec<String> = Vec::new();
            cfg.log_callback = Some(collect_log);
            cfg.log_user_data = &mut log as *mut Vec<String> as *mut c_void;
            drop(on(dev.as_ref(), cfg));
            let joined = log.join("\n");
            assert!(!joined.contains("block-sparse prefill keeps the classic kernel"), "case {n}: {joined}");
        }
        check_prefill_case(dev.as_ref(), &mut rng, case, 8 * (n % 2), &format!("sparse Hopper case {n}"));
    }
}

/// The configuration of a prefill case: sink 4, window 48.
fn prefill_case_config(case: &PrefillCase) -> hip_config {
    let mut cfg = config(case.dt, case.d, case.hq, case.hkv);
    (cfg.mask_sharing, cfg.causal, cfg.bq, cfg.bk, cfg.k, cfg.sq, cfg.sk) =
        (case.share, case.causal, case.bq, case.bk, case.k, case.sq, case.sk);
    (cfg.sink, cfg.window) = (4, 48);
    cfg
}

/// The case numbers HIP_ATTN_TEST_CASES names ("3,10"), where it is set: a test that reads it runs only those.
fn only_cases() -> Option<Vec<usize>> {
    std::env::var("HIP_ATTN_TEST_CASES")
        .ok()
        .map(|v| v.split(',').map(|n| n.trim().parse().expect("HIP_ATTN_TEST_CASES: case numbers")).collect())
}

/// One prefill case (sink 4, window 48; `pad` elements past each token row) on `dev` against the CPU backend:
/// masks equal but for near-ties, rows (where the masks match) within tolerance, each sequence's last mask record
/// equal.
fn check_prefill_case(dev: &dyn Mem, rng: &mut Rng, case: &PrefillCase, pad: usize, label: &str) {
    let cfg = prefill_case_config(case);
    let c = valid(&cfg);
    let p = Problem::new(rng, case.dt, case.d as usize, case.hq as usize, case.hkv as usize, case.tq, case.tk, pad);
    let cpu = run_prefill(&Host, &on(&Host, cfg), &p, true).unwrap();
    let devo = run_prefill(dev, &on(dev, cfg), &p, true).unwrap();
    let blocks: Vec<(usize, usize)> =
        (0..p.tq.len()).flat_map(|b| (0..p.tq[b].div_ceil(c.bq)).map(move |j| (b, j))).collect();
    let skip = compare_prefill_masks(&c, &p, &cpu.workspace, &devo.workspace, &blocks);
    let rows: Vec<usize> = (0..p.q.rows).collect();
    compare_rows(&c, &p, &cpu, &devo, &rows, &skip, label);
    // The mask state of each sequence's last block (the decode hand-off), where its block matched.
    for b in 0..p.tq.len() {
        for mh in 0..c.mask_heads() {
            if p.tq[b] == 0 || skip.contains(&(b, mh, (p.tq[b] - 1) / c.bq)) {
                continue;
            }
            let idx = b * c.mask_heads() + mh;
            assert_eq!(
                record(&cpu.state, state_ints(&c), idx),
                record(&devo.state, state_ints(&c), idx),
                "{label} state"
            );
        }
    }
}

/// The FP8-scored search (HIP_ATTN_FLAG_FP8_SEARCH_SCORES) against the CPU backend's: masks equal but for
/// near-ties of the E4M3 scores (ALGORITHM.md section 9), outputs and records as for the default. Cases: MHA and
/// GQA, masks per q head and per kv head (64 and 128 rows: one and two passes of the Hopper scoring), sampled
/// queries and keys, a key stride that leaves a block's later key missing, a SCAN tail (scored on the inputs'
/// values), batches, and an outlier key that sets its head's scale. Where the device cannot run the option (not
/// sm_90), context creation must say HIP_ATTN_STATUS_UNSUPPORTED, and the test stops there.
#[test]
fn prefill_fp8_search_matches_cpu_reference() {
    let Some(dev) = device("prefill_fp8_search_matches_cpu_reference") else { return };
    let mut rng = Rng::fresh("gpu-prefill-fp8");
    use DType::*;
    // (dtype, hq, hkv, share, bq, bk, k, sq, sk, scan tail, tq, tk)
    type Case = (DType, u32, u32, u32, u32, u32, u32, u32, u32, u32, &'static [usize], &'static [usize]);
    let cases: [Case; 6] = [
        (Bf16, 8, 2, 1, 32, 2, 64, 1, 1, 0, &[300, 1, 77], &[300, 40, 200]),
        (F16, 8, 2, 2, 32, 2, 128, 1, 1, 0, &[700], &[900]),
        (Bf16, 8, 2, 2, 64, 2, 96, 2, 2, 0, &[1000, 64], &[1200, 64]),
        (Bf16, 4, 4, 1, 20, 3, 50, 1, 2, 0, &[250, 7], &[250, 7]),
        (F16, 4, 1, 2, 32, 2, 512, 1, 1, 100, &[3000], &[4000]),
        (Bf16, 4, 2, 1, 32, 2, 256, 1, 1, 0, &[2000], &[2500]),
    ];
    for (n, &(dt, hq, hkv, share, bq, bk, k, sq, sk, tail, tq, tk)) in cases.iter().enumerate() {
        let mut cfg = config(dt, 128, hq, hkv);
        (cfg.mask_sharing, cfg.bq, cfg.bk, cfg.k, cfg.sq, cfg.sk, cfg.prefill_scan_tail) =
            (share, bq, bk, k, sq, sk, tail);
        (cfg.sink, cfg.window, cfg.flags) = (4, 48, HIP_ATTN_FLAG_FP8_SEARCH_SCORES);
        let c = valid(&cfg);
        let mut p = Problem::new(&mut rng, dt, 128, hq as usize, hkv as usize, tq, tk, 8 * (n % 2));
        if n == 5 {
            // One key element 50x the rest: it sets its head's scale, so the other keys use few E4M3 codes.
            p.k.data[(1234 * hkv as usize) * 128 + 17] = 50.0;
        }
        let cpu = run_prefill(&Host, &on(&Host, cfg), &p, true).unwrap();
        cfg.backend = dev.backend();
        let ctx = match Ctx::new(&cfg) {
            Ok(ctx) => ctx,
            Err((hip_status::HIP_ATTN_STATUS_UNSUPPORTED, msg)) => {
                skip("prefill_fp8_search_matches_cpu_reference", format!("the device cannot run it: {msg}"));
                return;
            }
            Err((st, msg)) => panic!("context creation failed: {st:?}: {msg}"),
        };
        let devo = run_prefill(dev.as_ref(), &ctx, &p, true).unwrap();
        let blocks: Vec<(usize, usize)> =
            (0..p.tq.len()).flat_map(|b| (0..p.tq[b].div_ceil(c.bq)).map(move |j| (b, j))).collect();
        let skip = compare_prefill_masks(&c, &p, &cpu.workspace, &devo.workspace, &blocks);
        let rows: Vec<usize> = (0..p.q.rows).collect();
        compare_rows(&c, &p, &cpu, &devo, &rows, &skip, &format!("fp8 search case {n}"));
        for b in 0..p.tq.len() {
            for mh in 0..c.mask_heads() {
                if skip.contains(&(b, mh, (p.tq[b] - 1) / c.bq)) {
                    continue;
                }
                let idx = b * c.mask_heads() + mh;
                assert_eq!(
                    record(&cpu.state, state_ints(&c), idx),
                    record(&devo.state, state_ints(&c), idx),
                    "fp8 case {n} state"
                );
            }
        }
        // The option changes which blocks are selected, never more than near-ties apart from the definition:
        // here it must also differ from the default somewhere, or the flag did not reach the search.
        if n == 1 {
            cfg.flags = 0;
            let plain = run_prefill(&Host, &on(&Host, cfg), &p, true).unwrap();
            assert_ne!(plain.workspace, cpu.workspace, "the FP8-scored masks equal the default's");
        }
    }
}

/// Prefill with a SCAN tail (several tail sizes, including one above Tq: every block scans) against the CPU:
/// masks (near-ties aside), outputs, and the last block's record; then a decode step that reuses the handed-over
/// scanned mask (refresh 8) matches the CPU's.
#[test]
fn prefill_scan_tail_matches_cpu_reference() {
    let Some(dev) = device("prefill_scan_tail_matches_cpu_reference") else { return };
    let mut rng = Rng::fresh("gpu-prefill-scan-tail");
    for (n, (dt, d, hq, hkv, share, bq, bk, k, sk, tail, tq, tk)) in [
        (DType::Bf16, 128, 8, 2, 2, 32, 2, 64, 1, 1u32, &[700usize, 1, 77][..], &[1500usize, 40, 200][..]),
        (DType::Bf16, 128, 8, 8, 1, 32, 2, 128, 1, 100, &[2000][..], &[2000][..]),
        (DType::F16, 64, 4, 2, 1, 16, 3, 48, 2, 5000, &[300, 90][..], &[900, 90][..]),
        (DType::Bf16, 256, 4, 1, 2, 8, 4, 40, 1, 33, &[129, 64][..], &[1000, 300][..]),
        (DType::Bf16, 128, 4, 4, 1, 32, 2, 0, 1, 64, &[400][..], &[400][..]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut cfg = config(dt, d, hq, hkv);
        (cfg.mask_sharing, cfg.bq, cfg.bk, cfg.k, cfg.sk, cfg.prefill_scan_tail) = (share, bq, bk, k, sk, tail);
        (cfg.sink, cfg.window, cfg.refresh) = (4, 48, 8);
        let c = valid(&cfg);
        let p = Problem::new(&mut rng, dt, d as usize, hq as usize, hkv as usize, tq, tk, 0);
        let (cctx, dctx) = (on(&Host, cfg), on(dev.as_ref(), cfg));
        let cpu = run_prefill(&Host, &cctx, &p, true).unwrap();
        let devo = run_prefill(dev.as_ref(), &dctx, &p, true).unwrap();
        let blocks: Vec<(usize, usize)> =
            (0..p.tq.len()).flat_map(|b| (0..p.tq[b].div_ceil(c.bq)).map(move |j| (b, j))).collect();
        let skip = compare_prefill_masks(&c, &p, &cpu.workspace, &devo.workspace, &blocks);
        let rows: Vec<usize> = (0..p.q.rows).collect();
        compare_rows(&c, &p, &cpu, &devo, &rows, &skip, &format!("prefill scan tail case {n}"));
        let mut tie = false;
        for b in 0..p.tq.len() {
            for mh in 0..c.mask_heads() {
                if skip.contains(&(b, mh, (p.tq[b] - 1) / c.bq)) {
                    tie = true;
                    continue;
                }
                let idx = b * c.mask_heads() + mh;
                assert_eq!(
                    record(&cpu.state, state_ints(&c), idx),
                    record(&devo.state, state_ints(&c), idx),
                    "case {n} state"
                );
            }
        }
        if tie {
            continue;
        }
        // Decode at the last prompt position from each side's handed-over state: the step reuses the scanned mask.
        let cut = |x: &Tensor, from: usize, rows: usize| Tensor {
            rows,
            heads: x.heads,
            d: x.d,
            pad: 0,
            data: x.data[from * x.heads * x.d..(from + rows) * x.heads * x.d].to_vec(),
        };
        let kc: Vec<Tensor> = (0..p.tq.len()).map(|b| cut(&p.k, p.k0(b), p.tk[b])).collect();
        let vc: Vec<Tensor> = (0..p.tq.len()).map(|b| cut(&p.v, p.k0(b), p.tk[b])).collect();
        let cap = *p.tk.iter().max().unwrap();
        let q = Tensor::random(&mut rng, dt, p.tq.len(), hq as usize, d as usize, 0, 1.0);
        let mut outs = Vec::new();
        for (mem, ctx, state) in [(&Host as &dyn Mem, &cctx, &cpu.state), (dev.as_ref(), &dctx, &devo.state)] {
            let cache =
                Cache { k: kc.clone(), v: vc.clone(), page_size: Some(16), capacity: cap }.upload(mem, dt, &mut rng);
            let sb = mem.upload(state);
            outs.push(run_decode(mem, ctx, dt, &q, &cache, &p.tk, cap, &sb).unwrap());
            let after = mem.download(&sb);
            assert!(
                (0..p.tq.len() * c.mask_heads()).all(|i| record(&after, state_ints(&c), i).1 == 2),
                "case {n}: the step reused the mask"
            );
        }
        let want: Vec<f64> = outs[0].o.iter().map(|&x| x as f64).collect();
        let err = rel_l2(&outs[1].o, &want);
        assert!(err < tolerance(dt), "case {n}: decode from the scanned mask: rel L2 {err}");
    }
}

#[test]
fn prefill_128k_tokens() {
    let Some(dev) = device("prefill_128k_tokens") else { return };
    let mut rng = Rng::fresh("gpu-128k");
    let t = if std::env::var_os("HIP_ATTN_GPU_TESTS_ON_CPU").is_some() { 4096 } else { 131072 };
    for (dt, share) in [(DType::Bf16, 1), (DType::F16, 2)] {
        let mut cfg = config(dt, 128, 2, 1);
        cfg.mask_sharing = share;
        let c = valid(&cfg);
        let p = Problem::new(&mut rng, dt, 128, 2, 1, &[t], &[t], 0);
        let devo = run_prefill(dev.as_ref(), &on(dev.as_ref(), cfg), &p, false).unwrap();
        // The CPU checks sampled query blocks: block j of the full prefill is a chunked prefill of its bq queries
        // over the prefix [0, (j+1)*bq).
        let nblocks = t / c.bq;
        let mut sample: Vec<usize> = vec![0, 1, 7, nblocks / 2, nblocks - 1];
        sample.extend((0..6).map(|_| rng.below(nblocks)));
        let cpu_ctx = on(&Host, cfg);
        for j in sample {
            let end = (j + 1) * c.bq;
            let cut = |x: &Tensor, from: usize, n: usize| Tensor {
                rows: n,
                heads: x.heads,
                d: x.d,
                pad: 0,
                data: x.data[from * x.heads * x.d..(from + n) * x.heads * x.d].to_vec(),
            };
            let sub = Problem {
                tq: vec![c.bq],
                tk: vec![end],
                q: cut(&p.q, j * c.bq, c.bq),
                k: cut(&p.k, 0, end),
                v: cut(&p.v, 0, end),
                ..p.clone()
            };
            let cpu = run_prefill(&Host, &cpu_ctx, &sub, false).unwrap();
            // Rebase the device result of block j onto the sub-problem's rows.
            let rows_d = c.bq * c.num_q_heads * c.head_dim;
            let devsub = PrefillOut {
                o: devo.o[j * rows_d..(j + 1) * rows_d].to_vec(),
                lse: devo.lse[j * c.bq * c.num_q_heads..(j + 1) * c.bq * c.num_q_heads].to_vec(),
                workspace: Vec::new(),
                state: Vec::new(),
            };
            // Device masks of block j, moved into a workspace laid out for the sub-problem (slot 0).
            let full = PrefillWorkspace::new(&c, 1, t).unwrap();
            let sub_l = PrefillWorkspace::new(&c, 1, c.bq).unwrap();
            let mut ws = vec![0u8; sub_l.bytes];
            for mh in 0..c.mask_heads() {
                let m = workspace_mask(&c, &devo.workspace, t, 1, j, mh);
                for (i, x) in m.iter().enumerate() {
                    let at = sub_l.idx_offset + 4 * (mh * c.kb() + i);
                    ws[at..at + 4].copy_from_slice(&x.to_le_bytes());
                }
                let at = sub_l.cnt_offset + 4 * mh;
                ws[at..at + 4].copy_from_slice(&(m.len() as i32).to_le_bytes());
            }
            let _ = full;
            let skip = compare_prefill_masks(&c, &sub, &cpu.workspace, &ws, &[(0, 0)]);
            let rows: Vec<usize> = (0..c.bq).collect();
            compare_rows(&c, &sub, &cpu, &devsub, &rows, &skip, &format!("{t} tokens, {dt:?}, block {j}"));
        }
    }
}

/// The queries and keys of a test (its value rows are uniform in [-1, 1) either way).
#[derive(Clone, Copy)]
enum Inputs {
    /// Uniform in [-1, 1).
    Random,
    /// Exact ties: queries and keys on the grid {-1, -1/2, 0, 1/2, 1}, so that every score is an exact multiple of
    /// 1/4 on the device and on the CPU (distinct scores differ by 1/4 at least: no near-ties), and every key row of
    /// a kv head one of three vectors, chosen per row by a hash, so that many branches score exactly the same value
    /// and the selection's tie rule (the lower block wins) alone decides among them, also at the KB-th place.
    Tied,
}

impl Inputs {
    fn grid(rng: &mut Rng, rows: usize, heads: usize, d: usize) -> Tensor {
        let data = (0..rows * heads * d).map(|_| (rng.below(5) as f32 - 2.0) * 0.5).collect();
        Tensor { rows, heads, d, pad: 0, data }
    }
    fn q(self, rng: &mut Rng, dt: DType, rows: usize, heads: usize, d: usize) -> Tensor {
        match self {
            Inputs::Random => Tensor::random(rng, dt, rows, heads, d, 0, 1.0),
            Inputs::Tied => Inputs::grid(rng, rows, heads, d),
        }
    }
    fn k(self, rng: &mut Rng, dt: DType, rows: usize, heads: usize, d: usize) -> Tensor {
        match self {
            Inputs::Random => Tensor::random(rng, dt, rows, heads, d, 0, 1.0),
            Inputs::Tied => {
                let base = Inputs::grid(rng, 3, heads, d);
                let mut t = Tensor { rows, heads, d, pad: 0, data: vec![0.0; rows * heads * d] };
                for r in 0..rows {
                    let pick = ((r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 3;
                    for h in 0..heads {
                        let o = (r * heads + h) * d;
                        t.data[o..o + d].copy_from_slice(base.at(pick as usize, h));
                    }
                }
                t
            }
        }
    }
}

/// Decode in lockstep with the CPU: after each step the device's mask state must equal the CPU's, except for
/// near-ties, after which the CPU continues from the device's state. Returns the number of near-tie mask
/// differences it allowed.
#[allow(clippy::too_many_arguments)]
fn decode_lockstep(
    dev: &dyn Mem,
    cfg: hip_config,
    lens0: &[usize],
    steps: usize,
    page: Option<usize>,
    rng: &mut Rng,
    what: &str,
    inputs: Inputs,
) -> usize {
    let c = valid(&cfg);
    let dt = c.dtype;
    let (hq, hkv, d) = (c.num_q_heads, c.num_kv_heads, c.head_dim);
    let cap = lens0.iter().max().unwrap() + steps;
    let k: Vec<Tensor> = lens0.iter().map(|_| inputs.k(rng, dt, cap, hkv, d)).collect();
    let v: Vec<Tensor> = lens0.iter().map(|_| Tensor::random(rng, dt, cap, hkv, d, 0, 1.0)).collect();
    let cache = |mem: &dyn Mem, rng: &mut Rng| {
        Cache { k: k.clone(), v: v.clone(), page_size: page, capacity: cap }.upload(mem, dt, rng)
    };
    let (cctx, dctx) = (on(&Host, cfg), on(dev, cfg));
    let (ccache, dcache) = (cache(&Host, rng), cache(dev, rng));
    let batch = lens0.len();
    let mut cstate = Host.zeroed(cctx.state_size(batch as u32));
    let dstate = dev.zeroed(dctx.state_size(batch as u32));
    let mut ties = 0;
    for t in 0..steps {
        let lens: Vec<usize> = lens0.iter().map(|l| l + t).collect();
        let q = inputs.q(rng, dt, batch, hq, d);
        let co = run_decode(&Host, &cctx, dt, &q, &ccache, &lens, cap, &cstate).unwrap();
        let dout = run_decode(dev, &dctx, dt, &q, &dcache, &lens, cap, &dstate).unwrap();
        let (cs, ds) = (Host.download(&cstate), dev.download(&dstate));
        let mut skip = Vec::new();
        for b in 0..batch {
            for mh in 0..c.mask_heads() {
                let idx = b * c.mask_heads() + mh;
                let (cr, dr) = (record(&cs, state_ints(&c), idx), record(&ds, state_ints(&c), idx));
                if cr == dr {
                    continue;
                }
                assert_eq!((cr.0, cr.1, cr.2), (dr.0, dr.1, dr.2), "{what} step {t} seq {b} head {mh}: header");
                let p = lens[b] - 1;
                let keys = BlockKeys::new(p, lens[b], c.sink, c.window, c.bk, c.causal);
                let rows: Vec<(&[f32], &Tensor, usize, usize)> =
                    c.mask_head_q_heads(mh).map(|h| (q.at(b, h), &k[b], c.kv_head_of(h), 0)).collect();
                let score = |rep| {
                    let (a, e) = keys.block_range(rep);
                    score_f64(&rows, a, e, c.sk)
                };
                let margin = match c.decode_selection {
                    Selection::Scan => scan_margin(keys.nb, c.kb(), score),
                    Selection::Tree => search_margin(keys.nb, c.kb(), score).1,
                };
                assert!(
                    margin < tie_eps(d),
                    "{what} step {t} seq {b} head {mh}: masks differ, margin {margin}\n cpu {cr:?}\n dev {dr:?}"
                );
                eprintln!("{what} step {t} seq {b} head {mh}: masks differ at a near-tie (margin {margin:.2e})");
                skip.extend(c.mask_head_q_heads(mh).map(|h| (b, h)));
                ties += 1;
            }
        }
        if !skip.is_empty() {
            cstate = Host.upload(&ds); // continue from the device's (equally valid) masks
        }
        let (mut got, mut want) = (Vec::new(), Vec::new());
        for b in 0..batch {
            for h in (0..hq).filter(|h| !skip.contains(&(b, *h))) {
                got.extend_from_slice(&dout.o[(b * hq + h) * d..][..d]);
                want.extend(co.o[(b * hq + h) * d..][..d].iter().map(|&x| x as f64));
                let (l1, l2) = (co.lse[b * hq + h], dout.lse[b * hq + h]);
                assert!((l1 - l2).abs() <= 1e-3 * l1.abs().max(1.0), "{what} step {t}: lse {l2} vs {l1}");
            }
        }
        let err = rel_l2(&got, &want);
        assert!(err < tolerance(dt), "{what} step {t}: rel L2 {err}");
    }
    eprintln!("{what}: {steps} steps match ({ties} near-tie mask differences)");
    ties
}

/// Exact ties (Inputs::Tied) in prefill and in decode steps that search, with masks per q head (on sm_90 the cluster
/// step kernel) and per kv head: the device's masks must equal the CPU's with no near-tie allowance, at k = 64 and
/// at the default k = 512.
#[test]
fn exact_ties_select_as_the_cpu_does() {
    let Some(dev) = device("exact_ties_select_as_the_cpu_does") else { return };
    let mut rng = Rng::fresh("gpu-ties");
    let dt = DType::Bf16;
    for (k, share) in [(64u32, 1u32), (512, 1), (512, 2)] {
        let mut cfg = config(dt, 128, 4, 2);
        (cfg.k, cfg.bq, cfg.bk, cfg.sink, cfg.window, cfg.mask_sharing) = (k, 32, 2, 4, 32, share);
        let c = valid(&cfg);
        let mut p = Problem::new(&mut rng, dt, 128, 4, 2, &[1500, 40], &[3000, 40], 0);
        p.q = Inputs::Tied.q(&mut rng, dt, p.q.rows, 4, 128);
        p.k = Inputs::Tied.k(&mut rng, dt, p.k.rows, 2, 128);
        let cpu = run_prefill(&Host, &on(&Host, cfg), &p, true).unwrap();
        let devo = run_prefill(dev.as_ref(), &on(dev.as_ref(), cfg), &p, true).unwrap();
        let blocks: Vec<(usize, usize)> =
            (0..p.tq.len()).flat_map(|b| (0..p.tq[b].div_ceil(c.bq)).map(move |j| (b, j))).collect();
        // (every score is exact, so any difference is one compare_prefill_masks would take for a near-tie)
        let differ = compare_prefill_masks(&c, &p, &cpu.workspace, &devo.workspace, &blocks);
        assert!(differ.is_empty(), "k {k} share {share}: prefill masks differ under exact ties at {differ:?}");
        let rows: Vec<usize> = (0..p.q.rows).collect();
        compare_rows(&c, &p, &cpu, &devo, &rows, &[], &format!("ties k {k} share {share}"));
        // The FP8-scored search on the same grid: every element's E4M3 code is exact (scale 1/448: +-448, +-224,
        // 0), and so is every score, so its masks must equal the CPU's with no allowance either; this pins the
        // E4M3 fragment layouts.
        let mut f = cfg;
        f.flags = HIP_ATTN_FLAG_FP8_SEARCH_SCORES;
        let cf = valid(&f);
        let cpu8 = run_prefill(&Host, &on(&Host, f), &p, true).unwrap();
        f.backend = dev.backend();
        if let Ok(ctx) = Ctx::new(&f) {
            let dev8 = run_prefill(dev.as_ref(), &ctx, &p, true).unwrap();
            let differ = compare_prefill_masks(&cf, &p, &cpu8.workspace, &dev8.workspace, &blocks);
            assert!(differ.is_empty(), "k {k} share {share}: FP8-scored masks differ under exact ties at {differ:?}");
            compare_rows(&cf, &p, &cpu8, &dev8, &rows, &[], &format!("fp8 ties k {k} share {share}"));
        }
        cfg.refresh = 1;
        let ties = decode_lockstep(dev.as_ref(), cfg, &[900, 4000], 3, Some(16), &mut rng, "ties", Inputs::Tied);
        assert_eq!(ties, 0, "k {k} share {share}: decode masks differ under exact ties");
    }
}

#[test]
fn decode_matches_cpu_reference() {
    let Some(dev) = device("decode_matches_cpu_reference") else { return };
    let mut rng = Rng::fresh("gpu-decode");
    for (dt, d, hq, hkv, share, refresh, page, k) in [
        (DType::Bf16, 128, 32, 8, 1, 1, None, 64),
        (DType::Bf16, 128, 32, 8, 2, 4, Some(16), 128),
        (DType::F16, 64, 4, 4, 1, 3, Some(1), 32),
        (DType::F16, 256, 4, 2, 2, 2, Some(64), 40),
        // The CUDA backend's largest block budget (1024 blocks of bk 2). (On sm_90 the step kernel's V stage has no
        // room for this budget's rounds: it keeps the rounds in registers.)
        (DType::Bf16, 64, 8, 2, 1, 5, Some(5), 2048),
        // Masks per q head over ~100 keys per CTA of the cluster: the step kernel walks its V stage in two trips
        // (cuda/attn/decode.cuh, STEP_U).
        (DType::Bf16, 128, 16, 4, 1, 2, Some(16), 768),
    ] {
        let mut cfg = config(dt, d, hq, hkv);
        (cfg.mask_sharing, cfg.refresh, cfg.k, cfg.window) = (share, refresh, k, 32);
        let what = format!("decode {dt:?} d{d} {hq}/{hkv} share {share} refresh {refresh} page {page:?} k {k}");
        decode_lockstep(dev.as_ref(), cfg, &[1, 700, 5000], 6, page, &mut rng, &what, Inputs::Random);
    }
}

/// Decode steps with one split per (sequence, head): the attention kernel writes the output rows itself and no
/// combine runs. Many rows (batch x heads above twice the SM count of any current GPU) or, with
/// HIP_ATTN_FLAG_BATCH_INVARIANT, a key budget of at most 128 keys give one split. Per q head and shared GQA masks
/// (the latter's long splits prefetch their rows a trip ahead).
#[test]
fn decode_with_one_split_matches_cpu_reference() {
    let Some(dev) = device("decode_with_one_split_matches_cpu_reference") else { return };
    let mut rng = Rng::fresh("gpu-decode-one-split");
    let mut cfg = config(DType::Bf16, 128, 32, 8);
    (cfg.refresh, cfg.k) = (3, 128);
    let lens: Vec<usize> = (0..12).map(|i| [1, 700, 5000, 3, 64, 129][i % 6] + 11 * i).collect();
    decode_lockstep(dev.as_ref(), cfg, &lens, 4, Some(16), &mut rng, "decode one split, 12 x 32 rows", Inputs::Random);
    // A mask shared by a kv head's q heads over up to ~650 keys: the one split walks many trips of keys, and the
    // attention asks L2 for the next trip's rows while it waits for this one's (cuda/attn/decode.cuh).
    let mut cfg = config(DType::Bf16, 128, 32, 8);
    (cfg.mask_sharing, cfg.refresh) = (hip_mask_sharing::HIP_ATTN_MASK_PER_KV_HEAD as u32, 3);
    decode_lockstep(
        dev.as_ref(),
        cfg,
        &lens,
        4,
        Some(16),
        &mut rng,
        "decode one split, shared GQA mask, k 512",
        Inputs::Random,
    );
    let mut cfg = config(DType::F16, 64, 4, 2);
    (cfg.refresh, cfg.k, cfg.window, cfg.flags) = (2, 32, 16, HIP_ATTN_FLAG_BATCH_INVARIANT);
    decode_lockstep(
        dev.as_ref(),
        cfg,
        &[1, 700, 5000],
        5,
        None,
        &mut rng,
        "decode one split, batch-invariant",
        Inputs::Random,
    );
}

#[test]
fn decode_128k_cache() {
    let Some(dev) = device("decode_128k_cache") else { return };
    let mut rng = Rng::fresh("gpu-decode-128k");
    let t = if std::env::var_os("HIP_ATTN_GPU_TESTS_ON_CPU").is_some() { 8192 } else { 131072 };
    let mut cfg = config(DType::Bf16, 128, 8, 2);
    cfg.refresh = 3;
    decode_lockstep(dev.as_ref(), cfg, &[t, 3000], 4, Some(64), &mut rng, "decode 128k paged", Inputs::Random);
}

/// SCAN decode against the CPU's brute-force top-Kb: contiguous and paged caches, GQA with and without mask
/// sharing, batches of mixed lengths (1 to 20000 keys), refresh 1 and 3, k 64 / 512 / 2048, block sizes whose
/// sampled keys do not pair up, and short caches (one scan split).
#[test]
fn scan_decode_matches_cpu_reference() {
    let Some(dev) = device("scan_decode_matches_cpu_reference") else { return };
    let mut rng = Rng::fresh("gpu-scan-decode");
    for (dt, d, hq, hkv, share, refresh, page, k, bk, sk, lens) in [
        (DType::Bf16, 128, 32, 32, 1, 1, None, 64, 2, 1, &[1usize, 700, 5000, 20000][..]),
        (DType::Bf16, 128, 32, 8, 2, 3, Some(16), 512, 2, 1, &[1, 700, 5000, 20000][..]),
        (DType::Bf16, 128, 32, 8, 1, 3, None, 512, 2, 1, &[3000, 9][..]),
        (DType::F16, 64, 4, 4, 1, 3, Some(1), 2048, 2, 1, &[1, 700, 5000][..]),
        (DType::F16, 256, 4, 2, 2, 1, Some(64), 40, 4, 3, &[1, 700, 5000][..]),
        (DType::Bf16, 64, 8, 2, 2, 2, Some(5), 96, 3, 1, &[33, 4000][..]),
        (DType::Bf16, 128, 8, 8, 1, 1, None, 64, 2, 2, &[100, 450][..]),
    ] {
        let mut cfg = config(dt, d, hq, hkv);
        (cfg.mask_sharing, cfg.refresh, cfg.k, cfg.window) = (share, refresh, k, 32);
        (cfg.bk, cfg.sk, cfg.decode_selection) = (bk, sk, hip_selection::HIP_ATTN_SELECT_SCAN as u32);
        let what = format!(
            "scan decode {dt:?} d{d} {hq}/{hkv} share {share} refresh {refresh} page {page:?} k {k} bk {bk} sk {sk} lens {lens:?}"
        );
        decode_lockstep(dev.as_ref(), cfg, lens, 5, page, &mut rng, &what, Inputs::Random);
    }
}

/// SCAN over a 128k-key paged cache (many splits, each selecting from thousands of blocks), beside a short
/// sequence, in lockstep with the CPU.
#[test]
fn scan_decode_128k_cache() {
    let Some(dev) = device("scan_decode_128k_cache") else { return };
    let mut rng = Rng::fresh("gpu-scan-128k");
    let t = if std::env::var_os("HIP_ATTN_GPU_TESTS_ON_CPU").is_some() { 8192 } else { 131072 };
    let mut cfg = config(DType::Bf16, 128, 8, 2);
    (cfg.refresh, cfg.decode_selection) = (3, hip_selection::HIP_ATTN_SELECT_SCAN as u32);
    decode_lockstep(dev.as_ref(), cfg, &[t, 3000], 4, Some(64), &mut rng, "scan decode 128k paged", Inputs::Random);
}

/// A key planted anywhere in the search domain with a logit far above the rest is always selected by SCAN
/// (the tree search misses such keys away from its representatives): block 0, the last block before the local
/// window, and random positions, over several sequences and heads, contiguous and paged.
#[test]
fn scan_decode_selects_a_planted_key() {
    let Some(dev) = device("scan_decode_selects_a_planted_key") else { return };
    let dev = dev.as_ref();
    let mut rng = Rng::fresh("gpu-scan-planted");
    let dt = DType::Bf16;
    for (hq, hkv, share, page) in [(4usize, 4usize, 1u32, None), (8, 2, 2, Some(16)), (8, 2, 1, Some(7))] {
        let d = 128;
        let mut cfg = config(dt, d as u32, hq as u32, hkv as u32);
        (cfg.mask_sharing, cfg.refresh, cfg.k, cfg.decode_selection) =
            (share, 1, 64, hip_selection::HIP_ATTN_SELECT_SCAN as u32);
        let c = valid(&cfg);
        let ctx = on(dev, cfg);
        let lens = [30000usize, 5000, 1000];
        for round in 0..3 {
            let q = Tensor::random(&mut rng, dt, lens.len(), hq, d, 0, 1.0);
            let mut k: Vec<Tensor> = lens.iter().map(|&l| Tensor::random(&mut rng, dt, l, hkv, d, 0, 1.0)).collect();
            let v: Vec<Tensor> = lens.iter().map(|&l| Tensor::random(&mut rng, dt, l, hkv, d, 0, 1.0)).collect();
            // planted[b][mh] = the block that must be selected.
            let mut planted = vec![vec![0usize; c.mask_heads()]; lens.len()];
            for (b, (&len, planted_b)) in lens.iter().zip(planted.iter_mut()).enumerate() {
                let keys = BlockKeys::new(len - 1, len, c.sink, c.window, c.bk, c.causal);
                let mut used = std::collections::HashSet::new();
                for (mh, planted_bm) in planted_b.iter_mut().enumerate() {
                    // The key of the mask head's first q head, scaled by 8 (exact in bf16): its logit is 8 |q|^2,
                    // far above any random key's. Mask heads of one kv head get different positions.
                    let h = c.mask_head_q_heads(mh).next().unwrap();
                    let g = c.kv_head_of(h);
                    let mut t = match (round, mh) {
                        (0, 0) => c.sink,
                        (0, 1) => keys.e - 1,
                        _ => c.sink + rng.below(keys.e - c.sink),
                    };
                    while !used.insert((g, t)) {
                        t = c.sink + rng.below(keys.e - c.sink);
                    }
                    let row: Vec<f32> = q.at(b, h).iter().map(|x| 8.0 * x).collect();
                    let at = (t * hkv + g) * d;
                    k[b].data[at..at + d].copy_from_slice(&row);
                    *planted_bm = (t - c.sink) / c.bk;
                }
            }
            let cap = lens[0];
            let cache = Cache { k, v, page_size: page, capacity: cap }.upload(dev, dt, &mut rng);
            let state = dev.zeroed(ctx.state_size(lens.len() as u32));
            run_decode(dev, &ctx, dt, &q, &cache, &lens, cap, &state).unwrap();
            let st = dev.download(&state);
            for (b, want) in planted.iter().enumerate() {
                for (mh, &blk) in want.iter().enumerate() {
                    let (magic, _, _, blocks) = record(&st, state_ints(&c), b * c.mask_heads() + mh);
                    assert_eq!(magic, hip_attn::plan::STATE_MAGIC);
                    assert_eq!(blocks.len(), c.kb());
                    assert!(
                        blocks.contains(&(blk as i32)),
                        "round {round} seq {b} mask head {mh}: planted block {blk} missing: {blocks:?}"
                    );
                }
            }
        }
    }
    eprintln!("SCAN selected every planted key");
}

#[test]
fn cuda_graph_replays_decode_across_refreshes() {
    graph_replays_decode("cuda_graph_replays_decode_across_refreshes", hip_selection::HIP_ATTN_SELECT_TREE);
}

/// The same with SCAN selection: the scan and merge kernels decide on the device, from the record, whether a
/// replay searches.
#[test]
fn cuda_graph_replays_scan_decode_across_refreshes() {
    graph_replays_decode("cuda_graph_replays_scan_decode_across_refreshes", hip_selection::HIP_ATTN_SELECT_SCAN);
}

fn graph_replays_decode(name: &str, selection: hip_selection) {
    let Some(dev) = device(name) else { return };
    if dev.backend() != hip_backend::HIP_ATTN_BACKEND_CUDA as u32 {
        skip(name, "needs a GPU");
        return;
    }
    let mut rng = Rng::fresh("gpu-graph");
    let dt = DType::Bf16;
    let mut cfg = config(dt, 128, 8, 2);
    (cfg.refresh, cfg.k, cfg.window, cfg.decode_selection) = (3, 64, 32, selection as u32);
    let c = valid(&cfg);
    let (cap, batch, steps) = (3000usize, 2usize, 8usize);
    let k: Vec<Tensor> = (0..batch).map(|_| Tensor::random(&mut rng, dt, cap, 2, 128, 0, 1.0)).collect();
    let v: Vec<Tensor> = (0..batch).map(|_| Tensor::random(&mut rng, dt, cap, 2, 128, 0, 1.0)).collect();
    let (cctx, dctx) = (on(&Host, cfg), on(dev.as_ref(), cfg));
    let ccache = Cache { k: k.clone(), v: v.clone(), page_size: Some(16), capacity: cap }.upload(&Host, dt, &mut rng);
    let dcache =
        Cache { k: k.clone(), v: v.clone(), page_size: Some(16), capacity: cap }.upload(dev.as_ref(), dt, &mut rng);
    // Fixed device buffers the graph captures by address; their contents change between replays.
    let q0 = Tensor::random(&mut rng, dt, batch, 8, 128, 0, 1.0);
    let qb = dev.upload(&q0.bytes(dt));
    let lensb = dev.upload(&i32_bytes(&[0, 0]));
    let ob = dev.poisoned(batch * 8 * 128 * 2);
    let lseb = dev.poisoned(batch * 8 * 4);
    let dstate = dev.zeroed(dctx.state_size(batch as u32));
    let ws_bytes = dctx.decode_ws(batch as u32, cap as u32);
    let ws = dev.zeroed(ws_bytes);
    let args = decode_args(&q0, &qb, &dcache, &lensb, cap, &dstate, &ob, &lseb);
    let stream = dev.stream() as sys::CUstream;
    // SAFETY: capture on our stream; every buffer outlives the graph.
    let graph = unsafe {
        result::stream::begin_capture(stream, sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL).unwrap();
        let st = hip_decode_step(dctx.0, &args, ws.addr as *mut c_void, ws_bytes, dev.stream());
        let g = result::stream::end_capture(stream).unwrap();
        assert_eq!(st, hip_status::HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
        let exec = result::graph::instantiate(g, sys::CUgraphInstantiate_flags(0)).unwrap();
        result::graph::destroy(g).unwrap();
        exec
    };
    let mut cstate = Host.zeroed(cctx.state_size(batch as u32));
    for t in 0..steps {
        let lens = [2000 + t, 2900 + t];
        let q = Tensor::random(&mut rng, dt, batch, 8, 128, 0, 1.0);
        // SAFETY: synchronous copies into the graph's input buffers, then a replay on the same stream.
        unsafe {
            result::memcpy_htod_sync(qb.addr as sys::CUdeviceptr, &q.bytes(dt)).unwrap();
            result::memcpy_htod_sync(lensb.addr as sys::CUdeviceptr, &i32_bytes(&[lens[0] as i32, lens[1] as i32]))
                .unwrap();
            result::memset_d8_sync(ob.addr as sys::CUdeviceptr, 0xFF, ob.bytes).unwrap();
            result::graph::launch(graph, stream).unwrap();
        }
        dev.sync();
        let co = run_decode(&Host, &cctx, dt, &q, &ccache, &lens, cap, &cstate).unwrap();
        let ds = dev.download(&dstate);
        let cs = Host.download(&cstate);
        let got = q.unpack(dt, &dev.download(&ob));
        for idx in 0..batch * c.mask_heads() {
            let (cr, dr) = (record(&cs, state_ints(&c), idx), record(&ds, state_ints(&c), idx));
            assert_eq!(dr.1 as usize, t % 3 + 1, "replay {t}: the device step counter drives the refresh");
            if cr != dr {
                eprintln!("replay {t} record {idx}: near-tie mask difference; continuing from the device state");
            }
        }
        cstate = Host.upload(&ds);
        let want: Vec<f64> = co.o.iter().map(|&x| x as f64).collect();
        let err = rel_l2(&got, &want);
        assert!(err < tolerance(dt), "graph replay {t}: rel L2 {err}");
    }
    // SAFETY: the exec graph is no longer used.
    unsafe { result::graph::exec_destroy(graph) }.unwrap();
    eprintln!("graph ({selection:?}): {steps} replays across refreshes match the CPU reference");
}

#[test]
fn merge_matches_cpu_reference() {
    let Some(dev) = device("merge_matches_cpu_reference") else { return };
    let mut rng = Rng::fresh("gpu-merge");
    for dt in [DType::Bf16, DType::F16] {
        let cfg = config(dt, 128, 4, 4);
        let (n, h, d) = (37usize, 4usize, 128usize);
        let mut a = Tensor::random(&mut rng, dt, n, h, d, 0, 1.0);
        let b = Tensor::random(&mut rng, dt, n, h, d, 0, 1.0);
        let mut la: Vec<f32> = (0..n * h).map(|_| 5.0 * rng.sym()).collect();
        la[3] = f32::NEG_INFINITY;
        let mut lb: Vec<f32> = (0..n * h).map(|i| if i == 3 { f32::NEG_INFINITY } else { 5.0 * rng.sym() }).collect();
        // Row 5: a NaN lse makes the row NaN (row 9: also beside an empty side). Row 7: a -inf side's O is never
        // read, NaN there or not.
        la[5] = f32::NAN;
        (la[9], lb[9]) = (f32::NAN, f32::NEG_INFINITY);
        la[7] = f32::NEG_INFINITY;
        a.data[7 * d + 2] = f32::NAN;
        let mut outs = Vec::new();
        for mem in [&Host as &dyn Mem, dev.as_ref()] {
            let ctx = on(mem, cfg);
            let (ab, bb) = (mem.upload(&a.bytes(dt)), mem.upload(&b.bytes(dt)));
            let (lab, lbb) = (mem.upload(&encode(DType::F32, &la)), mem.upload(&encode(DType::F32, &lb)));
            let (ob, lob) = (mem.poisoned(n * h * d * 2), mem.poisoned(n * h * 4));
            let args = hip_merge_args {
                struct_size: std::mem::size_of::<hip_merge_args>() as u32,
                num_tokens: n as u32,
                num_heads: h as u32,
                reserved_u32: 0,
                o_a: a.view(&ab),
                lse_a: lab.addr as *const f32,
                o_b: b.view(&bb),
                lse_b: lbb.addr as *const f32,
                o_out: hip_tensor_mut {
                    data: ob.addr as *mut c_void,
                    token_stride: (h * d) as i64,
                    head_stride: d as i64,
                },
                lse_out: lob.addr as *mut f32,
                reserved: [0; 2],
            };
            // SAFETY: buffers span the described extents.
            let st = unsafe { hip_merge_states(ctx.0, &args, mem.stream()) };
            assert_eq!(st, hip_status::HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
            outs.push((decode(dt, &mem.download(&ob)), f32s(&mem.download(&lob))));
        }
        for out in &outs {
            for r in [5, 9] {
                assert!(
                    out.0[r * d..(r + 1) * d].iter().all(|x| x.is_nan()) && out.1[r].is_nan(),
                    "row {r} must be NaN"
                );
            }
            assert!(out.0[7 * d..8 * d].iter().all(|x| x.is_finite()), "row 7 must not read the -inf side's O");
        }
        let keep = |o: &[f32]| -> Vec<f32> {
            o.iter().enumerate().filter(|(i, _)| ![5, 9].contains(&(i / d))).map(|(_, &x)| x).collect()
        };
        let want: Vec<f64> = keep(&outs[0].0).iter().map(|&x| x as f64).collect();
        assert!(rel_l2(&keep(&outs[1].0), &want) < tolerance(dt));
        for (i, (x, y)) in outs[0].1.iter().zip(&outs[1].1).enumerate().filter(|(i, _)| ![5, 9].contains(i)) {
            assert!(x == y || (x - y).abs() < 1e-5 * x.abs().max(1.0), "lse {i}: {y} vs {x}");
        }
    }
}

#[test]
fn prefill_bad_cu_seqlens_zero_rows_when_every_sequence_looks_dense() {
    let name = "prefill_bad_cu_seqlens_zero_rows_when_every_sequence_looks_dense";
    let Some(dev) = device(name) else { return };
    if dev.backend() != hip_backend::HIP_ATTN_BACKEND_CUDA as u32 {
        skip(name, "the CPU backend reports at once");
        return;
    }
    let mut rng = Rng::fresh("gpu-prefill-index");
    let dt = DType::Bf16;
    let ctx = on(dev.as_ref(), config(dt, 64, 2, 2));
    // Sequence 1 has 24 keys but max_seqlen_k claims 16: with the default k every sequence of at most 16 keys is
    // dense, so the host launches only the dense attention kernel, which must still zero the bad sequence's rows.
    let p = Problem::new(&mut rng, dt, 64, 2, 2, &[16, 16], &[16, 24], 0);
    let out = run_prefill_claiming(dev.as_ref(), &ctx, &p, false, 16).unwrap();
    let row = 2 * 64;
    assert!(out.o[16 * row..].iter().all(|&x| x == 0.0), "the bad sequence's output is zeroed");
    assert!(out.lse[16 * 2..].iter().all(|&x| x == f32::NEG_INFINITY), "the bad sequence's LSE is -inf");
    assert!(out.o[..16 * row].iter().all(|x| x.is_finite()), "the good sequence still computed");
    let Err(err) = run_prefill(dev.as_ref(), &ctx, &p, false) else { panic!("the device fault was not reported") };
    assert_eq!(err.0, hip_status::HIP_ATTN_STATUS_BAD_INDEX, "{}", err.1);
    assert!(err.1.contains("cu_seqlens"), "{}", err.1);
    run_prefill(dev.as_ref(), &ctx, &p, false).expect("the fault is gone");
}

#[test]
fn device_index_errors_are_reported_by_the_next_call() {
    let Some(dev) = device("device_index_errors_are_reported_by_the_next_call") else { return };
    if dev.backend() != hip_backend::HIP_ATTN_BACKEND_CUDA as u32 {
        skip("device_index_errors_are_reported_by_the_next_call", "the CPU backend reports at once");
        return;
    }
    let mut rng = Rng::fresh("gpu-index");
    let dt = DType::Bf16;
    // Several splits per head (the split rule also caps them at max_seqlen_k / 64, here the capacity 256: 4), then
    // one (a small key budget with HIP_ATTN_FLAG_BATCH_INVARIANT: no combine).
    for (k, window, flags, cap) in [(512, 128, 0, 256), (32, 16, HIP_ATTN_FLAG_BATCH_INVARIANT, 64)] {
        let mut cfg = config(dt, 64, 4, 4);
        (cfg.k, cfg.window, cfg.flags) = (k, window, flags);
        let ctx = on(dev.as_ref(), cfg);
        let k: Vec<Tensor> = (0..2).map(|_| Tensor::random(&mut rng, dt, cap, 4, 64, 0, 1.0)).collect();
        let cache =
            Cache { k: k.clone(), v: k.clone(), page_size: Some(8), capacity: cap }.upload(dev.as_ref(), dt, &mut rng);
        let q = Tensor::random(&mut rng, dt, 2, 4, 64, 0, 1.0);
        let state = dev.zeroed(ctx.state_size(2));
        // seqlens_k[1] = 999 > max_seqlen_k: only the device can see it.
        let out = run_decode(dev.as_ref(), &ctx, dt, &q, &cache, &[10, 999], cap, &state).unwrap();
        assert!(out.o[4 * 64..].iter().all(|&x| x == 0.0), "the bad sequence's output is zeroed");
        assert!(out.lse[4..].iter().all(|&x| x == f32::NEG_INFINITY), "the bad sequence's LSE is -inf");
        assert!(out.o[..4 * 64].iter().all(|x| x.is_finite()), "the good sequence still computed");
        let err = run_decode(dev.as_ref(), &ctx, dt, &q, &cache, &[10, 20], cap, &state).unwrap_err();
        assert_eq!(err.0, hip_status::HIP_ATTN_STATUS_BAD_INDEX, "{}", err.1);
        assert!(err.1.contains("seqlens_k"), "{}", err.1);
        run_decode(dev.as_ref(), &ctx, dt, &q, &cache, &[10, 20], cap, &state).expect("the fault is gone");
    }
}

/// A `hip_log_callback` that appends each message to the `Vec<String>` that `user` points to.
unsafe extern "C" fn collect_log(user: *mut c_void, _level: u32, msg: *const std::ffi::c_char) {
    // SAFETY: the caller passes a live Vec<String> as log_user_data; msg is a C string valid during the call.
    let v = unsafe { &mut *(user as *mut Vec<String>) };
    v.push(unsafe { std::ffi::CStr::from_ptr(msg) }.to_string_lossy().into_owned());
}

#[test]
fn kernel_cache_and_creation_time() {
    let Some(dev) = device("kernel_cache_and_creation_time") else { return };
    if dev.backend() != hip_backend::HIP_ATTN_BACKEND_CUDA as u32 {
        skip("kernel_cache_and_creation_time", "needs a GPU");
        return;
    }
    let dir = std::env::temp_dir().join(format!("hip-attn-kcache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cdir = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    let mut times = Vec::new();
    for round in 0..2 {
        let mut log: Vec<String> = Vec::new();
        let mut cfg = config(DType::Bf16, 128, 32, 8);
        cfg.kernel_cache_dir = cdir.as_ptr();
        cfg.log_callback = Some(collect_log);
        cfg.log_user_data = &mut log as *mut Vec<String> as *mut c_void;
        let t0 = std::time::Instant::now();
        let ctx = on(dev.as_ref(), cfg);
        times.push(t0.elapsed().as_secs_f64());
        drop(ctx);
        let joined = log.join("\n");
        eprintln!("round {round} ({:.3} s):\n{joined}", times[round]);
        assert!(
            joined.contains(if round == 0 { "compiled with NVRTC" } else { "loaded from the kernel cache" }),
            "{joined}"
        );
    }
    // A corrupt cache file falls back to compiling.
    for entry in std::fs::read_dir(&dir).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let mut cfg = config(DType::Bf16, 128, 32, 8);
    cfg.kernel_cache_dir = cdir.as_ptr();
    drop(on(dev.as_ref(), cfg));
    // The kernels are several modules, one cache file each: one damaged file among good ones costs one compile.
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    // (A host with one compiling thread builds the single program: one file.)
    let split = hip_attn::cuda::compile::compile_threads() > 1;
    assert_eq!(files.len() > 1, split, "one cache file per compile unit: {files:?}");
    std::fs::write(&files[0], b"garbage").unwrap();
    let mut log: Vec<String> = Vec::new();
    let mut cfg = config(DType::Bf16, 128, 32, 8);
    cfg.kernel_cache_dir = cdir.as_ptr();
    cfg.log_callback = Some(collect_log);
    cfg.log_user_data = &mut log as *mut Vec<String> as *mut c_void;
    drop(on(dev.as_ref(), cfg));
    let joined = log.join("\n");
    assert!(joined.contains(&format!("1 of {} modules compiled with NVRTC", files.len())), "{joined}");
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("context creation: cold {:.3} s, cached {:.3} s", times[0], times[1]);
}

#[test]
fn params_layout_matches_device() {
    let Some(dev) = device("params_layout_matches_device") else { return };
    if dev.backend() != hip_backend::HIP_ATTN_BACKEND_CUDA as u32 {
        skip("params_layout_matches_device", "needs a GPU");
        return;
    }
    let cfg = config(DType::Bf16, 128, 8, 8);
    let c = valid(&cfg);
    let opts = hip_attn::config::CreateOptions { kernel_cache_dir: None, log: hip_attn::config::Logger::silent() };
    let backend = hip_attn::cuda::CudaBackend::new(&c, 0, &opts).unwrap();
    let want = hip_attn::cuda::params::expected_layout();
    let out = dev.zeroed(want.len() * 8);
    // SAFETY: out holds want.len() u64s.
    unsafe { backend.launch_layout_kernel(out.addr as u64, dev.stream() as usize) }.unwrap();
    let got: Vec<u64> = dev.download(&out).chunks_exact(8).map(|x| u64::from_le_bytes(x.try_into().unwrap())).collect();
    assert_eq!(got, want);
}

/// Bits of a decode step's outputs and LSEs.
fn bits(out: &DecodeOut) -> Vec<u32> {
    out.o.iter().chain(&out.lse).map(|x| x.to_bits()).collect()
}

/// Identical inputs give identical bits run to run (prefill and decode); with HIP_ATTN_FLAG_BATCH_INVARIANT a
/// sequence decoded alone gives the same bits as inside a batch of other lengths (the split count would differ
/// without the flag, since it follows batch size and max_seqlen_k); prefill is batch-invariant always.
#[test]
fn deterministic_and_batch_invariant() {
    let Some(dev) = device("deterministic_and_batch_invariant") else { return };
    let dev = dev.as_ref();
    let mut rng = Rng::fresh("gpu-determinism");
    let dt = DType::Bf16;
    let (hq, hkv, d) = (8, 2, 128);
    let mut cfg = config(dt, d as u32, hq as u32, hkv as u32);
    (cfg.k, cfg.refresh, cfg.flags) = (128, 1, HIP_ATTN_FLAG_BATCH_INVARIANT);
    let ctx = on(dev, cfg);

    let p = Problem::new(&mut rng, dt, d, hq, hkv, &[700, 64, 3000], &[900, 64, 3000], 0);
    let a = run_prefill(dev, &ctx, &p, true).unwrap();
    let b = run_prefill(dev, &ctx, &p, true).unwrap();
    assert!(a.o.iter().zip(&b.o).all(|(x, y)| x.to_bits() == y.to_bits()), "prefill output differs run to run");
    assert!(a.lse.iter().zip(&b.lse).all(|(x, y)| x.to_bits() == y.to_bits()), "prefill LSE differs run to run");
    assert_eq!(a.state, b.state, "prefill mask state differs run to run");
    // Sequence 2 alone.
    let cut = |x: &Tensor, from: usize, n: usize| Tensor {
        rows: n,
        heads: x.heads,
        d: x.d,
        pad: 0,
        data: x.data[from * x.heads * x.d..(from + n) * x.heads * x.d].to_vec(),
    };
    let alone = Problem {
        tq: vec![3000],
        tk: vec![3000],
        q: cut(&p.q, p.q0(2), 3000),
        k: cut(&p.k, p.k0(2), 3000),
        v: cut(&p.v, p.k0(2), 3000),
        ..p.clone()
    };
    let s = run_prefill(dev, &ctx, &alone, false).unwrap();
    let rows = 3000 * hq * d;
    assert!(
        s.o.iter().zip(&a.o[p.q0(2) * hq * d..][..rows]).all(|(x, y)| x.to_bits() == y.to_bits()),
        "prefill of a sequence depends on its batch"
    );

    let lens = [5000, 37, 20000, 700];
    let k: Vec<Tensor> = lens.iter().map(|&l| Tensor::random(&mut rng, dt, l, hkv, d, 0, 1.0)).collect();
    let v: Vec<Tensor> = lens.iter().map(|&l| Tensor::random(&mut rng, dt, l, hkv, d, 0, 1.0)).collect();
    let cap = 20000;
    let cache = Cache { k: k.clone(), v: v.clone(), page_size: Some(16), capacity: cap }.upload(dev, dt, &mut rng);
    let q = Tensor::random(&mut rng, dt, lens.len(), hq, d, 0, 1.0);
    let step = |state_batch: usize| dev.zeroed(ctx.state_size(state_batch as u32));
    let whole = run_decode(dev, &ctx, dt, &q, &cache, &lens, cap, &step(4)).unwrap();
    let again = run_decode(dev, &ctx, dt, &q, &cache, &lens, cap, &step(4)).unwrap();
    assert!(bits(&whole) == bits(&again), "decode differs run to run");
    for b in 0..lens.len() {
        let one = Cache { k: vec![k[b].clone()], v: vec![v[b].clone()], page_size: Some(16), capacity: lens[b] }
            .upload(dev, dt, &mut rng);
        let qb = cut(&q, b, 1);
        let single = run_decode(dev, &ctx, dt, &qb, &one, &lens[b..b + 1], lens[b], &step(1)).unwrap();
        let want: Vec<u32> =
            whole.o[b * hq * d..][..hq * d].iter().chain(&whole.lse[b * hq..][..hq]).map(|x| x.to_bits()).collect();
        assert!(bits(&single) == want, "decode of sequence {b} (length {}) alone differs from the batch", lens[b]);
    }
    eprintln!("prefill and decode bit-identical run to run; sequences alone equal their batch rows");
}

/// Handle shared between threads: hip_ctx is documented thread-safe for run calls with separate workspaces.
struct SharedCtx(*mut hip_ctx);
// SAFETY: the library's contract (README "Threads") allows concurrent run calls on one context.
unsafe impl Send for SharedCtx {}
unsafe impl Sync for SharedCtx {}
impl SharedCtx {
    fn ctx(&self) -> Ctx {
        Ctx(self.0)
    }
}

/// Four threads, each with its own stream: two with their own contexts, two sharing one; every result equals
/// the serial run's bits.
#[test]
fn concurrent_streams_match_serial() {
    let Some(dev) = device("concurrent_streams_match_serial") else { return };
    let mut rng = Rng::fresh("gpu-streams");
    let dt = DType::F16;
    let backend = dev.backend();
    // hip_config holds pointers (not Send): each thread builds its own.
    let make_cfg = move || {
        let mut c = config(dt, 64, 4, 2);
        (c.k, c.backend) = (64, backend);
        c
    };
    let cfg = make_cfg();
    let problems: Vec<Problem> =
        (0..4).map(|i| Problem::new(&mut rng, dt, 64, 4, 2, &[1500 + 100 * i], &[2000 + 100 * i], 0)).collect();
    let serial_ctx = on(dev.as_ref(), cfg);
    let serial: Vec<Vec<u32>> = problems
        .iter()
        .map(|p| run_prefill(dev.as_ref(), &serial_ctx, p, false).unwrap().o.iter().map(|x| x.to_bits()).collect())
        .collect();
    // `dev` (and its lock on device memory) lives to the end: every context below holds device memory.
    let shared = SharedCtx(Ctx::new(&cfg).unwrap().into_raw());
    let got: Vec<Vec<u32>> = std::thread::scope(|s| {
        let handles: Vec<_> = problems
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let shared = &shared;
                s.spawn(move || {
                    let mem = device_with("concurrent_streams_match_serial (thread)", Lock::Inherited).unwrap();
                    let own = (i < 2).then(|| Ctx::new(&make_cfg()).unwrap());
                    // Not dropped here: the shared context is destroyed once, after every thread is done.
                    let borrowed = std::mem::ManuallyDrop::new(shared.ctx());
                    let ctx: &Ctx = own.as_ref().unwrap_or(&borrowed);
                    let mut out = Vec::new();
                    for _ in 0..3 {
                        out = run_prefill(mem.as_ref(), ctx, p, false).unwrap().o.iter().map(|x| x.to_bits()).collect();
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    drop(shared.ctx());
    for (i, (g, w)) in got.iter().zip(&serial).enumerate() {
        assert!(g == w, "thread {i}: concurrent result differs from the serial run");
    }
    eprintln!("4 threads on 4 streams (2 own contexts, 2 sharing one) match the serial run bit for bit");
}

/// Device memory exhausted at context creation: a specific status and message; once the memory is free again,
/// creation and a run call in the same process succeed.
#[test]
fn out_of_memory_then_recovery() {
    let Some(dev) = device_with("out_of_memory_then_recovery", Lock::Exclusive) else { return };
    if dev.backend() != hip_backend::HIP_ATTN_BACKEND_CUDA as u32 {
        skip("out_of_memory_then_recovery", "needs a GPU (device memory cannot be exhausted on the CPU stand-in)");
        return;
    }
    let mut rng = Rng::fresh("gpu-oom");
    let mut cfg = config(DType::F16, 64, 2, 1);
    cfg.backend = dev.backend();
    // A private cache directory: creation must load a module (device memory) whether or not it compiles.
    let dir = std::env::temp_dir().join(format!("hip-attn-oom-{}", std::process::id()));
    let dir_c = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    cfg.kernel_cache_dir = dir_c.as_ptr();
    let mut hog = Vec::new();
    let mut chunk = 8usize << 30;
    while chunk >= 64 << 10 {
        // SAFETY: plain allocation; freed by DevAlloc's drop below.
        match unsafe { result::malloc_sync(chunk) } {
            Ok(p) => hog.push(gpu_mem::DevAlloc(p)),
            Err(_) => chunk /= 2,
        }
    }
    let err = Ctx::new(&cfg).err();
    let held: usize = hog.len();
    drop(hog);
    let (st, msg) = err.expect("context creation succeeded with device memory exhausted");
    assert_eq!(st, hip_status::HIP_ATTN_STATUS_OUT_OF_MEMORY, "{msg}");
    assert!(msg.contains("out of memory") || msg.contains("OUT_OF_MEMORY"), "{msg}");
    let ctx = Ctx::new(&cfg).expect("creation after the memory was freed");
    let p = Problem::new(&mut rng, DType::F16, 64, 2, 1, &[100], &[100], 0);
    run_prefill(dev.as_ref(), &ctx, &p, false).expect("prefill after recovery");
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("out of memory ({held} allocations held): {msg}; recovered");
}

#[test]
fn prefill_cu_seqlens_short_of_total_fails_every_sequence_on_the_device() {
    let name = "prefill_cu_seqlens_short_of_total_fails_every_sequence_on_the_device";
    let Some(dev) = device(name) else { return };
    if dev.backend() != hip_backend::HIP_ATTN_BACKEND_CUDA as u32 {
        skip(name, "the CPU backend reports at once");
        return;
    }
    let mut rng = Rng::fresh("gpu-prefill-totals");
    let dt = DType::Bf16;
    for k in [512, 8] {
        // k 512: every sequence is dense (only the dense kernel runs); k 8: the block-sparse kernel runs too.
        let mut cfg = config(dt, 64, 2, 2);
        (cfg.k, cfg.window) = (k, 8);
        let ctx = on(dev.as_ref(), cfg);
        let p = Problem::new(&mut rng, dt, 64, 2, 2, &[16, 16], &[16, 40], 0);
        // cu_seqlens_q ends at 30, total_q is 32: every sequence is individually fine, the call is not.
        let maxk = *p.tk.iter().max().unwrap();
        let PrefillOut { o, lse, .. } = run_prefill_faulty(dev.as_ref(), &ctx, &p, false, maxk, &[0, 16, 30])
            .unwrap_or_else(|(st, m)| panic!("k {k}: the host cannot see it: {st:?}: {m}"));
        let row = 2 * 64;
        assert!(o[..30 * row].iter().all(|&x| x == 0.0), "k {k}: every sequence's rows are zeroed");
        assert!(lse[..30 * 2].iter().all(|&x| x == f32::NEG_INFINITY), "k {k}: every sequence's LSE is -inf");
        let Err(err) = run_prefill(dev.as_ref(), &ctx, &p, false) else { panic!("k {k}: the fault was not reported") };
        assert_eq!(err.0, hip_status::HIP_ATTN_STATUS_BAD_INDEX, "{}", err.1);
        assert!(err.1.contains("cu_seqlens_q[batch_size] != total_q"), "{}", err.1);
        run_prefill(dev.as_ref(), &ctx, &p, false).expect("the fault is gone");
    }
}

/// NaN and infinity in Q, K and V: the CUDA backend against the CPU reference (tests/nonfinite.rs has the
/// CPU-side contract). k covers every sequence, so masks cannot differ by rounding. Prefill: rows the CPU makes
/// NaN are NaN on CUDA with lse NaN, every other row matches within tolerance. Decode, with one split (the
/// attention kernel writes the row) and with several (the combine merges them): a row attending a NaN key or
/// holding a NaN query is NaN with lse NaN on both backends, every other row matches.
#[test]
fn nonfinite_inputs_match_cpu() {
    let name = "nonfinite_inputs_match_cpu";
    let Some(dev) = device(name) else { return };
    let mut rng = Rng::fresh("gpu-nonfinite");
    let dt = DType::Bf16;
    let (d, hq) = (64usize, 4usize);
    let mut cfg = config(dt, d as u32, hq as u32, 2);
    // k covers every sequence (at most 1024 blocks on CUDA).
    (cfg.k, cfg.bq, cfg.bk, cfg.sink, cfg.window) = (2048, 16, 2, 2, 4);
    let (cpu, gpu) = (on(&Host, cfg), on(dev.as_ref(), cfg));
    let mut p = Problem::new(&mut rng, dt, d, hq, 2, &[40, 40], &[40, 64], 0);
    let at = |t: &Tensor, r: usize, h: usize, i: usize| (r * t.heads + h) * t.d + i;
    let i = at(&p.q, 10, 0, 3);
    p.q.data[i] = f32::NAN;
    let i = at(&p.q, 17, 1, 5);
    p.q.data[i] = f32::INFINITY;
    let i = at(&p.k, 40 + 30, 0, 0);
    p.k.data[i] = f32::NAN;
    let i = at(&p.v, 40 + 1, 1, 7);
    p.v.data[i] = f32::INFINITY;
    let want = run_prefill(&Host, &cpu, &p, false).unwrap();
    let got = run_prefill(dev.as_ref(), &gpu, &p, false).unwrap_or_else(|(st, m)| panic!("{st:?}: {m}"));
    let (mut nan_rows, mut close_rows) = (0, 0);
    for r in 0..p.q.rows {
        for h in 0..hq {
            let (w, g) = (&want.o[(r * hq + h) * d..][..d], &got.o[(r * hq + h) * d..][..d]);
            for e in 0..d {
                if w[e].is_finite() {
                    assert!(
                        g[e].is_finite() && (g[e] - w[e]).abs() < 0.05,
                        "row {r} head {h} element {e}: {} vs {}",
                        g[e],
                        w[e]
                    );
                } else {
                    assert!(!g[e].is_finite(), "row {r} head {h} element {e}: {} on CUDA, {} on the CPU", g[e], w[e]);
                }
            }
            if w.iter().all(|x| x.is_nan()) {
                nan_rows += 1;
                assert!(g.iter().all(|x| x.is_nan()), "row {r} head {h}: NaN on the CPU, not all NaN on CUDA");
                let (lw, lg) = (want.lse[r * hq + h], got.lse[r * hq + h]);
                assert!(lw.is_nan() && lg.is_nan(), "lse of NaN row {r} head {h}: CPU {lw}, CUDA {lg}");
            } else {
                close_rows += 1;
                let (lw, lg) = (want.lse[r * hq + h], got.lse[r * hq + h]);
                assert!((lw - lg).abs() < 1e-2 * lw.abs().max(1.0), "lse of row {r} head {h}: {lg} vs {lw}");
            }
        }
    }
    assert!(nan_rows >= 2 + 10 * 2, "the poisoned rows are NaN on the CPU ({nan_rows})");
    eprintln!("{name}: prefill {nan_rows} NaN rows, {close_rows} finite rows agree");

    // Decode: sequence 0 has a NaN in its newest key (kv head 0: q heads 0 and 1), sequence 1 a NaN in the query
    // of head 3; everything else is clean. Short sequences run one split, long ones several and the combine.
    for (cap, lens) in [(48usize, [30usize, 48usize]), (1200, [1100, 1200])] {
        let mut k: Vec<Tensor> = (0..2).map(|_| Tensor::random(&mut rng, dt, cap, 2, d, 0, 1.0)).collect();
        let v: Vec<Tensor> = (0..2).map(|_| Tensor::random(&mut rng, dt, cap, 2, d, 0, 1.0)).collect();
        k[0].data[((lens[0] - 1) * 2) * d + 4] = f32::NAN;
        let mut q = Tensor::random(&mut rng, dt, 2, hq, d, 0, 1.0);
        q.data[(hq + 3) * d + 9] = f32::NAN;
        let run = |mem: &dyn Mem, ctx: &Ctx| {
            let cache =
                Cache { k: k.clone(), v: v.clone(), page_size: None, capacity: cap }.upload(mem, dt, &mut Rng::new(1));
            run_decode(mem, ctx, dt, &q, &cache, &lens, cap, &mem.zeroed(ctx.state_size(2))).unwrap()
        };
        let (want, got) = (run(&Host, &cpu), run(dev.as_ref(), &gpu));
        for (b, h) in (0..2).flat_map(|b| (0..hq).map(move |h| (b, h))) {
            let row = b * hq + h;
            let (w, g) = (&want.o[row * d..][..d], &got.o[row * d..][..d]);
            let (lw, lg) = (want.lse[row], got.lse[row]);
            if (b == 0 && h < 2) || (b == 1 && h == 3) {
                assert!(
                    w.iter().all(|x| x.is_nan()) && lw.is_nan(),
                    "cap {cap}: the CPU makes sequence {b} head {h} NaN"
                );
                assert!(
                    g.iter().all(|x| x.is_nan()) && lg.is_nan(),
                    "cap {cap}: sequence {b} head {h} on CUDA: {:?}.. lse {lg}",
                    &g[..4]
                );
            } else {
                assert!(w.iter().zip(g).all(|(a, b)| (a - b).abs() < 0.05), "cap {cap}: sequence {b}, head {h}");
                assert!(
                    (lw - lg).abs() < 1e-2 * lw.abs().max(1.0),
                    "cap {cap}: lse of sequence {b} head {h}: {lg} vs {lw}"
                );
            }
        }
        eprintln!("{name}: decode cap {cap}: NaN rows NaN on both backends, the others agree");
    }
}

/// The configurations of issue 12's racecheck report, on the cluster decode search where it is chosen (MHA-32 and
/// GQA 32/8, masks per q head and per kv head, k = 64 and 512, contiguous and paged, a small mixed batch whose long
/// sequence takes 3-6 search iterations and whose short one takes fewer or none, refresh 1), then the same with a
/// bad page in one sequence (`decode_search_abort_on_a_bad_page`). Small enough for the sanitizers
/// (scripts/gpu-run.sh sanitize runs it under racecheck, memcheck and initcheck).
#[test]
fn decode_cluster_search_configs() {
    let Some(dev) = device("decode_cluster_search_configs") else { return };
    let mut rng = Rng::fresh("gpu-decode-cluster");
    for (hq, hkv, share) in [(32, 32, 1), (32, 8, 1), (32, 8, 2)] {
        for k in [64, 512] {
            for page in [None, Some(16)] {
                let mut cfg = config(DType::Bf16, 128, hq, hkv);
                (cfg.mask_sharing, cfg.refresh, cfg.k) = (share, 1, k);
                // At most 66 searches keep the cluster kernel on a 132-SM GPU (searches x 8 CTAs <= 4 per SM).
                let lens: &[usize] = if share == 2 { &[300, 2600, 1200] } else { &[2600, 300] };
                let what = format!("cluster search {hq}/{hkv} share {share} k {k} page {page:?}");
                decode_lockstep(dev.as_ref(), cfg, lens, 2, page, &mut rng, &what, Inputs::Random);
            }
        }
    }
}

/// A mask shared by a kv head's q heads, for groups of 3, 8 (at head_dim 256) and 64 q heads: on sm_90+ the
/// cluster search (hip_decode_search_wide) and then the attention kernels, which take every q head of the group
/// from the one record; the same configurations with masks per q head run the whole step in hip_decode_step_wide
/// (one cluster per q head), so both cluster kernels are held to the CPU reference at these shapes.
#[test]
fn decode_head_groups() {
    let Some(dev) = device("decode_head_groups") else { return };
    let mut rng = Rng::fresh("gpu-decode-head-groups");
    for (d, hq, hkv, k, page) in [(128, 6, 2, 64, None), (256, 16, 2, 128, Some(16)), (128, 64, 1, 512, Some(64))] {
        for sharing in [2, 1] {
            let mut cfg = config(DType::Bf16, d, hq, hkv);
            (cfg.mask_sharing, cfg.refresh, cfg.k) = (sharing, 2, k);
            let what = format!("d{d} {hq}/{hkv} mask sharing {sharing} k {k} page {page:?}");
            decode_lockstep(dev.as_ref(), cfg, &[1, 2600, 700], 3, page, &mut rng, &what, Inputs::Random);
        }
    }
}

/// A bad page in one sequence of a batch, met by the search's first iteration in rank 0 of the cluster or in
/// another CTA (rank 2 of 8): the search is abandoned on every CTA of that cluster, the sequence's output is zeros
/// and its LSE -inf, the other sequences match the CPU reference, and the next call reports BAD_INDEX.
#[test]
fn decode_search_abort_on_a_bad_page() {
    let name = "decode_search_abort_on_a_bad_page";
    let Some(dev) = device(name) else { return };
    if dev.backend() != hip_backend::HIP_ATTN_BACKEND_CUDA as u32 {
        skip(name, "the CPU backend refuses a bad page at once");
        return;
    }
    let mut rng = Rng::fresh("gpu-decode-abort");
    for (hq, hkv, share) in [(32, 32, 1), (32, 8, 1), (32, 8, 2)] {
        for k in [64, 512] {
            let mut cfg = config(DType::Bf16, 128, hq, hkv);
            (cfg.mask_sharing, cfg.refresh, cfg.k) = (share, 1, k);
            let lens: &[usize] = if share == 2 { &[300, 2600, 1200] } else { &[300, 2600] };
            let kb = valid(&cfg).kb();
            // Branch 1 is scored by rank 0; branch kb/2 + 3 by rank 2 (each rank scores 2*kb/8 branches).
            for branch in [1, kb / 2 + 3] {
                let what = format!("bad page {hq}/{hkv} share {share} k {k} branch {branch}");
                decode_bad_page(dev.as_ref(), cfg, lens, 16, 1, branch, &mut rng, &what);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn decode_bad_page(
    dev: &dyn Mem,
    cfg: hip_config,
    lens: &[usize],
    page: usize,
    bad: usize,
    branch: usize,
    rng: &mut Rng,
    what: &str,
) {
    let c = valid(&cfg);
    let dt = c.dtype;
    let (hq, hkv, d, batch) = (c.num_q_heads, c.num_kv_heads, c.head_dim, lens.len());
    let cap = *lens.iter().max().unwrap();
    let k: Vec<Tensor> = lens.iter().map(|_| Tensor::random(rng, dt, cap, hkv, d, 0, 1.0)).collect();
    let v: Vec<Tensor> = lens.iter().map(|_| Tensor::random(rng, dt, cap, hkv, d, 0, 1.0)).collect();
    let cache = |mem: &dyn Mem, rng: &mut Rng| {
        Cache { k: k.clone(), v: v.clone(), page_size: Some(page), capacity: cap }.upload(mem, dt, rng)
    };
    let (cctx, dctx) = (on(&Host, cfg), on(dev, cfg));
    let (ccache, mut dcache) = (cache(&Host, rng), cache(dev, rng));
    // The representative of `branch` in the first iteration of the bad sequence's search (docs/ALGORITHM.md steps 2-3).
    let keys = BlockKeys::new(lens[bad] - 1, lens[bad], c.sink, c.window, c.bk, c.causal);
    let (nb, kb) = (keys.nb, c.kb());
    assert!(nb > kb && branch < 2 * kb, "{what}: the bad sequence must search");
    let (x, y) = (branch / 2 * nb / kb, (branch / 2 + 1) * nb / kb);
    let h = (y - x).div_ceil(2);
    let (a, e) = if branch.is_multiple_of(2) { (x, x + h) } else { (x + h, y) };
    let key = c.sink + (a + e - 1) / 2 * c.bk;
    let per_seq = dcache.desc.page_table_stride as usize;
    let good_table = dcache.desc.page_table;
    let mut table = i32s(&dev.download(dcache.page_table.as_ref().unwrap()));
    table[bad * per_seq + key / page] = dcache.desc.num_pages as i32 + 7;
    let bad_pt = dev.upload(&i32_bytes(&table));
    dcache.desc.page_table = bad_pt.addr as *const i32;

    let q = Tensor::random(rng, dt, batch, hq, d, 0, 1.0);
    let cstate = Host.zeroed(cctx.state_size(batch as u32));
    let dstate = dev.zeroed(dctx.state_size(batch as u32));
    // The CPU reference runs with the good table: it refuses a bad page for the whole batch.
    let co = run_decode(&Host, &cctx, dt, &q, &ccache, lens, cap, &cstate).unwrap();
    let dout = run_decode(dev, &dctx, dt, &q, &dcache, lens, cap, &dstate).unwrap();
    let (cs, ds) = (Host.download(&cstate), dev.download(&dstate));
    let (mut got, mut want, mut ties) = (Vec::new(), Vec::new(), 0);
    for b in 0..batch {
        for h in 0..hq {
            let (o, lse) = (&dout.o[(b * hq + h) * d..][..d], dout.lse[b * hq + h]);
            if b == bad {
                assert!(
                    o.iter().all(|&x| x == 0.0) && lse == f32::NEG_INFINITY,
                    "{what}: head {h} of the bad sequence"
                );
                continue;
            }
            let idx = b * c.mask_heads() + c.mask_head_of(h);
            if record(&cs, state_ints(&c), idx) != record(&ds, state_ints(&c), idx) {
                ties += 1; // (mask agreement itself is decode_matches_cpu_reference's subject)
                continue;
            }
            got.extend_from_slice(o);
            want.extend(co.o[(b * hq + h) * d..][..d].iter().map(|&x| x as f64));
        }
    }
    for h in 0..c.mask_heads() {
        assert_ne!(
            record(&ds, state_ints(&c), bad * c.mask_heads() + h).0,
            hip_attn::plan::STATE_MAGIC,
            "{what}: no mask kept"
        );
    }
    let err = rel_l2(&got, &want);
    assert!(err < tolerance(dt), "{what}: good sequences rel L2 {err}");
    let e = run_decode(dev, &dctx, dt, &q, &dcache, lens, cap, &dstate).unwrap_err();
    assert_eq!(e.0, hip_status::HIP_ATTN_STATUS_BAD_INDEX, "{what}: {}", e.1);
    assert!(e.1.contains("page index"), "{what}: {}", e.1);
    dcache.desc.page_table = good_table;
    run_decode(dev, &dctx, dt, &q, &dcache, lens, cap, &dstate).expect("the fault is gone");
    eprintln!("{what}: bad sequence zeroed, the others match ({ties} heads skipped for near-tie masks)");
}

/// A mask state that a context of another configuration wrote (the same record size, another window) is searched
/// anew on the device, with this context's fingerprint, giving the CPU reference's result; the next call reports
/// BAD_INDEX saying so.
#[test]
fn decode_mask_state_of_another_configuration() {
    let name = "decode_mask_state_of_another_configuration";
    let Some(dev) = device(name) else { return };
    if dev.backend() != hip_backend::HIP_ATTN_BACKEND_CUDA as u32 {
        skip(name, "the CPU backend reports at once (tests/bad_input.rs)");
        return;
    }
    let mut rng = Rng::fresh("gpu-decode-foreign");
    let dt = DType::Bf16;
    let mut cfg = config(dt, 64, 4, 2);
    (cfg.k, cfg.window, cfg.refresh) = (32, 16, 8);
    let mut other = cfg;
    other.window = 32;
    let (lens, cap) = ([300usize, 900], 900usize);
    let k: Vec<Tensor> = (0..2).map(|_| Tensor::random(&mut rng, dt, cap, 2, 64, 0, 1.0)).collect();
    let dcache =
        Cache { k: k.clone(), v: k.clone(), page_size: Some(8), capacity: cap }.upload(dev.as_ref(), dt, &mut rng);
    let ccache = Cache { k: k.clone(), v: k, page_size: Some(8), capacity: cap }.upload(&Host, dt, &mut rng);
    let q = Tensor::random(&mut rng, dt, 2, 4, 64, 0, 1.0);
    let (writer, reader, cpu) = (on(dev.as_ref(), other), on(dev.as_ref(), cfg), on(&Host, cfg));
    assert_eq!(writer.state_size(2), reader.state_size(2));
    let dstate = dev.zeroed(reader.state_size(2));
    run_decode(dev.as_ref(), &writer, dt, &q, &dcache, &lens, cap, &dstate).unwrap();
    let dout = run_decode(dev.as_ref(), &reader, dt, &q, &dcache, &lens, cap, &dstate).unwrap();
    let cstate = Host.zeroed(cpu.state_size(2));
    let co = run_decode(&Host, &cpu, dt, &q, &ccache, &lens, cap, &cstate).unwrap();
    let c = valid(&cfg);
    let fp = hip_attn::plan::state_fingerprint(&c);
    let ds = i32s(&dev.download(&dstate));
    for r in 0..2 * c.mask_heads() {
        let rec = &ds[r * state_ints(&c)..];
        assert_eq!(
            (rec[0], rec[1], rec[hip_attn::plan::STATE_FPRINT_IDX]),
            (hip_attn::plan::STATE_MAGIC, 1, fp),
            "record {r}"
        );
    }
    let want: Vec<f64> = co.o.iter().map(|&x| x as f64).collect();
    let err = rel_l2(&dout.o, &want);
    assert!(err < tolerance(dt), "searched anew: rel L2 {err}");
    let e = run_decode(dev.as_ref(), &reader, dt, &q, &dcache, &lens, cap, &dstate).unwrap_err();
    assert_eq!(e.0, hip_status::HIP_ATTN_STATUS_BAD_INDEX, "{}", e.1);
    assert!(e.1.contains("written by a context of another configuration"), "{}", e.1);
    run_decode(dev.as_ref(), &reader, dt, &q, &dcache, &lens, cap, &dstate).expect("reported once");
}

/// "sm_90a" where the tests run on an sm_90 device 0 (`on_gpu`: a device was found, so the driver is
/// initialised), else "none": the architecture that decides whether the Hopper kernels are compiled.
fn sm90a_or_none(on_gpu: bool) -> &'static str {
    let cc = |attr| {
        // SAFETY: only called once a device was found (the driver is initialised) and device 0 exists.
        unsafe { result::device::get_attribute(result::device::get(0).unwrap(), attr) }.unwrap()
    };
    if on_gpu
        && cc(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) == 9
        && cc(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR) == 0
    {
        "sm_90a"
    } else {
        "none"
    }
}

/// The dense kernel the plan picks for a `Problem` run through `run_prefill` on this machine's device 0 (what
/// the backend's `dense_plan` decides: device buffers are 256-byte aligned, o has q's strides).
fn planned_dense_kernel(c: &Config, p: &Problem, on_gpu: bool) -> hip_attn::plan::DenseKernel {
    let arch = sm90a_or_none(on_gpu);
    let compiled = hip_attn::cuda::backend::hopper_dense_compiled(c, arch)
        && std::env::var("HIP_ATTN_DENSE_KERNEL").map_or(true, |v| v != "classic");
    let shape = hip_attn::plan::PrefillShape {
        batch: p.tq.len(),
        total_q: p.q.rows,
        max_seqlen_q: *p.tq.iter().max().unwrap(),
        max_seqlen_k: *p.tk.iter().max().unwrap(),
    };
    let op = |t: &Tensor| hip_attn::plan::DenseOperand { addr: 0, row_stride: t.row_stride(), head_stride: t.d };
    let mut plan = hip_attn::plan::PrefillPlan::new(c, shape).unwrap();
    plan.choose_dense_kernel(c, compiled, p.k.rows, [op(&p.q), op(&p.k), op(&p.v), op(&p.q)]);
    plan.dense_kernel
}

/// Prefills where every key block is selected (k >= T, or a window >= T), so that only the dense attention runs:
/// on an H200 (sm_90a, bf16, head_dim 128, copyable strides) the Hopper kernel, else and for the odd-stride
/// views the classic one; both against the CPU reference over varlen batches of awkward lengths, Tq == Tk and
/// chunked (Tq < Tk), GQA and MHA, causal and not.
#[test]
fn prefill_dense_hopper_matches_cpu_reference() {
    let test = "prefill_dense_hopper_matches_cpu_reference";
    let Some(dev) = device(test) else { return };
    let on_gpu = std::env::var_os("HIP_ATTN_GPU_TESTS_ON_CPU").is_none();
    let mut rng = Rng::fresh("gpu-prefill-dense-hopper");
    // The Hopper dense kernel is the default where compiled; HIP_ATTN_DENSE_KERNEL=classic runs the same cases
    // through the classic kernel (src/cuda/backend.rs).
    // HIP_ATTN_TEST_CASES=3,10 runs only those cases (to replay one).
    let only = only_cases();
    const ALL: &[usize] = &[1, 63, 64, 65, 127, 128, 129, 1000];
    const CHUNK_Q: &[usize] = &[1, 63, 65, 128, 1000, 129];
    const CHUNK_K: &[usize] = &[100, 63, 300, 129, 1000, 600];
    // (hq, hkv, causal, k, window, pad, tq, tk, expect Hopper where compiled). Sizes: several 128-row tiles and
    // partial ones, small enough that the f64 CPU reference of all cases takes well under a minute.
    type Case = (u32, u32, u32, u32, u32, usize, &'static [usize], &'static [usize], bool);
    let cases: &[Case] = &[
        (32, 8, 1, 64, 8192, 0, ALL, ALL, true),
        (32, 8, 1, 64, 8192, 8, CHUNK_Q, CHUNK_K, true),
        (8, 2, 1, 64, 8192, 0, &[1500, 65, 1], &[1500, 129, 1], true),
        (4, 4, 0, 2048, 8192, 0, &[129, 1000, 64], &[129, 1000, 65], true),
        (4, 4, 1, 2048, 0, 16, &[1000, 127, 1], &[2000, 127, 64], true),
        (4, 4, 0, 2048, 0, 0, &[63, 1, 500], &[63, 100, 1500], true),
        // One sequence each: the calls the Hopper kernel takes (batches keep the classic kernel, plan.rs).
        (32, 8, 1, 64, 8192, 0, &[1100], &[1100], true),
        (32, 8, 1, 64, 8192, 8, &[600], &[1500], true),
        (4, 4, 0, 2048, 0, 0, &[129], &[129], true),
        (8, 2, 1, 2048, 0, 0, &[1], &[1], true),
        (32, 32, 1, 64, 8192, 0, &[65], &[65], true),
        // Padded token strides (whole 16-byte units, as the API requires of every bf16 view: a stride of 1027
        // elements is MISALIGNED_POINTER before any kernel runs, tests/bad_input.rs), one sequence: Hopper.
        (8, 2, 1, 64, 8192, 24, &[700], &[900], true),
        (4, 4, 0, 2048, 8192, 40, &[65], &[1000], true),
    ];
    for (n, &(hq, hkv, causal, k, window, pad, tq, tk, hopper)) in cases.iter().enumerate() {
        if only.as_ref().is_some_and(|o| !o.contains(&n)) {
            continue;
        }
        let t0 = std::time::Instant::now();
        let mut cfg = config(DType::Bf16, 128, hq, hkv);
        (cfg.causal, cfg.bq, cfg.bk, cfg.k, cfg.sink, cfg.window) = (causal, 64, 2, k, 4, window);
        let c = valid(&cfg);
        let p = Problem::new(&mut rng, DType::Bf16, 128, hq as usize, hkv as usize, tq, tk, pad);
        let max_k = *tk.iter().max().unwrap();
        assert!(hip_attn::plan::prefill_all_dense(&c, max_k), "case {n}: every block must be selected");
        let kernel = planned_dense_kernel(&c, &p, on_gpu);
        let is_hopper = matches!(kernel, hip_attn::plan::DenseKernel::Hopper { .. });
        eprintln!("{test} case {n}: dense kernel {kernel:?}");
        if !hopper {
            assert!(!is_hopper, "case {n}: odd strides must keep the classic kernel");
        }
        let devo = run_prefill(dev.as_ref(), &on(dev.as_ref(), cfg), &p, false).unwrap();
        eprintln!("{test} case {n}: device done after {:.1} s", t0.elapsed().as_secs_f64());
        let cpu = run_prefill(&Host, &on(&Host, cfg), &p, false).unwrap();
        let rows: Vec<usize> = (0..p.q.rows).collect();
        compare_rows(&c, &p, &cpu, &devo, &rows, &[], &format!("{test} case {n} ({kernel:?})"));
        eprintln!("{test} case {n}: checked after {:.1} s", t0.elapsed().as_secs_f64());
    }
}

/// Sharded decode (docs/ALGORITHM.md §8) on one GPU: each shard's step on its own stream, one after another,
/// merged by hip_merge_states on the device, equals the direct definition from the whole sequence
/// (`hip_attn::cpu::shard`). Each shard's mask records are held against the CPU backend's for the same call;
/// records that differ must be near-ties (f64 replay), and those heads are left out of the output comparison.
/// Cases: 2 to 4 shards with starts on and off the block grid, MHA and GQA with both mask sharings, TREE and
/// SCAN, contiguous and paged caches, and k = 0 (the middle shards attend nothing: zeros with LSE -inf).
#[test]
fn sharded_decode_matches_cpu_reference() {
    use common::shard::Sharded;
    let Some(dev) = device("sharded_decode_matches_cpu_reference") else { return };
    let mut rng = Rng::fresh("gpu-sharded-decode");
    let on_gpu = dev.backend() == hip_backend::HIP_ATTN_BACKEND_CUDA as u32;
    for (dt, d, hq, hkv, share, sel, page, k, starts, lens) in [
        (DType::Bf16, 128, 8, 2, 1, 0, None, 64, &[0usize, 1001, 2500][..], &[4000usize, 3100][..]),
        (DType::F16, 64, 4, 4, 1, 1, Some(16), 32, &[0, 777], &[2000, 900]),
        (DType::Bf16, 128, 8, 2, 2, 0, Some(64), 128, &[0, 5000, 10001, 15000], &[20000, 16000]),
        (DType::Bf16, 128, 8, 2, 2, 1, None, 256, &[0, 4099, 8195], &[12000, 9000]),
        (DType::F16, 128, 4, 2, 1, 0, None, 0, &[0, 100, 200], &[300]),
    ] {
        let mut cfg = config(dt, d, hq, hkv);
        (cfg.mask_sharing, cfg.decode_selection, cfg.k, cfg.window, cfg.refresh) = (share, sel, k, 32, 1);
        let c = valid(&cfg);
        let what = format!("sharded {dt:?} d{d} {hq}/{hkv} share {share} sel {sel} page {page:?} k {k} {starts:?}");
        let (d, hq) = (d as usize, hq as usize);
        let p = Sharded {
            dt,
            hq,
            hkv: hkv as usize,
            d,
            starts: starts.to_vec(),
            k: lens.iter().map(|&l| Tensor::random(&mut rng, dt, l, hkv as usize, d, 0, 1.0)).collect(),
            v: lens.iter().map(|&l| Tensor::random(&mut rng, dt, l, hkv as usize, d, 0, 1.0)).collect(),
            q: Tensor::random(&mut rng, dt, lens.len(), hq, d, 0, 1.0),
            page_size: page,
        };
        let (cctx, dctx) = (on(&Host, cfg), on(dev.as_ref(), cfg));
        let cshards: Vec<_> = (0..starts.len()).map(|i| p.upload(&Host, &cctx, &mut rng, i)).collect();
        let dshards: Vec<_> = (0..starts.len()).map(|i| p.upload(dev.as_ref(), &dctx, &mut rng, i)).collect();
        let mut skip = Vec::new();
        for i in 0..starts.len() {
            p.step(&cctx, i, &cshards[i], std::ptr::null_mut()).unwrap();
            let stream = if on_gpu {
                result::stream::create(result::stream::StreamKind::NonBlocking).unwrap()
            } else {
                std::ptr::null_mut()
            };
            p.step(&dctx, i, &dshards[i], stream as *mut c_void).unwrap_or_else(|e| panic!("{what} shard {i}: {e:?}"));
            if on_gpu {
                // SAFETY: the stream was created above and is destroyed once, after its work is done.
                unsafe {
                    result::stream::synchronize(stream).unwrap();
                    result::stream::destroy(stream).unwrap();
                }
            }
            let role = c.for_range(hip_attn::args::KeyRange { offset: starts[i], not_last: i + 1 < starts.len() });
            let (cs, ds) = (Host.download(&cshards[i].state), dev.download(&dshards[i].state));
            for b in 0..lens.len() {
                let (a, z) = p.range(i, b);
                let kcut = Tensor {
                    rows: z - a,
                    data: p.k[b].data[a * hkv as usize * d..z * hkv as usize * d].to_vec(),
                    ..p.k[b].clone()
                };
                for mh in 0..c.mask_heads() {
                    let idx = b * c.mask_heads() + mh;
                    let (cr, dr) = (record(&cs, state_ints(&c), idx), record(&ds, state_ints(&c), idx));
                    if cr == dr {
                        continue;
                    }
                    assert_eq!((cr.0, cr.1, cr.2), (dr.0, dr.1, dr.2), "{what} shard {i} seq {b} head {mh}: header");
                    let n = z - a;
                    let keys = BlockKeys::new(n - 1, n, role.sink, role.window, c.bk, c.causal);
                    let rows: Vec<(&[f32], &Tensor, usize, usize)> =
                        c.mask_head_q_heads(mh).map(|h| (p.q.at(b, h), &kcut, c.kv_head_of(h), 0)).collect();
                    let score = |rep| {
                        let (x, y) = keys.block_range(rep);
                        score_f64(&rows, x, y, c.sk)
                    };
                    let margin = match c.decode_selection {
                        Selection::Scan => scan_margin(keys.nb, c.kb(), score),
                        Selection::Tree => search_margin(keys.nb, c.kb(), score).1,
                    };
                    assert!(margin < tie_eps(d), "{what} shard {i} seq {b} head {mh}: masks differ, margin {margin}");
                    skip.extend(c.mask_head_q_heads(mh).map(|h| (b, h)));
                }
            }
        }
        let got = p.merge(dev.as_ref(), &dctx, &dshards);
        let (want_o, want_lse) = p.reference(&c);
        let (mut g, mut w) = (Vec::new(), Vec::new());
        for b in 0..lens.len() {
            for h in (0..hq).filter(|h| !skip.contains(&(b, *h))) {
                g.extend_from_slice(&got.o[(b * hq + h) * d..][..d]);
                w.extend(want_o[(b * hq + h) * d..][..d].iter().map(|&x| x as f64));
                let (l1, l2) = (want_lse[b * hq + h], got.lse[b * hq + h]);
                assert!((l1 - l2).abs() <= 1e-3 * l1.abs().max(1.0), "{what} seq {b} head {h}: lse {l2} vs {l1}");
            }
        }
        let err = rel_l2(&g, &w);
        assert!(err < tolerance(dt), "{what}: rel L2 {err}");
        eprintln!("{what}: merged shards match the reference (rel L2 {err:.2e}, {} near-tie heads)", skip.len());
    }
}

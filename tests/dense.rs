//! docs/ALGORITHM.md §6: with k >= T, or sink + window >= T, HiP equals dense attention; with k = 0 it equals
//! dense attention restricted to the sink and local sets.
mod common;
use common::*;
use hip_attn::tensor::DType;

struct Case {
    dt: DType,
    d: u32,
    hq: u32,
    hkv: u32,
    tq: &'static [usize],
    tk: &'static [usize],
    pad: usize,
}

fn cases() -> Vec<Case> {
    use DType::*;
    vec![
        Case { dt: Bf16, d: 128, hq: 32, hkv: 8, tq: &[70], tk: &[70], pad: 0 },
        Case { dt: F16, d: 64, hq: 4, hkv: 4, tq: &[1, 33, 100, 7], tk: &[1, 33, 100, 7], pad: 8 },
        Case { dt: F32, d: 128, hq: 8, hkv: 2, tq: &[5, 40], tk: &[61, 40], pad: 0 },
        Case { dt: Bf16, d: 64, hq: 6, hkv: 3, tq: &[17, 1, 65], tk: &[131, 9, 65], pad: 16 },
        Case { dt: F16, d: 256, hq: 2, hkv: 1, tq: &[37], tk: &[99], pad: 0 },
        Case { dt: F32, d: 64, hq: 4, hkv: 1, tq: &[1, 2, 3], tk: &[1, 2, 3], pad: 0 },
    ]
}

fn check(case: &Case, causals: &[u32], tune: impl Fn(&mut hip_attn::hip_config)) {
    let mut rng = Rng::fresh("dense");
    for &causal in causals {
        let mut cfg = config(case.dt, case.d, case.hq, case.hkv);
        cfg.causal = causal;
        cfg.bq = 8;
        cfg.bk = 3;
        tune(&mut cfg);
        // SAFETY: cfg has no cache dir pointer.
        let (valid, _) = unsafe { hip_attn::config::validate(&cfg) }.unwrap();
        let ctx = Ctx::new(&cfg).unwrap();
        let p = Problem::new(
            &mut rng,
            case.dt,
            case.d as usize,
            case.hq as usize,
            case.hkv as usize,
            case.tq,
            case.tk,
            case.pad,
        );
        let out = run_prefill(&Host, &ctx, &p, false).unwrap();
        let (want, want_lse) = dense(&p, valid.scale as f64, |_, _, pos, j| causal == 0 || j <= pos);
        let err = rel_l2(&out.o, &want);
        assert!(err < tolerance(case.dt), "dtype {:?} d {} causal {causal}: rel L2 {err}", case.dt, case.d);
        let lse_err = rel_l2(&out.lse, &want_lse);
        assert!(lse_err < 1e-5, "lse rel err {lse_err}");
    }
}

#[test]
fn k_covering_everything_is_dense() {
    for case in cases() {
        check(&case, &[1, 0], |c| c.k = 4096);
    }
}

#[test]
fn sink_plus_window_covering_everything_is_dense() {
    for case in cases() {
        // Only causal contexts have a local window.
        check(&case, &[1], |c| {
            c.k = 2;
            c.sink = 3;
            c.window = 200;
        });
    }
}

#[test]
fn k_zero_is_sink_plus_window() {
    let mut rng = Rng::fresh("streaming");
    for case in cases() {
        let mut cfg = config(case.dt, case.d, case.hq, case.hkv);
        cfg.k = 0;
        cfg.sink = 2;
        cfg.window = 5;
        cfg.bq = 4;
        let ctx = Ctx::new(&cfg).unwrap();
        let p = Problem::new(
            &mut rng,
            case.dt,
            case.d as usize,
            case.hq as usize,
            case.hkv as usize,
            case.tq,
            case.tk,
            case.pad,
        );
        let out = run_prefill(&Host, &ctx, &p, false).unwrap();
        let scale = 1.0 / (case.d as f64).sqrt();
        let (want, _) = dense(&p, scale, |b, _, pos, j| {
            // The block's first query anchors the window (docs/ALGORITHM.md): e_B = max(sink, p0 + 1 - window).
            let i = pos - (p.tk[b] - p.tq[b]);
            let p0 = p.tk[b] - p.tq[b] + i / 4 * 4;
            let e = (p0 + 1).saturating_sub(5).max(2);
            j <= pos && (j < 2 || j >= e)
        });
        let err = rel_l2(&out.o, &want);
        assert!(err < tolerance(case.dt), "dtype {:?}: rel L2 {err}", case.dt);
    }
}

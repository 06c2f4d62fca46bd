//! NaN and infinity in Q, K and V (the documented behaviour of hip_prefill and hip_decode_step on the CPU
//! backend): nothing crashes, the call succeeds, the rows that attend a non-finite value are non-finite, and
//! every other row is what clean inputs give.
mod common;
use common::*;
use hip_attn::tensor::DType;

const D: usize = 64;
const HQ: usize = 4;

fn row(x: &[f32], r: usize, h: usize) -> &[f32] {
    &x[(r * HQ + h) * D..(r * HQ + h + 1) * D]
}

#[test]
fn prefill_propagates_nan_and_inf_to_the_rows_that_attend_them() {
    let mut rng = Rng::new(21);
    let dt = DType::Bf16;
    let mut cfg = config(dt, D as u32, HQ as u32, 2);
    (cfg.k, cfg.bq, cfg.bk, cfg.sink, cfg.window) = (8, 4, 2, 2, 4);
    let ctx = Ctx::new(&cfg).unwrap();
    let clean = Problem::new(&mut rng, dt, D, HQ, 2, &[24, 24], &[24, 24], 0);
    let mut p = clean.clone();
    let at = |t: &Tensor, r: usize, h: usize, i: usize| (r * t.heads + h) * t.d + i;
    // Sequence 0: a NaN query (row 10, head 0) and an infinite one (row 17, head 1).
    let i = at(&p.q, 10, 0, 3);
    p.q.data[i] = f32::NAN;
    let i = at(&p.q, 17, 1, 5);
    p.q.data[i] = f32::INFINITY;
    // Sequence 1 (keys 24..48): a NaN key at position 12 of kv head 0 (q heads 0, 1), an infinite value in sink
    // token 1 of kv head 1 (q heads 2, 3).
    let i = at(&p.k, 24 + 12, 0, 0);
    p.k.data[i] = f32::NAN;
    let i = at(&p.v, 24 + 1, 1, 7);
    p.v.data[i] = f32::INFINITY;

    let want = run_prefill(&Host, &ctx, &clean, false).unwrap();
    let got = run_prefill(&Host, &ctx, &p, false).expect("non-finite inputs are not an error");
    let same = |r: usize, h: usize, what: &str| {
        let (a, b) = (row(&got.o, r, h), row(&want.o, r, h));
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{what}: row {r} head {h} differs from clean"
        );
        assert_eq!(got.lse[r * HQ + h].to_bits(), want.lse[r * HQ + h].to_bits(), "{what}: lse of row {r} head {h}");
    };
    let nan_row = |r: usize, h: usize, what: &str| {
        assert!(row(&got.o, r, h).iter().all(|x| x.is_nan()), "{what}: row {r} head {h} is not NaN");
        assert!(got.lse[r * HQ + h].is_nan(), "{what}: lse of row {r} head {h} is not NaN");
    };
    let finite_row = |r: usize, h: usize, what: &str| {
        assert!(row(&got.o, r, h).iter().all(|x| x.is_finite()), "{what}: row {r} head {h} is not finite");
        assert!(got.lse[r * HQ + h].is_finite(), "{what}: lse of row {r} head {h}");
    };
    // Sequence 0, heads 2 and 3: nothing non-finite anywhere near them.
    for r in 0..24 {
        for h in 2..4 {
            same(r, h, "seq 0, clean heads");
        }
    }
    // Sequence 0, heads 0 and 1: the poisoned query row is NaN; the other rows of its query block share its
    // search (their masks may change) and stay finite; every other block is as with clean inputs.
    for (h, bad) in [(0, 10), (1, 17)] {
        for r in 0..24 {
            if r == bad {
                nan_row(r, h, "poisoned query");
            } else if r / 4 == bad / 4 {
                finite_row(r, h, "query block of a poisoned query");
            } else {
                same(r, h, "other query blocks");
            }
        }
    }
    // Sequence 1, heads 0 and 1: key 12 is NaN. Queries before it never see it; those whose local window holds it
    // (the block of rows 12..15) are NaN; later ones are NaN exactly when the search selected its block.
    for h in 0..2 {
        for t in 0..24 {
            let r = 24 + t;
            if t < 12 {
                same(r, h, "before the NaN key");
            } else if t < 16 {
                nan_row(r, h, "NaN key in the local window");
            } else if row(&got.o, r, h)[0].is_nan() {
                nan_row(r, h, "NaN key selected");
            } else {
                finite_row(r, h, "NaN key not selected");
            }
        }
    }
    // Sequence 1, heads 2 and 3: the infinite value is in sink token 1, which every query from position 1 on
    // attends: that element of the output is non-finite, every other element and the lse (which V does not
    // enter) are what clean inputs give.
    for h in 2..4 {
        same(24, h, "position 0 does not see token 1");
        for t in 1..24 {
            let r = 24 + t;
            let (a, b) = (row(&got.o, r, h), row(&want.o, r, h));
            assert!(!a[7].is_finite(), "row {r} head {h}: element 7 is {}", a[7]);
            for e in (0..D).filter(|&e| e != 7) {
                assert_eq!(a[e].to_bits(), b[e].to_bits(), "row {r} head {h} element {e}");
            }
            assert_eq!(got.lse[r * HQ + h].to_bits(), want.lse[r * HQ + h].to_bits(), "lse of row {r} head {h}");
        }
    }
}

#[test]
fn decode_propagates_nan_to_the_rows_that_attend_it() {
    let mut rng = Rng::new(22);
    let dt = DType::F16;
    let mut cfg = config(dt, D as u32, HQ as u32, 2);
    (cfg.k, cfg.bk, cfg.sink, cfg.window) = (8, 2, 2, 4);
    let ctx = Ctx::new(&cfg).unwrap();
    let cap = 40;
    let k: Vec<Tensor> = (0..3).map(|_| Tensor::random(&mut rng, dt, cap, 2, D, 0, 1.0)).collect();
    let v: Vec<Tensor> = (0..3).map(|_| Tensor::random(&mut rng, dt, cap, 2, D, 0, 1.0)).collect();
    let mut q = Tensor::random(&mut rng, dt, 3, HQ, D, 0, 1.0);
    let lens = [30, 40, 25];
    let clean = Cache { k: k.clone(), v: v.clone(), page_size: None, capacity: cap }.upload(&Host, dt, &mut rng);
    let want = run_decode(&Host, &ctx, dt, &q, &clean, &lens, cap, &Host.zeroed(ctx.state_size(3))).unwrap();
    // Sequence 0: NaN in the newest key (always in the local window) of kv head 0; sequence 1: an infinite query
    // element of head 3; sequence 2 clean.
    let mut kd = k.clone();
    kd[0].data[(29 * 2) * D + 4] = f32::NAN;
    q.data[(HQ + 3) * D + 9] = f32::NEG_INFINITY;
    let dirty = Cache { k: kd, v, page_size: None, capacity: cap }.upload(&Host, dt, &mut rng);
    let got = run_decode(&Host, &ctx, dt, &q, &dirty, &lens, cap, &Host.zeroed(ctx.state_size(3)))
        .unwrap_or_else(|(st, m)| panic!("{st:?}: {m}"));
    for b in 0..3 {
        for h in 0..HQ {
            let (a, w) = (row(&got.o, b, h), row(&want.o, b, h));
            let (la, lw) = (got.lse[b * HQ + h], want.lse[b * HQ + h]);
            if (b == 0 && h < 2) || (b == 1 && h == 3) {
                assert!(a.iter().all(|x| x.is_nan()) && la.is_nan(), "sequence {b} head {h} is not NaN");
            } else {
                assert!(
                    a.iter().zip(w).all(|(x, y)| x.to_bits() == y.to_bits()) && la.to_bits() == lw.to_bits(),
                    "sequence {b} head {h} differs from clean"
                );
            }
        }
    }
}

/// Finite inputs whose every attended logit overflows to -inf (bf16 values near its maximum): no key can be
/// attended, so the row is zeros with lse -inf, as the CUDA kernels make it; not NaN (no logit is NaN).
#[test]
fn every_logit_minus_infinity_gives_zeros_not_nan() {
    let mut rng = Rng::new(22);
    let dt = DType::Bf16;
    let mut cfg = config(dt, D as u32, 1, 1);
    (cfg.k, cfg.bq, cfg.bk, cfg.sink, cfg.window) = (64, 4, 2, 2, 4);
    let ctx = Ctx::new(&cfg).unwrap();
    let mut p = Problem::new(&mut rng, dt, D, 1, 1, &[8], &[8], 0);
    // Query 5: 1e38 in element 0, zeros elsewhere; every key's element 0 is -1e38: each logit is -inf in f32.
    p.q.data[5 * D..6 * D].iter_mut().for_each(|x| *x = 0.0);
    p.q.data[5 * D] = 1e38;
    for t in 0..8 {
        p.k.data[t * D] = -1e38;
    }
    let got = run_prefill(&Host, &ctx, &p, false).expect("overflowing logits are not an error");
    let one = |r: usize| &got.o[r * D..(r + 1) * D]; // (one head)
    assert!(one(5).iter().all(|&x| x == 0.0), "row 5: {:?}", &one(5)[..4]);
    assert_eq!(got.lse[5], f32::NEG_INFINITY);
    assert!(one(4).iter().all(|x| x.is_finite()), "the other rows are computed as usual");
}

//! docs/ALGORITHM.md mask invariants, and the exact block top-Kb when NB <= 2*Kb (checked by brute force).
mod common;
use common::*;
use hip_attn::config::validate;
use hip_attn::plan::PrefillWorkspace;
use hip_attn::spec::BlockKeys;
use hip_attn::tensor::DType;

#[test]
fn masks_are_valid_and_exact_when_small() {
    let mut rng = Rng::fresh("mask");
    let mut exact_checked = 0;
    for (bq, bk, sq, sk, k, share) in [
        (8, 2, 1, 1, 16, 1),
        (16, 3, 2, 2, 30, 2),
        (4, 1, 1, 1, 9, 1),
        (8, 4, 3, 3, 40, 2),
        (32, 2, 1, 1, 64, 1),
        (8, 2, 1, 1, 120, 1),
        (4, 3, 2, 1, 150, 2),
    ] {
        let mut cfg = config(DType::F32, 64, 4, 2);
        (cfg.bq, cfg.bk, cfg.sq, cfg.sk, cfg.k, cfg.mask_sharing) = (bq, bk, sq, sk, k, share);
        (cfg.sink, cfg.window) = (3, 10);
        // SAFETY: no cache-dir pointer.
        let (c, _) = unsafe { validate(&cfg) }.unwrap();
        let ctx = Ctx::new(&cfg).unwrap();
        let p = Problem::new(&mut rng, DType::F32, 64, 4, 2, &[150, 37], &[300, 37], 0);
        let out = run_prefill(&Host, &ctx, &p, false).unwrap();
        for b in 0..2 {
            let (tq, tk) = (p.tq[b], p.tk[b]);
            for mh in 0..c.mask_heads() {
                for j in 0..tq.div_ceil(c.bq) {
                    let slot = PrefillWorkspace::slot(&c, p.q0(b), b, j);
                    let got = workspace_mask(&c, &out.workspace, p.q.rows, 2, slot, mh);
                    let (i0, i1) = (j * c.bq, ((j + 1) * c.bq).min(tq));
                    let keys = BlockKeys::new(tk - tq + i0, tk, c.sink, c.window, c.bk, true);
                    // Invariants: min(Kb, NB) distinct sorted blocks inside the search domain.
                    assert_eq!(got.len(), c.kb().min(keys.nb), "count");
                    assert!(got.windows(2).all(|w| w[0] < w[1]), "sorted and unique: {got:?}");
                    assert!(got.iter().all(|&x| x >= 0 && (x as usize) < keys.nb));
                    for &x in &got {
                        let (a, e) = keys.block_range(x as usize);
                        assert!(a >= c.sink.min(tk) && e <= keys.e, "block overlaps sink or local set");
                    }
                    if keys.nb <= c.kb() || keys.nb > 2 * c.kb() {
                        continue;
                    }
                    // Brute force in f64 over every block's sampled keys.
                    let mut scores: Vec<(f64, usize)> = (0..keys.nb)
                        .map(|blk| {
                            let (a, e) = keys.block_range(blk);
                            let mut best = f64::NEG_INFINITY;
                            for h in c.mask_head_q_heads(mh) {
                                for i in (i0..i1).step_by(c.sq) {
                                    for t in (a..e).step_by(c.sk) {
                                        let q = p.q.at(p.q0(b) + i, h);
                                        let kk = p.k.at(p.k0(b) + t, c.kv_head_of(h));
                                        best = best.max(q.iter().zip(kk).map(|(&x, &y)| x as f64 * y as f64).sum());
                                    }
                                }
                            }
                            (best, blk)
                        })
                        .collect();
                    scores.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap().then(x.1.cmp(&y.1)));
                    if (scores[c.kb() - 1].0 - scores[c.kb()].0).abs() < 1e-4 {
                        continue; // a near-tie at the boundary: either choice is right
                    }
                    let mut want: Vec<i32> = scores[..c.kb()].iter().map(|x| x.1 as i32).collect();
                    want.sort();
                    assert_eq!(got, want, "seq {b} mask head {mh} block {j}");
                    exact_checked += 1;
                }
            }
        }
    }
    assert!(exact_checked > 20, "only {exact_checked} blocks had NB in (Kb, 2Kb]");
}

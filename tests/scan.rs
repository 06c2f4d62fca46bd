//! SCAN selection on the CPU backend (docs/ALGORITHM.md "Selection modes: TREE and SCAN", issue 13): the exact block
//! top-Kb, used by decode steps that search when `decode_selection` is SCAN and by the prefill query blocks that
//! hold any of a sequence's last `prefill_scan_tail` queries. The expected selections are computed here from
//! the same f32 scores (spec::dot over the exact f32 inputs) by spec::brute_force_top and spec::tree_search.
mod common;
use common::*;
use hip_attn::config::{validate, Config};
use hip_attn::plan::{state_ints, PrefillWorkspace, STATE_MAGIC};
use hip_attn::spec::{brute_force_top, dot, tree_search, BlockKeys};
use hip_attn::tensor::DType;
use hip_attn::*;

const DT: DType = DType::F32;
const D: usize = 64;

fn setup(hq: u32, hkv: u32, share: u32, tail: u32, decode_sel: u32, refresh: u32) -> (hip_config, Config) {
    let mut cfg = config(DT, D as u32, hq, hkv);
    (cfg.bq, cfg.bk, cfg.k, cfg.sink, cfg.window, cfg.mask_sharing) = (8, 2, 8, 2, 4, share);
    (cfg.prefill_scan_tail, cfg.decode_selection, cfg.refresh) = (tail, decode_sel, refresh);
    // SAFETY: no cache-dir pointer.
    let (c, _) = unsafe { validate(&cfg) }.unwrap();
    (cfg, c)
}

const TREE: u32 = hip_selection::HIP_ATTN_SELECT_TREE as u32;
const SCAN: u32 = hip_selection::HIP_ATTN_SELECT_SCAN as u32;

/// The branch score of block `blk` for query rows `qs` (already sampled) against key rows `key(t)`: the max of
/// q.k over them and the block's keys taken with stride sk, in f32 as the backend computes it.
fn score<'a>(c: &Config, keys: &BlockKeys, qs: &[&[f32]], key: impl Fn(usize) -> &'a [f32], blk: usize) -> f32 {
    let (a, b) = keys.block_range(blk);
    let mut best = f32::NEG_INFINITY;
    for t in (a..b).step_by(c.sk) {
        for q in qs {
            best = best.max(dot(q, key(t)));
        }
    }
    best
}

/// TREE and SCAN selections of prefill query block [i0, i1) of sequence b for mask head mh.
fn prefill_expected(
    c: &Config,
    p: &Problem,
    b: usize,
    mh: usize,
    i0: usize,
    i1: usize,
) -> (BlockKeys, Vec<u32>, Vec<u32>) {
    let (tq, tk) = (p.tq[b], p.tk[b]);
    let keys = BlockKeys::new(tk - tq + i0, tk, c.sink, c.window, c.bk, c.causal);
    let qs: Vec<&[f32]> = c
        .mask_head_q_heads(mh)
        .flat_map(|h| (i0..i1).step_by(c.sq).map(move |i| (h, i)))
        .map(|(h, i)| p.q.at(p.q0(b) + i, h))
        .collect();
    let g = c.kv_head_of(c.mask_head_q_heads(mh).start);
    let s = |blk| score(c, &keys, &qs, |t| p.k.at(p.k0(b) + t, g), blk);
    (keys, tree_search(keys.nb, c.kb(), s), brute_force_top(keys.nb, c.kb(), s))
}

fn as_u32(v: &[i32]) -> Vec<u32> {
    v.iter().map(|&x| x as u32).collect()
}

/// A block uses SCAN exactly when it holds any of the last N queries of its sequence; N > Tq makes every block
/// SCAN. Checked block by block against both selections, on a batch of a full prefill and a chunk (Tq < Tk), with
/// masks per q head and per kv head.
#[test]
fn prefill_tail_blocks_use_scan_and_the_rest_tree() {
    let mut rng = Rng::fresh("scan-tail");
    let (mut distinguishing_scan, mut distinguishing_tree) = (0, 0);
    for share in [1, 2] {
        let p = Problem::new(&mut rng, DT, D, 4, 2, &[100, 37], &[100, 150], 0);
        for tail in [0usize, 1, 8, 9, 10, 37, 100, 1000] {
            let (cfg, c) = setup(4, 2, share, tail as u32, TREE, 8);
            let ctx = Ctx::new(&cfg).unwrap();
            let out = run_prefill(&Host, &ctx, &p, false).unwrap();
            for b in 0..2 {
                let tq = p.tq[b];
                for j in 0..tq.div_ceil(c.bq) {
                    let (i0, i1) = (j * c.bq, ((j + 1) * c.bq).min(tq));
                    let scan = tail > 0 && i1 + tail > tq;
                    for mh in 0..c.mask_heads() {
                        let slot = PrefillWorkspace::slot(&c, p.q0(b), b, j);
                        let got = as_u32(&workspace_mask(&c, &out.workspace, p.q.rows, 2, slot, mh));
                        let (_, tree, brute) = prefill_expected(&c, &p, b, mh, i0, i1);
                        let want = if scan { &brute } else { &tree };
                        assert_eq!(&got, want, "share {share} tail {tail} seq {b} block {j} mh {mh}: scan {scan}");
                        if tree != brute {
                            *(if scan { &mut distinguishing_scan } else { &mut distinguishing_tree }) += 1;
                        }
                    }
                }
            }
        }
    }
    // The check means something only where the two selections differ, on both sides of the boundary.
    assert!(distinguishing_scan > 20 && distinguishing_tree > 20, "{distinguishing_scan} / {distinguishing_tree}");
}

/// A key planted anywhere in the search domain of a sequence's last query block, with a logit far above every
/// other, is always selected when that block uses SCAN; the tree search, scoring only representatives, misses
/// some positions.
#[test]
fn planted_key_is_always_selected_by_prefill_scan_tail() {
    let mut rng = Rng::fresh("scan-planted-prefill");
    let t = 120;
    let base = Problem::new(&mut rng, DT, D, 1, 1, &[t], &[t], 0);
    let mut tree_missed = 0;
    for tail in [0u32, 1] {
        let (cfg, c) = setup(1, 1, 1, tail, TREE, 8);
        let ctx = Ctx::new(&cfg).unwrap();
        let j_last = (t - 1) / c.bq;
        let i0 = j_last * c.bq;
        let keys = BlockKeys::new(i0, t, c.sink, c.window, c.bk, true);
        for pos in keys.sink..keys.e {
            let mut p = Problem {
                dt: DT,
                d: D,
                hq: 1,
                hkv: 1,
                tq: vec![t],
                tk: vec![t],
                q: base.q.clone(),
                k: base.k.clone(),
                v: base.v.clone(),
            };
            // k_pos = 40 q_{i0}: its logit with that query is 40 |q|^2, far above any random key's.
            let q = p.q.at(i0, 0).to_vec();
            let row = &mut p.k.data[pos * D..(pos + 1) * D];
            row.iter_mut().zip(&q).for_each(|(k, &x)| *k = 40.0 * x);
            let out = run_prefill(&Host, &ctx, &p, true).unwrap();
            let got = workspace_mask(&c, &out.workspace, t, 1, PrefillWorkspace::slot(&c, 0, 0, j_last), 0);
            let (_, _, _, state_blocks) = record(&out.state, state_ints(&c), 0);
            assert_eq!(got, state_blocks, "mask_state_out holds the last block's mask");
            let hit = got.contains(&(((pos - c.sink) / c.bk) as i32));
            if tail > 0 {
                assert!(hit, "SCAN missed the key planted at {pos}: {got:?}");
            } else if !hit {
                tree_missed += 1;
            }
        }
    }
    assert!(tree_missed > 0, "TREE found every planted key: the test does not tell the selections apart");
}

/// Decode searches (refresh 1) with SCAN select a planted key anywhere in the domain; with TREE some are missed.
#[test]
fn planted_key_is_always_selected_by_decode_scan() {
    let mut rng = Rng::fresh("scan-planted-decode");
    let len = 150;
    let (hq, hkv) = (4usize, 2usize);
    let k0 = Tensor::random(&mut rng, DT, len, hkv, D, 0, 1.0);
    let v = Tensor::random(&mut rng, DT, len, hkv, D, 0, 1.0);
    let q = Tensor::random(&mut rng, DT, 1, hq, D, 0, 1.0);
    let mut tree_missed = 0;
    for sel in [TREE, SCAN] {
        // Per kv head: the planted key must win for the mask head whose group holds the query it copies.
        let (cfg, c) = setup(hq as u32, hkv as u32, 2, 0, sel, 1);
        let ctx = Ctx::new(&cfg).unwrap();
        let keys = BlockKeys::new(len - 1, len, c.sink, c.window, c.bk, true);
        for pos in keys.sink..keys.e {
            let mut k = k0.clone();
            // Plant into kv head 1 a copy of q head 3 (group of kv head 1 = q heads 2 and 3).
            let qrow = q.at(0, 3).to_vec();
            let at = (pos * hkv + 1) * D;
            k.data[at..at + D].iter_mut().zip(&qrow).for_each(|(x, &y)| *x = 40.0 * y);
            let cache = Cache { k: vec![k], v: vec![v.clone()], page_size: Some(16), capacity: len }
                .upload(&Host, DT, &mut rng);
            let state = Host.zeroed(ctx.state_size(1));
            run_decode(&Host, &ctx, DT, &q, &cache, &[len], len, &state).unwrap();
            let (magic, _, _, blocks) = record(&Host.download(&state), state_ints(&c), 1);
            assert_eq!(magic, STATE_MAGIC);
            let hit = blocks.contains(&(((pos - c.sink) / c.bk) as i32));
            if sel == SCAN {
                assert!(hit, "SCAN missed the key planted at {pos}: {blocks:?}");
            } else if !hit {
                tree_missed += 1;
            }
        }
    }
    assert!(tree_missed > 0, "TREE found every planted key: the test does not tell the selections apart");
}

/// Decode with SCAN and refresh 3: steps 0, 3, 6 search (the record's blocks are the exact top-Kb of the cache
/// as it is then), the steps between reuse the stored blocks and e; every output is attention over those keys.
#[test]
fn decode_scan_refreshes_every_refresh_steps_and_reuses_between() {
    let mut rng = Rng::fresh("scan-decode-reuse");
    let (hq, hkv) = (2usize, 1usize);
    let (cfg, c) = setup(hq as u32, hkv as u32, 1, 0, SCAN, 3);
    let ctx = Ctx::new(&cfg).unwrap();
    let (l0, steps) = (90usize, 8);
    let cap = l0 + steps;
    let k = Tensor::random(&mut rng, DT, cap, hkv, D, 0, 1.0);
    let v = Tensor::random(&mut rng, DT, cap, hkv, D, 0, 1.0);
    let cache =
        Cache { k: vec![k.clone()], v: vec![v.clone()], page_size: None, capacity: cap }.upload(&Host, DT, &mut rng);
    let state = Host.zeroed(ctx.state_size(1));
    let mut stored: Vec<(i32, Vec<i32>)> = vec![];
    let (mut searches, mut differs) = (0, 0);
    for t in 0..steps {
        let len = l0 + t;
        let p = len - 1;
        let q = Tensor::random(&mut rng, DT, 1, hq, D, 0, 1.0);
        let out = run_decode(&Host, &ctx, DT, &q, &cache, &[len], cap, &state).unwrap();
        let st = Host.download(&state);
        if t % 3 == 0 {
            searches += 1;
            stored = (0..hq)
                .map(|h| {
                    let keys = BlockKeys::new(p, len, c.sink, c.window, c.bk, true);
                    let s = |blk| score(&c, &keys, &[q.at(0, h)], |j| k.at(j, 0), blk);
                    let want = brute_force_top(keys.nb, c.kb(), s);
                    differs += (want != tree_search(keys.nb, c.kb(), s)) as usize;
                    (keys.e as i32, want.iter().map(|&x| x as i32).collect())
                })
                .collect();
        }
        for (h, (se, sblocks)) in stored.iter().enumerate() {
            let (_, step, e, blocks) = record(&st, state_ints(&c), h);
            assert_eq!(step as usize, t % 3 + 1, "step {t}: counter");
            assert_eq!((e, &blocks), (*se, sblocks), "step {t} head {h}: searched at refresh, reused between");
            let bkeys = BlockKeys::with_e(e as usize, len, c.sink, c.bk);
            let mut keys = vec![];
            bkeys.for_each_key(p, true, &as_u32(&blocks), |j| keys.push(j));
            let want = dense_keys(q.at(0, h), &k, &v, 0, &keys, c.scale as f64);
            assert!(rel_l2(&out.o[h * D..(h + 1) * D], &want) < 1e-5, "step {t} head {h}");
        }
    }
    assert_eq!(searches, 3);
    assert!(differs > 0, "TREE would have selected the same blocks at every search");
}

/// A prefill with a SCAN tail leaves its last block's SCAN mask in mask_state_out, and the next decode step (its
/// counter not at a refresh) attends exactly that mask.
#[test]
fn prefill_scan_tail_mask_state_feeds_decode() {
    let mut rng = Rng::fresh("scan-handoff");
    let (hq, hkv) = (4usize, 2usize);
    let (cfg, c) = setup(hq as u32, hkv as u32, 2, 3, TREE, 4);
    let ctx = Ctx::new(&cfg).unwrap();
    let t = 131;
    let full_k = Tensor::random(&mut rng, DT, t + 1, hkv, D, 0, 1.0);
    let full_v = Tensor::random(&mut rng, DT, t + 1, hkv, D, 0, 1.0);
    let cut = |x: &Tensor| Tensor { rows: t, heads: hkv, d: D, pad: 0, data: x.data[..t * hkv * D].to_vec() };
    let q = Tensor::random(&mut rng, DT, t, hq, D, 0, 1.0);
    let p = Problem { dt: DT, d: D, hq, hkv, tq: vec![t], tk: vec![t], q, k: cut(&full_k), v: cut(&full_v) };
    let pre = run_prefill(&Host, &ctx, &p, true).unwrap();
    let j_last = (t - 1) / c.bq;
    let mut differs = 0;
    for mh in 0..c.mask_heads() {
        let (keys, tree, scan) = prefill_expected(&c, &p, 0, mh, j_last * c.bq, t);
        differs += (tree != scan) as usize;
        let (magic, step, e, blocks) = record(&pre.state, state_ints(&c), mh);
        assert_eq!((magic, step, e as usize, as_u32(&blocks)), (STATE_MAGIC, 1, keys.e, scan), "mask head {mh}");
    }
    assert!(differs > 0, "TREE and SCAN agree on every mask head: the hand-off does not tell them apart");
    let state = Host.upload(&pre.state);
    let cache = Cache { k: vec![full_k.clone()], v: vec![full_v.clone()], page_size: None, capacity: t + 1 }
        .upload(&Host, DT, &mut rng);
    let dq = Tensor::random(&mut rng, DT, 1, hq, D, 0, 1.0);
    let out = run_decode(&Host, &ctx, DT, &dq, &cache, &[t + 1], t + 1, &state).unwrap();
    let st = Host.download(&state);
    for h in 0..hq {
        let mh = c.mask_head_of(h);
        let (_, step0, e0, blocks0) = record(&pre.state, state_ints(&c), mh);
        let (_, step, e, blocks) = record(&st, state_ints(&c), mh);
        assert_eq!((step, e, &blocks), (step0 + 1, e0, &blocks0), "reused, not searched");
        let bkeys = BlockKeys::with_e(e as usize, t + 1, c.sink, c.bk);
        let mut keys = vec![];
        bkeys.for_each_key(t, true, &as_u32(&blocks), |j| keys.push(j));
        let want = dense_keys(dq.at(0, h), &full_k, &full_v, c.kv_head_of(h), &keys, c.scale as f64);
        assert!(rel_l2(&out.o[h * D..(h + 1) * D], &want) < 1e-5, "head {h}");
    }
}

//! Decode (docs/ALGORITHM.md §7): refresh 1 equals an append-prefill of one token; refresh r reuses
//! the stored mask between searches; paged and contiguous caches agree; prefill's mask state feeds decode.
mod common;
use common::*;
use hip_attn::config::{validate, Config};
use hip_attn::plan::state_ints;
use hip_attn::spec::BlockKeys;
use hip_attn::tensor::DType;

const HQ: usize = 4;
const HKV: usize = 2;
const D: usize = 64;

fn setup(dt: DType, refresh: u32, share: u32) -> (hip_attn::hip_config, Config) {
    let mut cfg = config(dt, D as u32, HQ as u32, HKV as u32);
    (cfg.bq, cfg.bk, cfg.k, cfg.sink, cfg.window, cfg.refresh, cfg.mask_sharing) = (8, 2, 16, 2, 6, refresh, share);
    // SAFETY: no cache-dir pointer.
    let (c, _) = unsafe { validate(&cfg) }.unwrap();
    (cfg, c)
}

/// Random caches of the given final lengths.
fn caches(rng: &mut Rng, dt: DType, lens: &[usize]) -> (Vec<Tensor>, Vec<Tensor>) {
    let k = lens.iter().map(|&l| Tensor::random(rng, dt, l, HKV, D, 0, 1.0)).collect();
    let v = lens.iter().map(|&l| Tensor::random(rng, dt, l, HKV, D, 0, 1.0)).collect();
    (k, v)
}

/// A one-query prefill of sequence b's first `len` tokens: the oracle for a searching decode step.
fn append_prefill(ctx: &Ctx, dt: DType, q: &Tensor, b: usize, k: &Tensor, v: &Tensor, len: usize) -> PrefillOut {
    let qrow = Tensor { rows: 1, heads: HQ, d: D, pad: 0, data: (0..HQ).flat_map(|h| q.at(b, h).to_vec()).collect() };
    let cut = |t: &Tensor| Tensor { rows: len, heads: HKV, d: D, pad: 0, data: t.data[..len * HKV * D].to_vec() };
    let p = Problem { dt, d: D, hq: HQ, hkv: HKV, tq: vec![1], tk: vec![len], q: qrow, k: cut(k), v: cut(v) };
    run_prefill(&Host, ctx, &p, true).unwrap()
}

fn keys_of(c: &Config, e: usize, blocks: &[i32], p: usize) -> Vec<usize> {
    let bk = BlockKeys::with_e(e, p + 1, c.sink, c.bk);
    let sel: Vec<u32> = blocks.iter().map(|&x| x as u32).collect();
    let mut keys = Vec::new();
    bk.for_each_key(p, true, &sel, |j| keys.push(j));
    keys
}

#[test]
fn refresh_one_equals_append_prefill() {
    let mut rng = Rng::fresh("decode-refresh1");
    for dt in [DType::Bf16, DType::F32] {
        for share in [1, 2] {
            let (cfg, c) = setup(dt, 1, share);
            let ctx = Ctx::new(&cfg).unwrap();
            let lens = [1usize, 9, 77, 200];
            let (k, v) = caches(&mut rng, dt, &lens);
            let cache =
                Cache { k: k.clone(), v: v.clone(), page_size: None, capacity: 200 }.upload(&Host, dt, &mut rng);
            let state = Host.zeroed(ctx.state_size(lens.len() as u32));
            for _step in 0..2 {
                let q = Tensor::random(&mut rng, dt, lens.len(), HQ, D, 0, 1.0);
                let out = run_decode(&Host, &ctx, dt, &q, &cache, &lens, 200, &state).unwrap();
                let st = Host.download(&state);
                for b in 0..lens.len() {
                    let want = append_prefill(&ctx, dt, &q, b, &k[b], &v[b], lens[b]);
                    assert_eq!(&out.o[b * HQ * D..(b + 1) * HQ * D], &want.o[..], "dtype {dt:?} seq {b}");
                    assert_eq!(&out.lse[b * HQ..(b + 1) * HQ], &want.lse[..]);
                    for mh in 0..c.mask_heads() {
                        let (magic, step, e, blocks) = record(&st, state_ints(&c), b * c.mask_heads() + mh);
                        let (_, _, we, wblocks) = record(&want.state, state_ints(&c), mh);
                        assert_eq!((magic, step, e, &blocks), (hip_attn::plan::STATE_MAGIC, 1, we, &wblocks));
                    }
                }
            }
        }
    }
}

#[test]
fn refresh_r_reuses_the_mask_between_searches() {
    let mut rng = Rng::fresh("decode-reuse");
    let dt = DType::F32;
    let (cfg, c) = setup(dt, 3, 1);
    let ctx = Ctx::new(&cfg).unwrap();
    let (l0, steps) = ([40usize, 100], 8);
    let cap = 100 + steps;
    let (k, v) = caches(&mut rng, dt, &[l0[0] + steps, l0[1] + steps]);
    let cache = Cache { k: k.clone(), v: v.clone(), page_size: None, capacity: cap }.upload(&Host, dt, &mut rng);
    let state = Host.zeroed(ctx.state_size(2));
    let mut searched: Vec<Vec<(i32, Vec<i32>)>> = vec![vec![]; 2];
    for t in 0..steps {
        let lens = [l0[0] + t, l0[1] + t];
        let q = Tensor::random(&mut rng, dt, 2, HQ, D, 0, 1.0);
        let out = run_decode(&Host, &ctx, dt, &q, &cache, &lens, cap, &state).unwrap();
        let st = Host.download(&state);
        for b in 0..2 {
            let p = lens[b] - 1;
            if t % 3 == 0 {
                let want = append_prefill(&ctx, dt, &q, b, &k[b], &v[b], lens[b]);
                assert_eq!(&out.o[b * HQ * D..(b + 1) * HQ * D], &want.o[..], "search step {t}");
                searched[b] = (0..HQ)
                    .map(|h| {
                        let r = record(&want.state, state_ints(&c), h);
                        (r.2, r.3)
                    })
                    .collect();
            }
            for (h, (se, sblocks)) in searched[b].iter().enumerate() {
                let (_, step, e, blocks) = record(&st, state_ints(&c), b * HQ + h);
                assert_eq!(step as usize, t % 3 + 1, "step counter");
                assert_eq!((e, &blocks), (*se, sblocks), "mask reused unchanged");
                let keys = keys_of(&c, e as usize, &blocks, p);
                let want = dense_keys(q.at(b, h), &k[b], &v[b], h / 2, &keys, c.scale as f64);
                let err = rel_l2(&out.o[(b * HQ + h) * D..][..D], &want);
                assert!(err < 1e-5, "step {t} seq {b} head {h}: {err}");
            }
        }
    }
}

#[test]
fn paged_equals_contiguous() {
    let mut rng = Rng::fresh("decode-paged");
    let dt = DType::Bf16;
    let (cfg, _) = setup(dt, 2, 2);
    let ctx = Ctx::new(&cfg).unwrap();
    let lens0 = [3usize, 64, 130];
    let cap = 140;
    let (k, v) = caches(&mut rng, dt, &[cap, cap, cap]);
    let contiguous = Cache { k: k.clone(), v: v.clone(), page_size: None, capacity: cap }.upload(&Host, dt, &mut rng);
    for ps in [1usize, 5, 16, 64] {
        let paged =
            Cache { k: k.clone(), v: v.clone(), page_size: Some(ps), capacity: cap }.upload(&Host, dt, &mut rng);
        let (s1, s2) = (Host.zeroed(ctx.state_size(3)), Host.zeroed(ctx.state_size(3)));
        for t in 0..4 {
            let lens: Vec<usize> = lens0.iter().map(|l| l + t).collect();
            let q = Tensor::random(&mut rng, dt, 3, HQ, D, 0, 1.0);
            let a = run_decode(&Host, &ctx, dt, &q, &contiguous, &lens, cap, &s1).unwrap();
            let b = run_decode(&Host, &ctx, dt, &q, &paged, &lens, cap, &s2).unwrap();
            assert_eq!(a.o, b.o, "page size {ps} step {t}");
            assert_eq!(a.lse, b.lse);
            assert_eq!(Host.download(&s1), Host.download(&s2));
        }
    }
}

#[test]
fn prefill_mask_state_feeds_the_first_decode_step() {
    let mut rng = Rng::fresh("decode-handoff");
    let dt = DType::F32;
    let (cfg, c) = setup(dt, 8, 1);
    let ctx = Ctx::new(&cfg).unwrap();
    let lens = [50usize, 123];
    let (k, v) = caches(&mut rng, dt, &[51, 124]);
    // Prefill over the first len tokens of each sequence.
    let cut = |t: &Tensor, n: usize| Tensor { rows: n, heads: HKV, d: D, pad: 0, data: t.data[..n * HKV * D].to_vec() };
    let pq = Tensor::random(&mut rng, dt, 173, HQ, D, 0, 1.0);
    let kk = Tensor { rows: 173, heads: HKV, d: D, pad: 0, data: [cut(&k[0], 50).data, cut(&k[1], 123).data].concat() };
    let vv = Tensor { rows: 173, heads: HKV, d: D, pad: 0, data: [cut(&v[0], 50).data, cut(&v[1], 123).data].concat() };
    let p = Problem { dt, d: D, hq: HQ, hkv: HKV, tq: lens.to_vec(), tk: lens.to_vec(), q: pq, k: kk, v: vv };
    let pre = run_prefill(&Host, &ctx, &p, true).unwrap();
    let state = Host.upload(&pre.state);
    let cache = Cache { k: k.clone(), v: v.clone(), page_size: None, capacity: 124 }.upload(&Host, dt, &mut rng);
    let q = Tensor::random(&mut rng, dt, 2, HQ, D, 0, 1.0);
    let dlens = [51usize, 124];
    let out = run_decode(&Host, &ctx, dt, &q, &cache, &dlens, 124, &state).unwrap();
    let st = Host.download(&state);
    for b in 0..2 {
        for h in 0..HQ {
            let (_, step0, e0, blocks0) = record(&pre.state, state_ints(&c), b * HQ + h);
            let (_, step, e, blocks) = record(&st, state_ints(&c), b * HQ + h);
            // The prefill's last block's e: max(sink, p0 + 1 - window) with p0 its first query.
            let p0 = (lens[b] - 1) / 8 * 8;
            assert_eq!(e0 as usize, (p0 + 1).saturating_sub(6).max(2));
            assert_eq!((step0, step, e, &blocks), (1, 2, e0, &blocks0), "reused, not searched");
            let keys = keys_of(&c, e as usize, &blocks, dlens[b] - 1);
            let want = dense_keys(q.at(b, h), &k[b], &v[b], h / 2, &keys, c.scale as f64);
            assert!(rel_l2(&out.o[(b * HQ + h) * D..][..D], &want) < 1e-5);
        }
    }
}

/// A record whose step counter is below 1 (a counter that wrapped past 2^31 - 1, or garbage) is searched anew,
/// as the CUDA kernels do (they read the counter as a signed int), and starts counting from 1 again; a record at
/// step 1 is reused.
#[test]
fn a_step_counter_below_one_searches() {
    let mut rng = Rng::new(31);
    let dt = DType::Bf16;
    let (cfg, c) = setup(dt, 8, 1);
    let ctx = Ctx::new(&cfg).unwrap();
    let lens = [60usize, 45];
    let (k, v) = caches(&mut rng, dt, &lens);
    let cache = Cache { k, v, page_size: None, capacity: 60 }.upload(&Host, dt, &mut rng);
    let q = Tensor::random(&mut rng, dt, 2, HQ, D, 0, 1.0);
    let state = Host.zeroed(ctx.state_size(2));
    run_decode(&Host, &ctx, dt, &q, &cache, &lens, 60, &state).unwrap();
    let ints = state_ints(&c);
    let mut words = i32s(&Host.download(&state));
    for (r, step) in [(0usize, -1i32), (1, i32::MIN), (2, 0)] {
        words[r * ints + hip_attn::plan::STATE_STEP_IDX] = step;
    }
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let state = Host.upload(&bytes);
    run_decode(&Host, &ctx, dt, &q, &cache, &lens, 60, &state).unwrap();
    let after = Host.download(&state);
    for r in 0..3 {
        assert_eq!(record(&after, ints, r).1, 1, "record {r}: a counter below 1 searches and restarts at 1");
    }
    assert_eq!(record(&after, ints, 3).1, 2, "record 3 (step 1) is reused");
}

//! Sharded decode (docs/ALGORITHM.md §8, context parallelism): every shard's hip_decode_step on its own part of
//! the cache, merged by hip_merge_states, equals the key set of §8 computed directly from the whole sequence
//! (`hip_attn::cpu::shard`); the unsharded call is the one-shard case; the shard fields are validated.
mod common;
use common::shard::Sharded;
use common::*;
use hip_attn::config::{validate, Config};
use hip_attn::cpu::shard::{attended_keys, sharded_decode, Sequence};
use hip_attn::tensor::DType;
use hip_attn::*;
use std::ffi::c_void;

const D: usize = 64;

fn setup(dt: DType, hq: usize, hkv: usize, share: u32, selection: u32) -> (hip_config, Config) {
    let mut raw = config(dt, D as u32, hq as u32, hkv as u32);
    (raw.bq, raw.bk, raw.k, raw.sink, raw.window, raw.refresh) = (8, 3, 12, 3, 10, 1);
    (raw.mask_sharing, raw.decode_selection) = (share, selection);
    // SAFETY: no cache-dir pointer.
    let (c, _) = unsafe { validate(&raw) }.unwrap();
    (raw, c)
}

fn problem(rng: &mut Rng, dt: DType, hq: usize, hkv: usize, lens: &[usize], starts: &[usize]) -> Sharded {
    Sharded {
        dt,
        hq,
        hkv,
        d: D,
        starts: starts.to_vec(),
        k: lens.iter().map(|&l| Tensor::random(rng, dt, l, hkv, D, 0, 1.0)).collect(),
        v: lens.iter().map(|&l| Tensor::random(rng, dt, l, hkv, D, 0, 1.0)).collect(),
        q: Tensor::random(rng, dt, lens.len(), hq, D, 0, 1.0),
        page_size: None,
    }
}

/// Runs every shard one after another on the host and merges them.
fn run(ctx: &Ctx, rng: &mut Rng, p: &Sharded) -> DecodeOut {
    let shards: Vec<_> = (0..p.starts.len()).map(|i| p.upload(&Host, ctx, rng, i)).collect();
    for (i, s) in shards.iter().enumerate() {
        p.step(ctx, i, s, std::ptr::null_mut()).unwrap_or_else(|e| panic!("shard {i}: {e:?}"));
    }
    p.merge(&Host, ctx, &shards)
}

fn assert_close(what: &str, got: &DecodeOut, want: &(Vec<f32>, Vec<f32>), dt: DType) {
    let (o, lse) = want;
    if dt == DType::F32 {
        for (i, (x, y)) in got.o.iter().zip(o).enumerate() {
            assert!((x - y).abs() <= 2e-5 * (1.0 + y.abs()), "{what}: o[{i}] {x} vs {y}");
        }
    } else {
        let want64: Vec<f64> = o.iter().map(|&x| x as f64).collect();
        let err = rel_l2(&got.o, &want64);
        assert!(err < tolerance(dt), "{what}: rel L2 {err}");
    }
    for (i, (x, y)) in got.lse.iter().zip(lse).enumerate() {
        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{what}: lse[{i}] {x} vs {y}");
    }
}

/// Boundaries: one shard (the unsharded call), two and three shards, starts aligned to the block grid from
/// `sink` and not, a last shard shorter than the window, a shard of a single key.
const STARTS: &[&[usize]] = &[&[0], &[0, 99], &[0, 100], &[0, 40, 121], &[0, 3, 4, 150], &[0, 77, 160]];

#[test]
fn merged_shards_equal_the_direct_definition() {
    let mut rng = Rng::fresh("shard-merged");
    let lens = [171usize, 166];
    for dt in [DType::F32, DType::Bf16] {
        for (hq, hkv, share) in [(4, 4, 1), (4, 2, 1), (4, 2, 2)] {
            for selection in [0, 1] {
                let (raw, cfg) = setup(dt, hq, hkv, share, selection);
                let ctx = Ctx::new(&raw).unwrap();
                for starts in STARTS {
                    for page_size in [None, Some(16)] {
                        let mut p = problem(&mut rng, dt, hq, hkv, &lens, starts);
                        p.page_size = page_size;
                        let got = run(&ctx, &mut rng, &p);
                        let what =
                            format!("{dt:?} hq {hq} hkv {hkv} share {share} sel {selection} {starts:?} {page_size:?}");
                        assert_close(&what, &got, &p.reference(&cfg), dt);
                    }
                }
            }
        }
    }
}

/// With one shard the direct definition is the ordinary decode step (so §8 extends §7 rather than changing it),
/// and when every shard's budget covers its domain the merged result is dense attention, whatever the
/// boundaries.
#[test]
fn one_shard_is_the_unsharded_step_and_full_budgets_are_dense() {
    let mut rng = Rng::fresh("shard-edges");
    let dt = DType::F32;
    let (raw, cfg) = setup(dt, 4, 2, 1, 0);
    let ctx = Ctx::new(&raw).unwrap();
    let lens = [140usize];
    let p = problem(&mut rng, dt, 4, 2, &lens, &[0]);
    let cache = Cache { k: p.k.clone(), v: p.v.clone(), page_size: None, capacity: 140 }.upload(&Host, dt, &mut rng);
    let state = Host.zeroed(ctx.state_size(1));
    let plain = run_decode(&Host, &ctx, dt, &p.q, &cache, &lens, 140, &state).unwrap();
    let (o, lse) = p.reference(&cfg);
    assert_eq!(plain.o, o, "one shard: o");
    assert_eq!(plain.lse, lse, "one shard: lse");

    let mut raw_all = raw;
    raw_all.k = 4096;
    // SAFETY: no cache-dir pointer.
    let (all, _) = unsafe { validate(&raw_all) }.unwrap();
    let ctx_all = Ctx::new(&raw_all).unwrap();
    for starts in [&[0usize, 50][..], &[0, 3, 139]] {
        let p = Sharded { starts: starts.to_vec(), ..problem(&mut rng, dt, 4, 2, &lens, starts) };
        let q: Vec<f32> = (0..4).flat_map(|h| p.q.at(0, h).to_vec()).collect();
        let seq = Sequence { q: &q, k: &p.k[0].data, v: &p.v[0].data };
        for mh in 0..all.mask_heads() {
            let mut keys = attended_keys(&all, &seq, starts, mh).unwrap();
            keys.sort_unstable();
            assert_eq!(keys, (0..140).collect::<Vec<_>>(), "{starts:?}: every key once");
        }
        let got = run(&ctx_all, &mut rng, &p);
        let (o, _) = sharded_decode(&all, &seq, starts).unwrap();
        let dense = dense_keys(&q[..D], &p.k[0], &p.v[0], 0, &(0..140).collect::<Vec<_>>(), all.scale as f64);
        let err = rel_l2(&o[..D], &dense);
        assert!(err < 1e-6, "{starts:?}: reference vs dense rel L2 {err}");
        let err = rel_l2(&got.o[..D], &dense);
        assert!(err < 1e-5, "{starts:?}: merged shards vs dense rel L2 {err}");
    }
}

/// Decoding on: tokens appended to the last shard, refresh 1 (a search each step) and refresh 3 (the last shard
/// reuses its record between searches, the others keep theirs). With refresh 1 every step equals the direct
/// definition; with refresh 3 each shard's records hold the mask of their role and stay valid.
#[test]
fn the_last_shard_grows_across_steps() {
    let mut rng = Rng::fresh("shard-steps");
    let dt = DType::F32;
    for refresh in [1u32, 3] {
        let (mut raw, _) = setup(dt, 4, 2, 1, 0);
        raw.refresh = refresh;
        // SAFETY: no cache-dir pointer.
        let (cfg, _) = unsafe { validate(&raw) }.unwrap();
        let ctx = Ctx::new(&raw).unwrap();
        let full = problem(&mut rng, dt, 4, 2, &[130], &[0, 60]);
        let mut states: Vec<Option<Buf>> = vec![None, None];
        for len in 120..=130usize {
            let mut p = problem(&mut rng, dt, 4, 2, &[len], &[0, 60]);
            let cut = |t: &Tensor| Tensor { rows: len, data: t.data[..len * 2 * D].to_vec(), ..t.clone() };
            (p.k, p.v) = (vec![cut(&full.k[0])], vec![cut(&full.v[0])]);
            let mut shards: Vec<_> = (0..2).map(|i| p.upload(&Host, &ctx, &mut rng, i)).collect();
            for (i, s) in shards.iter_mut().enumerate() {
                if let Some(st) = states[i].take() {
                    s.state = st;
                }
                p.step(&ctx, i, s, std::ptr::null_mut()).unwrap_or_else(|e| panic!("step {len} shard {i}: {e:?}"));
            }
            let got = p.merge(&Host, &ctx, &shards);
            if refresh == 1 {
                assert_close(&format!("len {len}"), &got, &p.reference(&cfg), dt);
            }
            for (i, s) in shards.into_iter().enumerate() {
                states[i] = Some(s.state);
            }
        }
    }
}

/// The shard fields are checked before anything is written: an offset inside the sink tokens, an offset whose
/// range overflows int32 positions, unknown flag bits, a shard without its LSE; and a record written in one
/// role is reported, not reused, in another.
#[test]
fn bad_shard_fields_are_refused_and_nothing_is_written() {
    let mut rng = Rng::fresh("shard-bad");
    let dt = DType::F32;
    let (raw, _) = setup(dt, 4, 2, 1, 0);
    let ctx = Ctx::new(&raw).unwrap();
    let p = problem(&mut rng, dt, 4, 2, &[50], &[0, 20]);
    let s = p.upload(&Host, &ctx, &mut rng, 1);
    let base = p.args(1, &s);
    type Edit = fn(&mut hip_decode_args);
    let cases: [(&str, Edit, hip_status, &str); 5] = [
        ("offset in sinks", |a| a.key_offset = 2, hip_status::HIP_ATTN_STATUS_INVALID_ARGUMENT, "key_offset (2)"),
        (
            "offset + length",
            |a| a.key_offset = i32::MAX as u32 - 10,
            hip_status::HIP_ATTN_STATUS_INVALID_ARGUMENT,
            "key_offset",
        ),
        ("unknown flags", |a| a.shard_flags = 6, hip_status::HIP_ATTN_STATUS_INVALID_ARGUMENT, "shard_flags (0x6)"),
        ("no lse", |a| a.lse = std::ptr::null_mut(), hip_status::HIP_ATTN_STATUS_NULL_POINTER, "lse is NULL"),
        ("reserved", |a| a.reserved[2] = 1, hip_status::HIP_ATTN_STATUS_INVALID_ARGUMENT, "reserved[2]"),
    ];
    let before = Host.download(&s.o);
    for (what, edit, want, needle) in cases {
        let mut a = base;
        edit(&mut a);
        // SAFETY: the buffers span what the args describe; the call must fail before touching them.
        let st = unsafe { hip_decode_step(ctx.0, &a, s.ws.addr as *mut c_void, s.ws_bytes, std::ptr::null_mut()) };
        let msg = last_error();
        assert_eq!(st, want, "{what}: {msg}");
        assert!(msg.contains(needle), "{what}: message {msg:?} lacks {needle:?}");
        assert_eq!(Host.download(&s.o), before, "{what}: o written");
    }
    // key_offset 0 with NOT_LAST and a nonzero offset at exactly `sink` are valid.
    let ok = p.upload(&Host, &ctx, &mut rng, 0);
    p.step(&ctx, 0, &ok, std::ptr::null_mut()).unwrap();
    let mut a = base;
    a.key_offset = 3;
    // SAFETY: as above.
    let st = unsafe { hip_decode_step(ctx.0, &a, s.ws.addr as *mut c_void, s.ws_bytes, std::ptr::null_mut()) };
    assert_eq!(st, hip_status::HIP_ATTN_STATUS_SUCCESS, "{}", last_error());

    // The last shard's record (window 10) read by the same shard as a middle one (window 0): reported.
    let mut a = base;
    a.shard_flags = HIP_ATTN_SHARD_NOT_LAST;
    let before = Host.download(&s.o);
    // SAFETY: as above.
    let st = unsafe { hip_decode_step(ctx.0, &a, s.ws.addr as *mut c_void, s.ws_bytes, std::ptr::null_mut()) };
    let msg = last_error();
    assert_eq!(st, hip_status::HIP_ATTN_STATUS_BAD_INDEX, "{msg}");
    assert!(msg.contains("another configuration"), "{msg}");
    assert_eq!(Host.download(&s.o), before, "role change: o written");
}

/// Non-causal contexts have no local window: the last shard searches up to the sequence's end like the others.
#[test]
fn non_causal_shards_equal_the_direct_definition() {
    let mut rng = Rng::fresh("shard-noncausal");
    let dt = DType::F32;
    for selection in [0, 1] {
        let (mut raw, _) = setup(dt, 4, 2, 2, selection);
        raw.causal = 0;
        // SAFETY: no cache-dir pointer.
        let (cfg, _) = unsafe { validate(&raw) }.unwrap();
        let ctx = Ctx::new(&raw).unwrap();
        for starts in [&[0usize][..], &[0, 50, 97]] {
            let p = problem(&mut rng, dt, 4, 2, &[150, 120], starts);
            let got = run(&ctx, &mut rng, &p);
            assert_close(&format!("non-causal sel {selection} {starts:?}"), &got, &p.reference(&cfg), dt);
        }
    }
}

//! Determinism on the CPU backend: identical inputs give bit-identical outputs, LSEs, prefill workspace masks
//! and mask states, run to run on one context and across two contexts of the same configuration. (The GPU half
//! lives with the CUDA tests.)
mod common;
use common::*;
use hip_attn::tensor::DType;
use hip_attn::*;

/// Bits of everything a prefill (with LSE and mask state) and four decode steps write.
fn run(ctx: &Ctx, dt: DType, hq: usize, hkv: usize, page_size: Option<usize>, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    let d = 64;
    let p = Problem::new(&mut rng, dt, d, hq, hkv, &[37, 1, 12], &[37, 30, 70], 0);
    let pre = run_prefill(&Host, ctx, &p, true).expect("prefill");
    let mut bits: Vec<u32> = pre.o.iter().chain(&pre.lse).map(|x| x.to_bits()).collect();
    bits.extend(pre.workspace.iter().chain(&pre.state).map(|&b| b as u32));
    let cap = 90;
    let kv: Vec<Tensor> = (0..3).map(|_| Tensor::random(&mut rng, dt, cap, hkv, d, 0, 1.0)).collect();
    let vv: Vec<Tensor> = (0..3).map(|_| Tensor::random(&mut rng, dt, cap, hkv, d, 0, 1.0)).collect();
    let cache = Cache { k: kv, v: vv, page_size, capacity: cap }.upload(&Host, dt, &mut rng);
    let state = Host.upload(&pre.state);
    for step in 0..4 {
        let q = Tensor::random(&mut rng, dt, 3, hq, d, 0, 1.0);
        let lens = [38 + step, 31 + step, 71 + step];
        let out = run_decode(&Host, ctx, dt, &q, &cache, &lens, cap, &state).expect("decode");
        bits.extend(out.o.iter().chain(&out.lse).map(|x| x.to_bits()));
        bits.extend(Host.download(&state).iter().map(|&b| b as u32));
    }
    bits
}

#[test]
fn identical_inputs_give_identical_bits() {
    for (dt, sharing, page_size) in [
        (DType::Bf16, hip_mask_sharing::HIP_ATTN_MASK_PER_Q_HEAD, Some(16)),
        (DType::F16, hip_mask_sharing::HIP_ATTN_MASK_PER_KV_HEAD, None),
        (DType::F32, hip_mask_sharing::HIP_ATTN_MASK_PER_Q_HEAD, Some(3)),
    ] {
        let mut c = config(dt, 64, 6, 2);
        (c.k, c.bq, c.bk, c.sink, c.window, c.refresh, c.sq, c.sk) = (12, 8, 2, 4, 8, 3, 2, 1);
        c.mask_sharing = sharing as u32;
        let a = Ctx::new(&c).unwrap();
        let b = Ctx::new(&c).unwrap();
        let first = run(&a, dt, 6, 2, page_size, 42);
        assert!(first.iter().any(|&x| x != 0));
        assert!(run(&a, dt, 6, 2, page_size, 42) == first, "{dt:?}: second run on one context differs");
        assert!(run(&b, dt, 6, 2, page_size, 42) == first, "{dt:?}: a second context differs");
        assert!(run(&a, dt, 6, 2, page_size, 43) != first, "{dt:?}: different inputs gave the same bits");
    }
}

/// With HIP_ATTN_FLAG_BATCH_INVARIANT (accepted by every backend), a sequence decoded alone gives the bits it
/// gets inside a batch of other lengths. (The CPU backend is batch-invariant by construction; the GPU half of
/// this test is tests/gpu.rs `deterministic_and_batch_invariant`.)
#[test]
fn batch_invariant_flag_decode_alone_equals_batch() {
    let dt = DType::Bf16;
    let (hq, hkv, d) = (4, 2, 64);
    let mut c = config(dt, d as u32, hq as u32, hkv as u32);
    (c.k, c.bk, c.window, c.refresh, c.flags) = (16, 2, 8, 1, HIP_ATTN_FLAG_BATCH_INVARIANT);
    let ctx = Ctx::new(&c).unwrap();
    let mut rng = Rng::new(7);
    let lens = [90, 5, 200];
    let k: Vec<Tensor> = lens.iter().map(|&l| Tensor::random(&mut rng, dt, l, hkv, d, 0, 1.0)).collect();
    let v: Vec<Tensor> = lens.iter().map(|&l| Tensor::random(&mut rng, dt, l, hkv, d, 0, 1.0)).collect();
    let q = Tensor::random(&mut rng, dt, 3, hq, d, 0, 1.0);
    let cache = Cache { k: k.clone(), v: v.clone(), page_size: Some(8), capacity: 200 }.upload(&Host, dt, &mut rng);
    let whole = run_decode(&Host, &ctx, dt, &q, &cache, &lens, 200, &Host.zeroed(ctx.state_size(3))).unwrap();
    for b in 0..3 {
        let one = Cache { k: vec![k[b].clone()], v: vec![v[b].clone()], page_size: None, capacity: lens[b] }
            .upload(&Host, dt, &mut rng);
        let qb = Tensor { rows: 1, heads: hq, d, pad: 0, data: q.data[b * hq * d..(b + 1) * hq * d].to_vec() };
        let alone =
            run_decode(&Host, &ctx, dt, &qb, &one, &lens[b..b + 1], lens[b], &Host.zeroed(ctx.state_size(1))).unwrap();
        let bits = |xs: &[f32]| xs.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&alone.o), bits(&whole.o[b * hq * d..][..hq * d]), "sequence {b}: output");
        assert_eq!(bits(&alone.lse), bits(&whole.lse[b * hq..][..hq]), "sequence {b}: lse");
    }
}

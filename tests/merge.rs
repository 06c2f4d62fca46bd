//! LSE and merge: attention over a key set split in two, merged by hip_merge_states, equals the whole.
mod common;
use common::*;
use hip_attn::tensor::DType;
use hip_attn::*;
use std::ffi::c_void;

/// Dense attention of every query over the keys `keep(j)` admits, via the library (k covers everything), by
/// zeroing nothing: we build a sub-problem holding only those keys (non-causal, so the order is irrelevant).
fn partial(ctx: &Ctx, p: &Problem, keys: &[usize]) -> PrefillOut {
    let pick = |t: &Tensor| Tensor {
        rows: keys.len(),
        heads: t.heads,
        d: t.d,
        pad: 0,
        data: keys.iter().flat_map(|&j| (0..t.heads).flat_map(move |h| t.at(j, h).to_vec())).collect(),
    };
    let sub = Problem { tk: vec![keys.len()], k: pick(&p.k), v: pick(&p.v), ..p.clone() };
    run_prefill(&Host, ctx, &sub, false).unwrap()
}

#[test]
fn split_and_merge_equals_whole() {
    let mut rng = Rng::fresh("merge");
    for dt in [DType::F32, DType::Bf16, DType::F16] {
        let mut cfg = config(dt, 64, 4, 2);
        (cfg.causal, cfg.k) = (0, 4096);
        let ctx = Ctx::new(&cfg).unwrap();
        let p = Problem::new(&mut rng, dt, 64, 4, 2, &[13], &[90], 0);
        let all: Vec<usize> = (0..90).collect();
        let (ka, kb): (Vec<usize>, Vec<usize>) = all.iter().partition(|_| rng.below(3) == 0);
        let (whole, a, b) = (partial(&ctx, &p, &all), partial(&ctx, &p, &ka), partial(&ctx, &p, &kb));
        let enc = |x: &[f32]| Host.upload(&encode(dt, x));
        let (oa, ob) = (enc(&a.o), enc(&b.o));
        let (la, lb) = (Host.upload(&encode(DType::F32, &a.lse)), Host.upload(&encode(DType::F32, &b.lse)));
        let (out, lout) = (Host.poisoned(a.o.len() * dt.size()), Host.poisoned(a.lse.len() * 4));
        let t = |b: &Buf| hip_tensor { data: b.addr as *const c_void, token_stride: 4 * 64, head_stride: 64 };
        let args = hip_merge_args {
            struct_size: std::mem::size_of::<hip_merge_args>() as u32,
            num_tokens: 13,
            num_heads: 4,
            reserved_u32: 0,
            o_a: t(&oa),
            lse_a: la.addr as *const f32,
            o_b: t(&ob),
            lse_b: lb.addr as *const f32,
            o_out: hip_tensor_mut { data: out.addr as *mut c_void, token_stride: 4 * 64, head_stride: 64 },
            lse_out: lout.addr as *mut f32,
            reserved: [0; 2],
        };
        // SAFETY: every buffer spans [13, 4, 64] (or [13, 4] f32) and outlives the call.
        let st = unsafe { hip_merge_states(ctx.0, &args, std::ptr::null_mut()) };
        assert_eq!(st, hip_status::HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
        let merged = decode(dt, &Host.download(&out));
        let whole64: Vec<f64> = whole.o.iter().map(|&x| x as f64).collect();
        let err = rel_l2(&merged, &whole64);
        assert!(err < tolerance(dt), "{dt:?}: merged vs whole rel L2 {err}");
        let lse = f32s(&Host.download(&lout));
        for (x, y) in lse.iter().zip(&whole.lse) {
            assert!((x - y).abs() < 1e-5 * y.abs().max(1.0), "lse {x} vs {y}");
        }
    }
}

/// A side with lse -inf contributes nothing, whatever its O holds (an empty partial's O is never read, as on
/// CUDA); a NaN lse makes the row NaN with lse NaN, also beside an empty side; both sides -inf give zeros and -inf.
#[test]
fn empty_side_is_not_read_and_nan_lse_propagates() {
    let mut rng = Rng::fresh("merge-nonfinite");
    let (n, h, d) = (4usize, 1usize, 64usize);
    let cfg = config(DType::F32, d as u32, 1, 1);
    let ctx = Ctx::new(&cfg).unwrap();
    let mut a = Tensor::random(&mut rng, DType::F32, n, h, d, 0, 1.0);
    let b = Tensor::random(&mut rng, DType::F32, n, h, d, 0, 1.0);
    a.data[0] = f32::NAN; // row 0: side a is empty (lse -inf) and holds garbage
    let la = [f32::NEG_INFINITY, f32::NAN, f32::NEG_INFINITY, f32::NAN];
    let lb = [0.5f32, 0.25, f32::NEG_INFINITY, f32::NEG_INFINITY];
    let (ab, bb) = (Host.upload(&a.bytes(DType::F32)), Host.upload(&b.bytes(DType::F32)));
    let (lab, lbb) = (Host.upload(&encode(DType::F32, &la)), Host.upload(&encode(DType::F32, &lb)));
    let (out, lout) = (Host.poisoned(n * d * 4), Host.poisoned(n * 4));
    let args = hip_merge_args {
        struct_size: std::mem::size_of::<hip_merge_args>() as u32,
        num_tokens: n as u32,
        num_heads: h as u32,
        reserved_u32: 0,
        o_a: a.view(&ab),
        lse_a: lab.addr as *const f32,
        o_b: b.view(&bb),
        lse_b: lbb.addr as *const f32,
        o_out: hip_tensor_mut { data: out.addr as *mut c_void, token_stride: d as i64, head_stride: d as i64 },
        lse_out: lout.addr as *mut f32,
        reserved: [0; 2],
    };
    // SAFETY: every buffer spans [4, 1, 64] (or [4, 1] f32) and outlives the call.
    let st = unsafe { hip_merge_states(ctx.0, &args, std::ptr::null_mut()) };
    assert_eq!(st, hip_status::HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
    let (o, l) = (decode(DType::F32, &Host.download(&out)), f32s(&Host.download(&lout)));
    assert_eq!(&o[..d], b.at(0, 0), "row 0 is side b alone");
    assert_eq!(l[0], 0.5);
    assert!(o[d..2 * d].iter().all(|x| x.is_nan()) && l[1].is_nan(), "row 1 (NaN lse) is NaN");
    assert!(
        o[2 * d..3 * d].iter().all(|&x| x == 0.0) && l[2] == f32::NEG_INFINITY,
        "row 2 (both empty) is zeros, -inf"
    );
    assert!(o[3 * d..].iter().all(|x| x.is_nan()) && l[3].is_nan(), "row 3 (NaN beside an empty side) is NaN");
}

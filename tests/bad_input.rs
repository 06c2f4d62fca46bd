//! Every bad input gets its own status and a message naming the offending field, and writes no output.
mod common;
use common::*;
use hip_attn::hip_status::*;
use hip_attn::tensor::DType;
use hip_attn::*;
use std::ffi::{c_void, CStr};
use std::ptr::null_mut;

fn expect(st: hip_status, want: hip_status, needle: &str, what: &str) {
    let msg = last_error();
    assert_eq!(st, want, "{what}: got {st:?} ({msg})");
    assert!(msg.contains(needle), "{what}: message {msg:?} does not name {needle:?}");
}

#[test]
fn config_table() {
    type Mutate = fn(&mut hip_config);
    let rows: Vec<(&str, Mutate, hip_status, &str)> = vec![
        (
            "heads not divisible",
            |c| (c.num_q_heads, c.num_kv_heads) = (30, 8),
            HIP_ATTN_STATUS_INVALID_CONFIG,
            "num_q_heads (30) is not a multiple of num_kv_heads (8)",
        ),
        ("zero q heads", |c| c.num_q_heads = 0, HIP_ATTN_STATUS_INVALID_CONFIG, "num_q_heads (0)"),
        ("zero kv heads", |c| c.num_kv_heads = 0, HIP_ATTN_STATUS_INVALID_CONFIG, "num_kv_heads (0)"),
        ("head_dim 96", |c| c.head_dim = 96, HIP_ATTN_STATUS_UNSUPPORTED, "head_dim (96)"),
        ("head_dim 0", |c| c.head_dim = 0, HIP_ATTN_STATUS_UNSUPPORTED, "head_dim (0)"),
        ("bq 0", |c| c.bq = 0, HIP_ATTN_STATUS_INVALID_CONFIG, "bq (0)"),
        ("bk 0", |c| c.bk = 0, HIP_ATTN_STATUS_INVALID_CONFIG, "bk (0)"),
        ("sq 0", |c| c.sq = 0, HIP_ATTN_STATUS_INVALID_CONFIG, "sq (0)"),
        ("sk 0", |c| c.sk = 0, HIP_ATTN_STATUS_INVALID_CONFIG, "sk (0)"),
        ("refresh 0", |c| c.refresh = 0, HIP_ATTN_STATUS_INVALID_CONFIG, "refresh (0)"),
        ("huge k", |c| c.k = u32::MAX, HIP_ATTN_STATUS_INVALID_CONFIG, "k (4294967295)"),
        ("huge bq", |c| c.bq = 1 << 20, HIP_ATTN_STATUS_INVALID_CONFIG, "bq (1048576)"),
        ("huge window", |c| c.window = u32::MAX, HIP_ATTN_STATUS_INVALID_CONFIG, "window"),
        ("unknown dtype", |c| c.dtype = 9, HIP_ATTN_STATUS_INVALID_CONFIG, "dtype (9)"),
        ("unknown backend", |c| c.backend = 7, HIP_ATTN_STATUS_INVALID_CONFIG, "backend (7)"),
        ("unknown sharing", |c| c.mask_sharing = 0, HIP_ATTN_STATUS_INVALID_CONFIG, "mask_sharing (0)"),
        ("causal 2", |c| c.causal = 2, HIP_ATTN_STATUS_INVALID_CONFIG, "causal (2)"),
        ("NaN scale", |c| c.softmax_scale = f32::NAN, HIP_ATTN_STATUS_INVALID_CONFIG, "softmax_scale"),
        ("infinite scale", |c| c.softmax_scale = f32::INFINITY, HIP_ATTN_STATUS_INVALID_CONFIG, "softmax_scale"),
        (
            "negative scale",
            |c| c.softmax_scale = -0.5,
            HIP_ATTN_STATUS_INVALID_CONFIG,
            "softmax_scale (-0.5) must be 0",
        ),
        ("-inf scale", |c| c.softmax_scale = f32::NEG_INFINITY, HIP_ATTN_STATUS_INVALID_CONFIG, "softmax_scale (-inf)"),
        (
            "scale above the cap",
            |c| c.softmax_scale = 65537.0,
            HIP_ATTN_STATUS_INVALID_CONFIG,
            "softmax_scale (65537) must be 0 (the default, 1/sqrt(head_dim)) or a positive finite number at most 65536",
        ),
        ("huge scale", |c| c.softmax_scale = 1e30, HIP_ATTN_STATUS_INVALID_CONFIG, "at most 65536"),
        (
            "attends nothing",
            |c| (c.k, c.sink, c.window) = (0, 0, 0),
            HIP_ATTN_STATUS_INVALID_CONFIG,
            "k, sink and window",
        ),
        (
            "non-causal attends nothing",
            |c| (c.k, c.sink, c.causal) = (0, 0, 0),
            HIP_ATTN_STATUS_INVALID_CONFIG,
            "k and sink",
        ),
        ("flags", |c| c.flags = 4, HIP_ATTN_STATUS_INVALID_CONFIG, "flags"),
        ("reserved", |c| c.reserved[2] = 1, HIP_ATTN_STATUS_INVALID_CONFIG, "reserved[2]"),
        ("reserved_u32", |c| c.reserved_u32 = 1, HIP_ATTN_STATUS_INVALID_CONFIG, "reserved_u32"),
        ("unknown selection", |c| c.decode_selection = 2, HIP_ATTN_STATUS_INVALID_CONFIG, "decode_selection (2)"),
        (
            "huge scan tail",
            |c| c.prefill_scan_tail = u32::MAX,
            HIP_ATTN_STATUS_INVALID_CONFIG,
            "prefill_scan_tail (4294967295)",
        ),
        (
            "small struct_size",
            |c| c.struct_size = 40,
            HIP_ATTN_STATUS_STRUCT_SIZE_MISMATCH,
            "hip_config.struct_size (40)",
        ),
        ("zero struct_size", |c| c.struct_size = 0, HIP_ATTN_STATUS_STRUCT_SIZE_MISMATCH, "hip_config.struct_size (0)"),
        (
            "negative ordinal",
            |c| (c.backend, c.device_ordinal) = (2, -1),
            HIP_ATTN_STATUS_INVALID_CONFIG,
            "device_ordinal (-1)",
        ),
        ("empty cache dir", |c| c.kernel_cache_dir = c"".as_ptr(), HIP_ATTN_STATUS_INVALID_CONFIG, "kernel_cache_dir"),
    ];
    for (what, mutate, want, needle) in rows {
        let mut cfg = config(DType::Bf16, 128, 32, 8);
        mutate(&mut cfg);
        let mut out = std::ptr::dangling_mut::<hip_ctx>();
        // SAFETY: cfg is readable (struct_size never exceeds sizeof here) and out writable.
        let st = unsafe { hip_ctx_create(&cfg, &mut out) };
        expect(st, want, needle, what);
        assert!(out.is_null(), "{what}: *out must be NULL after a failure");
    }
    // NULL config and NULL out.
    let mut out = null_mut();
    // SAFETY: NULL pointers are what is being tested.
    expect(
        unsafe { hip_ctx_create(std::ptr::null(), &mut out) },
        HIP_ATTN_STATUS_NULL_POINTER,
        "hip_config is NULL",
        "NULL config",
    );
    let cfg = config(DType::Bf16, 128, 32, 8);
    expect(unsafe { hip_ctx_create(&cfg, null_mut()) }, HIP_ATTN_STATUS_NULL_POINTER, "out is NULL", "NULL out");
}

#[test]
fn config_from_the_header_before_selection_modes() {
    // decode_selection and prefill_scan_tail took the first reserved u64; a caller built against the earlier
    // header zeroes it, which must mean TREE with no prefill scan (the defaults), at the same struct size.
    #[repr(C)]
    struct Before {
        head: [u8; std::mem::offset_of!(hip_config, decode_selection)],
        reserved: [u64; 8],
    }
    assert_eq!(std::mem::size_of::<Before>(), std::mem::size_of::<hip_config>());
    let cfg = config(DType::Bf16, 64, 4, 4);
    assert_eq!(cfg.decode_selection, hip_selection::HIP_ATTN_SELECT_TREE as u32);
    assert_eq!(cfg.prefill_scan_tail, 0);
    let mut old = Before { head: [0; std::mem::offset_of!(hip_config, decode_selection)], reserved: [0; 8] };
    // SAFETY: both are plain bytes; head is exactly the prefix of hip_config before the new fields.
    unsafe {
        std::ptr::copy_nonoverlapping(&cfg as *const hip_config as *const u8, old.head.as_mut_ptr(), old.head.len())
    };
    let mut out = null_mut();
    // SAFETY: Before has hip_config's size and alignment-compatible prefix; struct_size says so.
    let st = unsafe { hip_ctx_create(&old as *const Before as *const hip_config, &mut out) };
    assert_eq!(st, HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
    // SAFETY: out is a live context.
    unsafe { hip_ctx_destroy(out) };
}

#[test]
fn larger_struct_from_a_newer_header() {
    // A caller built against a newer header passes a bigger struct: zero tail accepted, set tail refused.
    #[repr(C)]
    struct Newer {
        base: hip_config,
        extra: [u64; 4],
    }
    let mut n = Newer { base: config(DType::Bf16, 64, 4, 4), extra: [0; 4] };
    n.base.struct_size = std::mem::size_of::<Newer>() as u32;
    let mut out = null_mut();
    // SAFETY: struct_size bytes are readable.
    assert_eq!(unsafe { hip_ctx_create(&n.base, &mut out) }, HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
    unsafe { hip_ctx_destroy(out) };
    n.extra[1] = 7;
    let st = unsafe { hip_ctx_create(&n.base, &mut out) };
    expect(st, HIP_ATTN_STATUS_STRUCT_SIZE_MISMATCH, "does not know", "set newer field");
}

#[test]
fn cuda_backend_without_driver_is_a_status_not_a_crash() {
    let mut cfg = config(DType::Bf16, 128, 4, 4);
    cfg.backend = hip_backend::HIP_ATTN_BACKEND_CUDA as u32;
    match Ctx::new(&cfg) {
        Ok(_) => eprintln!("a CUDA device is present: nothing to check here"),
        Err((st, msg)) => {
            assert!(matches!(st, HIP_ATTN_STATUS_CUDA_UNAVAILABLE | HIP_ATTN_STATUS_UNSUPPORTED), "{st:?}: {msg}");
            assert!(!msg.is_empty());
        }
    }
}

/// A valid small prefill on the CPU backend, kept alive so that rows can break one field at a time.
struct Fixture {
    ctx: Ctx,
    p: Problem,
    bufs: Vec<Buf>,
    args: hip_prefill_args,
    ws: Buf,
    ws_bytes: usize,
    o: usize,
    o_bytes: usize,
}

fn fixture() -> Fixture {
    let mut rng = Rng::new(7);
    let mut cfg = config(DType::Bf16, 64, 4, 2);
    cfg.k = 8;
    let ctx = Ctx::new(&cfg).unwrap();
    let p = Problem::new(&mut rng, DType::Bf16, 64, 4, 2, &[5, 20], &[9, 20], 0);
    let (q, k, v) = (Host.upload(&p.q.bytes(p.dt)), Host.upload(&p.k.bytes(p.dt)), Host.upload(&p.v.bytes(p.dt)));
    let o_bytes = 25 * 4 * 64 * 2;
    let o = Host.poisoned(o_bytes);
    let lse = Host.poisoned(25 * 4 * 4);
    // cu_seqlens in buffers larger than any output, so that a row placing an output on them overlaps them and
    // nothing else (an output spilling past a 12-byte allocation would meet whatever the heap put next).
    let padded = |cu: &[i32]| {
        let mut words = cu.to_vec();
        words.resize(cu.len() + ctx.state_size(2).max(25 * 4 * 4) / 4, 0);
        Host.upload(&i32_bytes(&words))
    };
    let (cuq, cuk) = (padded(&[0, 5, 25]), padded(&[0, 9, 29]));
    let state = Host.poisoned(ctx.state_size(2));
    let ws_bytes = ctx.prefill_ws(2, 25, 20, 20);
    let ws = Host.poisoned(ws_bytes);
    let args = hip_prefill_args {
        struct_size: std::mem::size_of::<hip_prefill_args>() as u32,
        batch_size: 2,
        total_q: 25,
        total_k: 29,
        max_seqlen_q: 20,
        max_seqlen_k: 20,
        q: p.q.view(&q),
        k: p.k.view(&k),
        v: p.v.view(&v),
        o: hip_tensor_mut { data: o.addr as *mut c_void, token_stride: 256, head_stride: 64 },
        cu_seqlens_q: cuq.addr as *const i32,
        cu_seqlens_k: cuk.addr as *const i32,
        lse: lse.addr as *mut f32,
        mask_state_out: state.addr as *mut c_void,
        reserved: [0; 4],
    };
    let o_addr = o.addr;
    Fixture { ctx, p, bufs: vec![q, k, v, o, lse, cuq, cuk, state], args, ws, ws_bytes, o: o_addr, o_bytes }
}

fn untouched(f: &Fixture, what: &str) {
    // SAFETY: the fixture keeps these host buffers alive.
    let o = unsafe { std::slice::from_raw_parts(f.o as *const u8, f.o_bytes) };
    assert!(o.iter().all(|&x| x == 0xFF), "{what}: output written on failure");
    let state = f.bufs.last().unwrap();
    assert!(Host.download(state).iter().all(|&x| x == 0xFF), "{what}: mask state written on failure");
    let lse = &f.bufs[4];
    assert!(Host.download(lse).iter().all(|&x| x == 0xFF), "{what}: lse written on failure");
}

#[test]
fn prefill_table() {
    type Mutate = fn(&mut hip_prefill_args, &mut usize);
    let rows: Vec<(&str, Mutate, hip_status, &str)> = vec![
        ("NULL q", |a, _| a.q.data = std::ptr::null(), HIP_ATTN_STATUS_NULL_POINTER, "q.data is NULL"),
        ("NULL k", |a, _| a.k.data = std::ptr::null(), HIP_ATTN_STATUS_NULL_POINTER, "k.data is NULL"),
        ("NULL v", |a, _| a.v.data = std::ptr::null(), HIP_ATTN_STATUS_NULL_POINTER, "v.data is NULL"),
        ("NULL o", |a, _| a.o.data = null_mut(), HIP_ATTN_STATUS_NULL_POINTER, "o.data is NULL"),
        ("NULL cu_q", |a, _| a.cu_seqlens_q = std::ptr::null(), HIP_ATTN_STATUS_NULL_POINTER, "cu_seqlens_q is NULL"),
        ("NULL cu_k", |a, _| a.cu_seqlens_k = std::ptr::null(), HIP_ATTN_STATUS_NULL_POINTER, "cu_seqlens_k is NULL"),
        ("misaligned q", |a, _| a.q.data = (a.q.data as usize + 2) as *const c_void, HIP_ATTN_STATUS_MISALIGNED_POINTER, "q.data"),
        ("misaligned lse", |a, _| a.lse = (a.lse as usize + 2) as *mut f32, HIP_ATTN_STATUS_MISALIGNED_POINTER, "lse"),
        ("odd stride", |a, _| a.k.token_stride = 131, HIP_ATTN_STATUS_MISALIGNED_POINTER, "k.token_stride (131)"),
        ("negative stride", |a, _| a.v.head_stride = -64, HIP_ATTN_STATUS_INVALID_ARGUMENT, "v.head_stride (-64)"),
        ("overlapping output", |a, _| a.o.head_stride = 8, HIP_ATTN_STATUS_INVALID_ARGUMENT, "o.head_stride"),
        ("huge stride", |a, _| a.q.token_stride = i64::MAX / 2 / 8 * 8, HIP_ATTN_STATUS_SIZE_OVERFLOW, "size of q overflows"),
        ("huge stride names stride and rows", |a, _| a.q.token_stride = i64::MAX / 2 / 8 * 8, HIP_ATTN_STATUS_SIZE_OVERFLOW, "size of q overflows: token_stride (4611686018427387896) times 24 rows does not fit in 64 bits"),
        ("huge k stride", |a, _| a.k.token_stride = i64::MAX / 8 * 8, HIP_ATTN_STATUS_SIZE_OVERFLOW, "size of k overflows: token_stride (9223372036854775800) times 28 rows does not fit in 64 bits"),
        ("k bytes overflow", |a, _| a.k.token_stride = i64::MAX / 8 / 28 * 8, HIP_ATTN_STATUS_SIZE_OVERFLOW, "elements of bf16 (token_stride 329406144173384848, 29 rows; head_stride 64, 2 heads) do not fit in 64 bits"),
        ("q past 2^57", |a, _| a.q.token_stride = 1 << 52, HIP_ATTN_STATUS_SIZE_OVERFLOW, "(token_stride 4503599627370496, 25 rows; head_stride 64, 4 heads): past the end of the user address space (2^57)"),
        ("k at the top", |a, _| a.k.data = ((1usize << 57) - 4096) as *const c_void, HIP_ATTN_STATUS_SIZE_OVERFLOW, "k spans 0x1fffffffffff000 to 0x200000000000d00"),
        ("tagged o pointer", |a, _| a.o.data = (0xF100_0000_0000_1000usize) as *mut c_void, HIP_ATTN_STATUS_SIZE_OVERFLOW, "o spans 0xf100000000001000"),
        ("lse at the top", |a, _| a.lse = ((1usize << 57) - 16) as *mut f32, HIP_ATTN_STATUS_SIZE_OVERFLOW, "lse spans 0x1fffffffffffff0 to 0x200000000000180 (25 rows of 4 heads of f32)"),
        ("cu_seqlens_q at the top", |a, _| a.cu_seqlens_q = ((1usize << 57) - 8) as *const i32, HIP_ATTN_STATUS_SIZE_OVERFLOW, "cu_seqlens_q spans 0x1fffffffffffff8 to 0x200000000000004 (3 int32)"),
        ("mask state at the top", |a, _| a.mask_state_out = ((1usize << 57) - 16) as *mut c_void, HIP_ATTN_STATUS_SIZE_OVERFLOW, "mask_state_out spans 0x1fffffffffffff0"),
        ("o inside q", |a, _| a.o.data = (a.q.data as usize + 256) as *mut c_void, HIP_ATTN_STATUS_INVALID_ARGUMENT, "o may be q itself (the same data pointer and strides), but may not overlap it otherwise"),
        ("o is q with other strides", |a, _| (a.o.data, a.o.token_stride) = (a.q.data as *mut c_void, 512), HIP_ATTN_STATUS_INVALID_ARGUMENT, "o may be q itself"),
        // k moves into o's buffer (o is the larger tensor), so the overlap is with k alone whatever the heap layout.
        ("o on k", |a, _| a.k.data = a.o.data as *const c_void, HIP_ATTN_STATUS_INVALID_ARGUMENT, "an output may not share memory with an input"),
        ("lse in o", |a, _| a.lse = a.o.data as *mut f32, HIP_ATTN_STATUS_INVALID_ARGUMENT, "an output may not share memory with an input, another output or the workspace"),
        ("lse in v", |a, _| a.lse = a.v.data as *mut f32, HIP_ATTN_STATUS_INVALID_ARGUMENT, "overlaps v"),
        ("mask state on cu_seqlens_k", |a, _| a.mask_state_out = a.cu_seqlens_k as *mut c_void, HIP_ATTN_STATUS_INVALID_ARGUMENT, "mask_state_out (0x"),
        ("lse on cu_seqlens_q", |a, _| a.lse = a.cu_seqlens_q as *mut f32, HIP_ATTN_STATUS_INVALID_ARGUMENT, "overlaps cu_seqlens_q (0x"),
        ("batch 0", |a, _| a.batch_size = 0, HIP_ATTN_STATUS_INVALID_ARGUMENT, "batch_size (0)"),
        ("total_q 0", |a, _| a.total_q = 0, HIP_ATTN_STATUS_INVALID_ARGUMENT, "total_q (0)"),
        ("huge total_q", |a, _| a.total_q = u32::MAX, HIP_ATTN_STATUS_INVALID_ARGUMENT, "total_q (4294967295)"),
        ("total_q > total_k", |a, _| (a.total_q, a.max_seqlen_q) = (30, 20), HIP_ATTN_STATUS_INVALID_ARGUMENT, "total_q (30) exceeds total_k (29)"),
        ("max_q > total_q", |a, _| a.max_seqlen_q = 26, HIP_ATTN_STATUS_INVALID_ARGUMENT, "max_seqlen_q (26)"),
        ("workspace small", |_, w| *w -= 1, HIP_ATTN_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes"),
        ("struct_size", |a, _| a.struct_size = 8, HIP_ATTN_STATUS_STRUCT_SIZE_MISMATCH, "hip_prefill_args.struct_size (8)"),
        ("reserved", |a, _| a.reserved[0] = 1, HIP_ATTN_STATUS_INVALID_ARGUMENT, "reserved[0]"),
        ("max_q too small", |a, _| a.max_seqlen_q = 19, HIP_ATTN_STATUS_BAD_INDEX, "max_seqlen"),
    ];
    for (what, mutate, want, needle) in rows {
        let mut f = fixture();
        let mut ws_bytes = f.ws_bytes;
        mutate(&mut f.args, &mut ws_bytes);
        // SAFETY: every pointer left valid spans its extent; the broken ones are what is tested.
        let st = unsafe { hip_prefill(f.ctx.0, &f.args, f.ws.addr as *mut c_void, ws_bytes, null_mut()) };
        expect(st, want, needle, what);
        untouched(&f, what);
        let mut buf = [0 as std::ffi::c_char; 256];
        // SAFETY: buf is writable for its length.
        let n = unsafe { hip_ctx_last_error(f.ctx.0, buf.as_mut_ptr(), buf.len()) };
        assert!(n > 1, "{what}: per-context message missing");
        let ctx_msg = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned();
        assert!(ctx_msg.contains(&needle[..needle.len().min(200)]) || n > 256, "{what}: ctx message {ctx_msg:?}");
    }
}

#[test]
fn index_data_table() {
    // Index data lives in backend memory: the backend checks it before writing anything.
    let cases: Vec<(&str, [i32; 3], [i32; 3], &str)> = vec![
        ("cu_q not starting at 0", [1, 5, 25], [0, 9, 29], "cu_seqlens_q[0] (1)"),
        ("cu_q decreasing", [0, 5, 4], [0, 9, 29], "cu_seqlens_q is not increasing"),
        ("cu_k past total", [0, 5, 25], [0, 15, 30], "cu_seqlens_k[2] (30) must equal total_k (29)"),
        ("cu_k short of total", [0, 5, 25], [0, 9, 28], "cu_seqlens_k[2] (28) must equal total_k (29)"),
        ("cu_q short of total", [0, 5, 24], [0, 9, 29], "cu_seqlens_q[2] (24) must equal total_q (25)"),
        ("Tq > Tk", [0, 10, 25], [0, 9, 29], "Tq (10) > Tk (9)"),
    ];
    for (what, cq, ck, needle) in cases {
        let f = fixture();
        let (qb, kb) = (Host.upload(&i32_bytes(&cq)), Host.upload(&i32_bytes(&ck)));
        let mut args = f.args;
        args.cu_seqlens_q = qb.addr as *const i32;
        args.cu_seqlens_k = kb.addr as *const i32;
        // SAFETY: all buffers are valid host memory of the described extents.
        let st = unsafe { hip_prefill(f.ctx.0, &args, f.ws.addr as *mut c_void, f.ws_bytes, null_mut()) };
        expect(st, HIP_ATTN_STATUS_BAD_INDEX, needle, what);
        untouched(&f, what);
    }
    // The fixture itself is valid.
    let f = fixture();
    let st = unsafe { hip_prefill(f.ctx.0, &f.args, f.ws.addr as *mut c_void, f.ws_bytes, null_mut()) };
    assert_eq!(st, HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
    let _ = &f.p;
}

#[test]
fn decode_table() {
    let mut rng = Rng::new(11);
    let dt = DType::Bf16;
    let mut cfg = config(dt, 64, 4, 2);
    cfg.k = 8;
    let ctx = Ctx::new(&cfg).unwrap();
    let cap = 40;
    let k: Vec<Tensor> = (0..2).map(|_| Tensor::random(&mut rng, dt, cap, 2, 64, 0, 1.0)).collect();
    let paged = Cache { k: k.clone(), v: k.clone(), page_size: Some(8), capacity: cap }.upload(&Host, dt, &mut rng);
    let q = Tensor::random(&mut rng, dt, 2, 4, 64, 0, 1.0);
    let good_state = || Host.zeroed(ctx.state_size(2));
    // Valid first.
    run_decode(&Host, &ctx, dt, &q, &paged, &[30, 40], cap, &good_state()).unwrap();
    // Bad lengths.
    for (lens, needle) in [([0usize, 5], "seqlens_k[0] (0)"), ([5, 41], "seqlens_k[1] (41)")] {
        let err = run_decode(&Host, &ctx, dt, &q, &paged, &lens, cap, &good_state()).unwrap_err();
        assert_eq!(err.0, HIP_ATTN_STATUS_BAD_INDEX, "{}", err.1);
        assert!(err.1.contains(needle), "{}", err.1);
    }
    // A page index outside the pool.
    let mut bad = Cache { k: k.clone(), v: k.clone(), page_size: Some(8), capacity: cap }.upload(&Host, dt, &mut rng);
    let per_seq = bad.desc.page_table_stride as usize;
    let mut table = i32s(&Host.download(bad.page_table.as_ref().unwrap()));
    table[per_seq + 1] = 999;
    let pt = Host.upload(&i32_bytes(&table));
    bad.desc.page_table = pt.addr as *const i32;
    let err = run_decode(&Host, &ctx, dt, &q, &bad, &[30, 40], cap, &good_state()).unwrap_err();
    assert_eq!(err.0, HIP_ATTN_STATUS_BAD_INDEX);
    assert!(err.1.contains("page_table[1][1] (999)"), "{}", err.1);
    // Page table too narrow for max_seqlen_k.
    let mut narrow = paged.desc;
    narrow.page_table_stride = 2;
    let c2 = CacheBufs { k: Host.upload(&[0; 16]), v: Host.upload(&[0; 16]), page_table: None, desc: narrow };
    let err = run_decode(&Host, &ctx, dt, &q, &c2, &[30, 40], cap, &good_state()).unwrap_err();
    assert_eq!(err.0, HIP_ATTN_STATUS_INVALID_ARGUMENT);
    assert!(err.1.contains("kv.page_table_stride (2)"), "{}", err.1);
    // Unknown layout.
    let mut odd = paged.desc;
    odd.layout = 9;
    let c3 = CacheBufs { k: Host.upload(&[0; 16]), v: Host.upload(&[0; 16]), page_table: None, desc: odd };
    let err = run_decode(&Host, &ctx, dt, &q, &c3, &[30, 40], cap, &good_state()).unwrap_err();
    assert!(err.0 == HIP_ATTN_STATUS_INVALID_ARGUMENT && err.1.contains("kv.layout (9)"), "{}", err.1);
    // A corrupt mask-state record of this configuration: count beyond Kb. Output and state stay untouched.
    let rec_ints = ctx.state_size(2) / 4 / (2 * 4);
    let mut st = vec![0i32; ctx.state_size(2) / 4];
    // SAFETY: no cache-dir pointer in the test config.
    let fp = hip_attn::plan::state_fingerprint(&unsafe { hip_attn::config::validate(&cfg) }.unwrap().0);
    st[rec_ints * 3..rec_ints * 3 + 5].copy_from_slice(&[hip_attn::plan::STATE_MAGIC, 1, 4, 999, fp]);
    let state = Host.upload(&i32_bytes(&st));
    let err = run_decode(&Host, &ctx, dt, &q, &paged, &[30, 40], cap, &state).unwrap_err();
    assert_eq!(err.0, HIP_ATTN_STATUS_BAD_INDEX);
    assert!(err.1.contains("mask_state record of sequence 0, mask head 3: count (999)"), "{}", err.1);
    assert!(err.1.contains("zero the sequence's mask-state records after truncating its cache"), "{}", err.1);
    assert_eq!(i32s(&Host.download(&state)), st, "mask state written on failure");
    // NULL mask state.
    let mut args_err = None;
    {
        let qb = Host.upload(&q.bytes(dt));
        let ob = Host.poisoned(2 * 4 * 64 * 2);
        let lens = Host.upload(&i32_bytes(&[3, 4]));
        let args = hip_decode_args {
            struct_size: std::mem::size_of::<hip_decode_args>() as u32,
            batch_size: 2,
            max_seqlen_k: cap as u32,
            reserved_u32: 0,
            q: q.view(&qb),
            kv: paged.desc,
            seqlens_k: lens.addr as *const i32,
            mask_state: null_mut(),
            o: hip_tensor_mut { data: ob.addr as *mut c_void, token_stride: 256, head_stride: 64 },
            lse: null_mut(),
            key_offset: 0,
            shard_flags: 0,
            reserved: [0; 3],
        };
        let ws = Host.zeroed(ctx.decode_ws(2, cap as u32));
        let st = unsafe { hip_decode_step(ctx.0, &args, ws.addr as *mut c_void, ws.bytes, null_mut()) };
        args_err.replace((st, last_error()));
        assert!(Host.download(&ob).iter().all(|&x| x == 0xFF));
    }
    let (st, msg) = args_err.unwrap();
    assert_eq!(st, HIP_ATTN_STATUS_NULL_POINTER);
    assert!(msg.contains("mask_state is NULL"), "{msg}");
}

#[test]
fn null_context_and_args_everywhere() {
    let mut n = 0usize;
    unsafe {
        expect(
            hip_prefill(std::ptr::null(), std::ptr::null(), null_mut(), 0, null_mut()),
            HIP_ATTN_STATUS_NULL_POINTER,
            "ctx is NULL",
            "prefill",
        );
        expect(
            hip_decode_step(std::ptr::null(), std::ptr::null(), null_mut(), 0, null_mut()),
            HIP_ATTN_STATUS_NULL_POINTER,
            "ctx is NULL",
            "decode",
        );
        expect(
            hip_merge_states(std::ptr::null(), std::ptr::null(), null_mut()),
            HIP_ATTN_STATUS_NULL_POINTER,
            "ctx is NULL",
            "merge",
        );
        expect(
            hip_prefill_workspace_size(std::ptr::null(), 1, 1, 1, 1, &mut n),
            HIP_ATTN_STATUS_NULL_POINTER,
            "ctx is NULL",
            "ws",
        );
        expect(
            hip_decode_workspace_size(std::ptr::null(), 1, 1, &mut n),
            HIP_ATTN_STATUS_NULL_POINTER,
            "ctx is NULL",
            "ws",
        );
        expect(hip_mask_state_size(std::ptr::null(), 1, &mut n), HIP_ATTN_STATUS_NULL_POINTER, "ctx is NULL", "state");
        assert_eq!(hip_ctx_last_error(std::ptr::null(), null_mut(), 0), 0);
        hip_ctx_destroy(null_mut());
    }
    let ctx = Ctx::new(&config(DType::F16, 64, 2, 2)).unwrap();
    unsafe {
        expect(
            hip_prefill(ctx.0, std::ptr::null(), null_mut(), 0, null_mut()),
            HIP_ATTN_STATUS_NULL_POINTER,
            "hip_prefill_args is NULL",
            "prefill args",
        );
        expect(
            hip_decode_step(ctx.0, std::ptr::null(), null_mut(), 0, null_mut()),
            HIP_ATTN_STATUS_NULL_POINTER,
            "hip_decode_args is NULL",
            "decode args",
        );
        expect(
            hip_merge_states(ctx.0, std::ptr::null(), null_mut()),
            HIP_ATTN_STATUS_NULL_POINTER,
            "hip_merge_args is NULL",
            "merge args",
        );
        expect(
            hip_prefill_workspace_size(ctx.0, 1, 1, 1, 1, null_mut()),
            HIP_ATTN_STATUS_NULL_POINTER,
            "bytes is NULL",
            "ws out",
        );
        expect(
            hip_prefill_workspace_size(ctx.0, 0, 1, 1, 1, &mut n),
            HIP_ATTN_STATUS_INVALID_ARGUMENT,
            "batch_size (0)",
            "ws batch",
        );
        expect(
            hip_decode_workspace_size(ctx.0, 1, 0, &mut n),
            HIP_ATTN_STATUS_INVALID_ARGUMENT,
            "max_seqlen_k (0)",
            "ws maxk",
        );
        expect(
            hip_mask_state_size(ctx.0, u32::MAX, &mut n),
            HIP_ATTN_STATUS_INVALID_ARGUMENT,
            "batch_size",
            "state batch",
        );
    }
}

#[test]
fn status_strings_and_thread_local_messages() {
    let mut seen = std::collections::HashSet::new();
    for s in hip_status::all() {
        let text = unsafe { CStr::from_ptr(hip_status_string(s as i32)) }.to_str().unwrap().to_owned();
        assert!(!text.is_empty() && seen.insert(text.clone()), "{s:?}: {text}");
    }
    let unknown = unsafe { CStr::from_ptr(hip_status_string(12345)) }.to_str().unwrap();
    assert_eq!(unknown, "unknown status code");
    // A failure on one thread does not show on another.
    let mut out = null_mut();
    let bad = config(DType::Bf16, 96, 4, 4);
    assert_ne!(unsafe { hip_ctx_create(&bad, &mut out) }, HIP_ATTN_STATUS_SUCCESS);
    assert!(last_error().contains("head_dim (96)"));
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "");
    assert_eq!(unsafe { CStr::from_ptr(hip_version()) }.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    assert_eq!(hip_abi_version(), HIP_ATTN_ABI_VERSION);
}

#[test]
fn prefill_in_place_and_workspace_overlap() {
    // o == q (same pointer and strides) is allowed and gives what a separate o gives.
    let f = fixture();
    // SAFETY: the fixture's buffers span what its args describe.
    let st = unsafe { hip_prefill(f.ctx.0, &f.args, f.ws.addr as *mut c_void, f.ws_bytes, null_mut()) };
    assert_eq!(st, HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
    // SAFETY: the fixture keeps o alive.
    let separate = unsafe { std::slice::from_raw_parts(f.o as *const u8, f.o_bytes) }.to_vec();
    let g = fixture();
    let mut args = g.args;
    args.o = hip_tensor_mut {
        data: args.q.data as *mut c_void,
        token_stride: args.q.token_stride,
        head_stride: args.q.head_stride,
    };
    // SAFETY: q is writable host memory of the o extent (the same shape).
    let st = unsafe { hip_prefill(g.ctx.0, &args, g.ws.addr as *mut c_void, g.ws_bytes, null_mut()) };
    assert_eq!(st, HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
    assert_eq!(Host.download(&g.bufs[0]), separate, "in-place prefill differs from a separate output");

    // The workspace may overlap no argument: here it is the output buffer, then the mask state.
    for (what, ws, needle) in [("o", 3, "workspace (0x"), ("mask state", 7, "workspace (0x")] {
        let f = fixture();
        let big = Host.poisoned(f.ws_bytes.max(f.o_bytes) + 64);
        let mut args = f.args;
        if ws == 3 {
            args.o.data = big.addr as *mut c_void;
        } else {
            args.mask_state_out = big.addr as *mut c_void;
        }
        // SAFETY: `big` is larger than the workspace and every output view; nothing is written on failure.
        let st = unsafe { hip_prefill(f.ctx.0, &args, big.addr as *mut c_void, f.ws_bytes, null_mut()) };
        expect(st, HIP_ATTN_STATUS_INVALID_ARGUMENT, needle, what);
        assert!(Host.download(&big).iter().all(|&x| x == 0xFF), "{what}: written on failure");
        untouched(&f, what);
    }
    // Past the end of what this call uses, a workspace may hold other things (its first needed bytes count).
    let f = fixture();
    let big = Host.poisoned(f.ws_bytes + 1024);
    let mut args = f.args;
    args.lse = (big.addr + f.ws_bytes) as *mut f32;
    // SAFETY: lse (400 bytes) lies inside `big` past the workspace's used bytes.
    let st = unsafe { hip_prefill(f.ctx.0, &args, big.addr as *mut c_void, f.ws_bytes + 1024, null_mut()) };
    assert_eq!(st, HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
}

#[test]
fn decode_aliasing_table() {
    let mut rng = Rng::new(12);
    let dt = DType::Bf16;
    let mut cfg = config(dt, 64, 4, 2);
    cfg.k = 8;
    let ctx = Ctx::new(&cfg).unwrap();
    let cap = 24;
    let k: Vec<Tensor> = (0..2).map(|_| Tensor::random(&mut rng, dt, cap, 2, 64, 0, 1.0)).collect();
    let paged = Cache { k: k.clone(), v: k.clone(), page_size: Some(8), capacity: cap }.upload(&Host, dt, &mut rng);
    let q = Tensor::random(&mut rng, dt, 2, 4, 64, 0, 1.0);
    type Mutate = fn(&mut hip_decode_args, &mut usize);
    let rows: Vec<(&str, Mutate, &str)> = vec![
        ("o is q", |a, _| a.o.data = a.q.data as *mut c_void, "o (0x"),
        ("lse in q", |a, _| a.lse = a.q.data as *mut f32, "lse (0x"),
        ("lse in the k cache", |a, _| a.lse = a.kv.k as *mut f32, "overlaps kv.k"),
        ("o on the v cache", |a, _| a.o.data = a.kv.v as *mut c_void, "overlaps kv.v"),
        ("mask state on seqlens_k", |a, _| a.mask_state = a.seqlens_k as *mut c_void, "mask_state (0x"),
        ("lse on the page table", |a, _| a.lse = a.kv.page_table as *mut f32, "overlaps kv.page_table"),
        ("lse in the mask state", |a, _| a.lse = a.mask_state as *mut f32, "mask_state (0x"),
        ("workspace is o", |a, w| *w = a.o.data as usize, "workspace (0x"),
        (
            "seqlens_k at the top",
            |a, _| a.seqlens_k = ((1usize << 57) - 4) as *const i32,
            "seqlens_k spans 0x1fffffffffffffc to 0x200000000000004 (2 int32)",
        ),
        (
            "page table at the top",
            |a, _| a.kv.page_table = ((1usize << 57) - 4) as *const i32,
            "kv.page_table spans 0x1fffffffffffffc",
        ),
        ("kv past 2^57", |a, _| a.kv.seq_stride = 1 << 55, "kv.k spans"),
    ];
    for (what, mutate, needle) in rows {
        let qb = Host.upload(&q.bytes(dt));
        let ob = Host.poisoned(2 * 4 * 64 * 2 + 4096);
        let lseb = Host.poisoned(64);
        let lens = Host.upload(&i32_bytes(&[20, 24]));
        let state = Host.zeroed(ctx.state_size(2));
        let ws_bytes = ctx.decode_ws(2, cap as u32);
        let ws = Host.poisoned(ws_bytes);
        let mut args = decode_args(&q, &qb, &paged, &lens, cap, &state, &ob, &lseb);
        let mut ws_addr = ws.addr;
        // Valid first.
        // SAFETY: every buffer spans what the args describe.
        let st = unsafe { hip_decode_step(ctx.0, &args, ws.addr as *mut c_void, ws_bytes, null_mut()) };
        assert_eq!(st, HIP_ATTN_STATUS_SUCCESS, "{what}: {}", last_error());
        let (q_before, o_before, state_before) = (Host.download(&qb), Host.download(&ob), Host.download(&state));
        mutate(&mut args, &mut ws_addr);
        let want =
            if needle.contains("spans") { HIP_ATTN_STATUS_SIZE_OVERFLOW } else { HIP_ATTN_STATUS_INVALID_ARGUMENT };
        // SAFETY: the broken fields are refused before anything is read or written.
        let st = unsafe { hip_decode_step(ctx.0, &args, ws_addr as *mut c_void, ws_bytes, null_mut()) };
        expect(st, want, needle, what);
        assert_eq!(Host.download(&qb), q_before, "{what}: q written");
        assert_eq!(Host.download(&ob), o_before, "{what}: o written");
        assert_eq!(Host.download(&state), state_before, "{what}: mask state written");
    }
}

#[test]
fn merge_aliasing_table() {
    let mut rng = Rng::new(13);
    let dt = DType::F16;
    let ctx = Ctx::new(&config(dt, 64, 4, 4)).unwrap();
    let (n, h, d) = (5usize, 4usize, 64usize);
    let xa = Tensor::random(&mut rng, dt, n, h, d, 0, 1.0);
    let xb = Tensor::random(&mut rng, dt, n, h, d, 0, 1.0);
    let la: Vec<f32> = (0..n * h).map(|i| (i % 7) as f32 * 0.3).collect();
    let lb: Vec<f32> = (0..n * h).map(|i| (i % 5) as f32 * 0.4).collect();
    let t = |b: &Buf| hip_tensor { data: b.addr as *const c_void, token_stride: (h * d) as i64, head_stride: d as i64 };
    let tm =
        |addr: usize| hip_tensor_mut { data: addr as *mut c_void, token_stride: (h * d) as i64, head_stride: d as i64 };
    // The reference: separate outputs.
    let run = |oa: &Buf, ob: &Buf, lsa: &Buf, lsb: &Buf, out: usize, lout: usize| {
        let args = hip_merge_args {
            struct_size: std::mem::size_of::<hip_merge_args>() as u32,
            num_tokens: n as u32,
            num_heads: h as u32,
            reserved_u32: 0,
            o_a: t(oa),
            lse_a: lsa.addr as *const f32,
            o_b: t(ob),
            lse_b: lsb.addr as *const f32,
            o_out: tm(out),
            lse_out: lout as *mut f32,
            reserved: [0; 2],
        };
        // SAFETY: every address is a live host buffer of the [n, h, d] (or [n, h] f32) extent, or a deliberate
        // overlap that validation refuses before anything is read or written.
        unsafe { hip_merge_states(ctx.0, &args, null_mut()) }
    };
    let fresh = || {
        (
            Host.upload(&xa.bytes(dt)),
            Host.upload(&xb.bytes(dt)),
            Host.upload(&encode(DType::F32, &la)),
            Host.upload(&[encode(DType::F32, &lb), vec![0u8; 64]].concat()),
        )
    };
    let (oa, ob, lsa, lsb) = fresh();
    let (out, lout) = (Host.poisoned(n * h * d * 2), Host.poisoned(n * h * 4));
    assert_eq!(run(&oa, &ob, &lsa, &lsb, out.addr, lout.addr), HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
    let (want_o, want_l) = (Host.download(&out), Host.download(&lout));
    // Allowed: o_out is o_a or o_b itself, lse_out is lse_a or lse_b itself; the results are the same.
    for (into_a, lse_into_a) in [(true, true), (false, false), (true, false)] {
        let (oa, ob, lsa, lsb) = fresh();
        let out = if into_a { &oa } else { &ob };
        let lout = if lse_into_a { &lsa } else { &lsb };
        assert_eq!(run(&oa, &ob, &lsa, &lsb, out.addr, lout.addr), HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
        assert_eq!(Host.download(out), want_o, "in-place merge into {}", if into_a { "o_a" } else { "o_b" });
        assert_eq!(Host.download(lout)[..n * h * 4], want_l[..], "in-place lse");
    }
    // Refused: anything else.
    let (oa, ob, lsa, lsb) = fresh();
    let big = Host.poisoned(2 * n * h * d * 2);
    let cases: Vec<(&str, usize, usize, &str)> = vec![
        (
            "o_out shifted into o_a",
            oa.addr + 128,
            lout.addr,
            "o_out may be o_a itself (the same data pointer and strides), but may not overlap it otherwise",
        ),
        ("lse_out in o_b", out.addr, ob.addr, "lse_out (0x"),
        // lse_b's buffer has room after its n * h floats (`fresh`), so the shifted lse_out overlaps lse_b alone.
        ("lse_out shifted into lse_b", out.addr, lsb.addr + 16, "lse_out may be lse_b itself"),
        ("lse_out in o_out", big.addr, big.addr + 64, "overlaps lse_out"),
    ];
    for (what, o_at, l_at, needle) in cases {
        let before = [&oa, &ob, &lsa, &lsb, &big].map(|b| Host.download(b));
        expect(run(&oa, &ob, &lsa, &lsb, o_at, l_at), HIP_ATTN_STATUS_INVALID_ARGUMENT, needle, what);
        assert_eq!([&oa, &ob, &lsa, &lsb, &big].map(|b| Host.download(b)), before, "{what}: written on failure");
    }
    // o_out over lse_a alone: lse_a is placed inside o_out's buffer (o_out is the larger), so no other argument can
    // lie in o_out's extent, wherever the heap put them.
    let over = Host.poisoned(n * h * d * 2);
    let la_inside = Buf::new(over.addr + 64, n * h * 4, Box::new(()));
    let before = Host.download(&over);
    expect(
        run(&oa, &ob, &la_inside, &lsb, over.addr, lout.addr),
        HIP_ATTN_STATUS_INVALID_ARGUMENT,
        "overlaps lse_a",
        "o_out on lse_a",
    );
    assert_eq!(Host.download(&over), before, "o_out on lse_a: written on failure");
    // o_out exactly o_a while o_b partly overlaps o_out: o_b's rows would be overwritten before they are read.
    let shared = Host.upload(&[xa.bytes(dt), xb.bytes(dt)].concat());
    let a2 = Buf::new(shared.addr, n * h * d * 2, Box::new(()));
    let b2 = Buf::new(shared.addr + 256, n * h * d * 2, Box::new(()));
    expect(
        run(&a2, &b2, &lsa, &lsb, a2.addr, lout.addr),
        HIP_ATTN_STATUS_INVALID_ARGUMENT,
        "overlaps o_b",
        "o_b inside o_out",
    );
}

/// A mask state written by a context of another configuration is BAD_INDEX naming the record and saying so, with
/// no output and no record written; a context that differs only in what the fingerprint leaves out (refresh, the
/// decode selection) reuses the records.
#[test]
fn mask_state_of_another_configuration() {
    let mut rng = Rng::new(13);
    let dt = DType::Bf16;
    let mut cfg = config(dt, 64, 4, 2);
    (cfg.k, cfg.window) = (8, 8);
    let writer = Ctx::new(&cfg).unwrap();
    let cap = 40;
    let k: Vec<Tensor> = (0..2).map(|_| Tensor::random(&mut rng, dt, cap, 2, 64, 0, 1.0)).collect();
    let cache = Cache { k: k.clone(), v: k, page_size: None, capacity: cap }.upload(&Host, dt, &mut rng);
    let q = Tensor::random(&mut rng, dt, 2, 4, 64, 0, 1.0);
    let state = Host.zeroed(writer.state_size(2));
    run_decode(&Host, &writer, dt, &q, &cache, &[30, 40], cap, &state).unwrap();
    let written = Host.download(&state);
    let rec_ints = writer.state_size(2) / 4 / (2 * 4);

    // Another window, the same record size: the stored e and blocks would be taken for this context's own.
    for (what, edit) in [
        ("window", (|c: &mut hip_config| c.window = 16) as fn(&mut hip_config)),
        ("bq", |c| c.bq = 16),
        ("sharing per kv head", |c| c.mask_sharing = 2),
        ("dtype", |c| c.dtype = dtype_raw(DType::F16)),
    ] {
        let mut other = cfg;
        edit(&mut other);
        let reader = Ctx::new(&other).unwrap();
        assert!(reader.state_size(2) <= written.len(), "{what}");
        let odt = if other.dtype == cfg.dtype { dt } else { DType::F16 };
        let ck: Vec<Tensor> = (0..2).map(|_| Tensor::random(&mut rng, odt, cap, 2, 64, 0, 1.0)).collect();
        let cache = Cache { k: ck.clone(), v: ck, page_size: None, capacity: cap }.upload(&Host, odt, &mut rng);
        let state = Host.upload(&written[..reader.state_size(2)]);
        let qb = Host.upload(&q.bytes(odt));
        let (ob, lseb) = (Host.poisoned(2 * 4 * 64 * odt.size()), Host.poisoned(2 * 4 * 4));
        let lens = Host.upload(&i32_bytes(&[30, 40]));
        let args = decode_args(&q, &qb, &cache, &lens, cap, &state, &ob, &lseb);
        let ws = Host.zeroed(reader.decode_ws(2, cap as u32));
        // SAFETY: every buffer spans what the args describe and outlives the call (CPU backend: synchronous).
        let st = unsafe { hip_decode_step(reader.0, &args, ws.addr as *mut c_void, ws.bytes, null_mut()) };
        let msg = last_error();
        assert_eq!(st, HIP_ATTN_STATUS_BAD_INDEX, "{what}: {msg}");
        assert!(
            msg.contains(
                "mask_state record of sequence 0, mask head 0 was written by a context of another configuration"
            ),
            "{what}: {msg}"
        );
        assert!(Host.download(&ob).iter().all(|&x| x == 0xFF), "{what}: output written on failure");
        assert!(Host.download(&lseb).iter().all(|&x| x == 0xFF), "{what}: lse written on failure");
        assert_eq!(Host.download(&state), written[..reader.state_size(2)], "{what}: mask state written on failure");
    }

    // Only refresh and the decode selection differ: the records are this context's to reuse (step 1 -> 2).
    let mut same = cfg;
    (same.refresh, same.decode_selection) = (3, hip_selection::HIP_ATTN_SELECT_SCAN as u32);
    let reader = Ctx::new(&same).unwrap();
    run_decode(&Host, &reader, dt, &q, &cache, &[31, 40], cap, &state).unwrap();
    let after = Host.download(&state);
    for r in 0..2 * 4 {
        let (was, now) = (record(&written, rec_ints, r), record(&after, rec_ints, r));
        assert_eq!((now.1, now.2, &now.3), (2, was.2, &was.3), "record {r} reused");
    }
}

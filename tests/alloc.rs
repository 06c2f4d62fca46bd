//! The allocation promise of run calls (issue 12): nothing grows with a sequence, the batch or the cache, so
//! contexts far longer than the host's memory run when the inputs themselves are small (stride-0 K/V views), and
//! the configuration-bounded scratch that remains fails as HIP_ATTN_STATUS_OUT_OF_MEMORY with nothing written,
//! never as an abort. Before the fix, the long-context tests aborted the process ("memory allocation of N bytes
//! failed").
mod common;
use common::*;
use hip_attn::config::validate;
use hip_attn::plan::{state_ints, PrefillWorkspace};
use hip_attn::spec::{dot, BlockKeys};
use hip_attn::tensor::DType;
use hip_attn::*;
use std::ffi::c_void;
use std::process::Command;

const MAX_KEYS: usize = i32::MAX as usize;

/// One row of head_dim f32 values in host memory, for a stride-0 view that repeats it at every token.
fn one_row(rng: &mut Rng, d: usize) -> (Vec<f32>, Buf) {
    let row: Vec<f32> = (0..d).map(|_| rng.sym()).collect();
    let buf = Host.upload(&encode(DType::F32, &row));
    (row, buf)
}

fn repeated(b: &Buf) -> hip_tensor {
    hip_tensor { data: b.addr as *const c_void, token_stride: 0, head_stride: 0 }
}

/// Every key equals `krow` and every value `vrow`: each attended key gets the same logit s, so the output is
/// vrow exactly and the LSE is s + ln(n) for the n keys attended (rounded once to f32, as the backend does).
fn check_uniform(o: &[f32], lse: f32, vrow: &[f32], s: f32, n: usize, what: &str) {
    assert_eq!(o, vrow, "{what}: output is not the (repeated) value row");
    let want = (s as f64 + (n as f64).ln()) as f32;
    assert_eq!(lse, want, "{what}: LSE {lse} is not that of {n} keys ({want})");
}

/// One query against `tk` keys given as stride-0 K/V views: sink + window (+ the k selected keys) are attended.
fn long_prefill(k: u32, tk: usize) {
    let mut rng = Rng::fresh("alloc-prefill");
    let d = 64;
    let mut cfg = config(DType::F32, d as u32, 1, 1);
    cfg.k = k;
    // SAFETY: no cache-dir pointer.
    let (c, _) = unsafe { validate(&cfg) }.unwrap();
    let ctx = Ctx::new(&cfg).unwrap();
    let (qrow, qb) = one_row(&mut rng, d);
    let (krow, kb) = one_row(&mut rng, d);
    let (vrow, vb) = one_row(&mut rng, d);
    let ob = Host.poisoned(d * 4);
    let lseb = Host.poisoned(4);
    let cuq = Host.upload(&i32_bytes(&[0, 1]));
    let cuk = Host.upload(&i32_bytes(&[0, tk as i32]));
    let ws_bytes = ctx.prefill_ws(1, 1, 1, tk as u32);
    let ws = Host.poisoned(ws_bytes.max(16));
    let state = Host.zeroed(ctx.state_size(1));
    let args = hip_prefill_args {
        struct_size: std::mem::size_of::<hip_prefill_args>() as u32,
        batch_size: 1,
        total_q: 1,
        total_k: tk as u32,
        max_seqlen_q: 1,
        max_seqlen_k: tk as u32,
        q: qb.as_view(d),
        k: repeated(&kb),
        v: repeated(&vb),
        o: hip_tensor_mut { data: ob.addr as *mut c_void, token_stride: d as i64, head_stride: d as i64 },
        cu_seqlens_q: cuq.addr as *const i32,
        cu_seqlens_k: cuk.addr as *const i32,
        lse: lseb.addr as *mut f32,
        mask_state_out: state.addr as *mut c_void,
        reserved: [0; 4],
    };
    // SAFETY: every buffer spans what the args describe (K and V one row each, read with stride 0).
    let st = unsafe { hip_prefill(ctx.0, &args, ws.addr as *mut c_void, ws_bytes, std::ptr::null_mut()) };
    assert_eq!(st, hip_status::HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
    let sel = workspace_mask(&c, &Host.download(&ws), 1, 1, PrefillWorkspace::slot(&c, 0, 0, 0), 0);
    let keys = BlockKeys::new(tk - 1, tk, c.sink, c.window, c.bk, true);
    assert_eq!(sel.len(), c.kb().min(keys.nb), "k {k}: selected {sel:?}");
    let selected: usize = sel.iter().map(|&j| keys.block_range(j as usize)).map(|(a, b)| b - a).sum();
    let s = c.scale * dot(&qrow, &krow);
    let o = f32s(&Host.download(&ob));
    let lse = f32s(&Host.download(&lseb))[0];
    check_uniform(&o, lse, &vrow, s, c.sink + c.window + selected, &format!("prefill k {k} tk {tk}"));
}

trait AsView {
    fn as_view(&self, d: usize) -> hip_tensor;
}
impl AsView for Buf {
    fn as_view(&self, d: usize) -> hip_tensor {
        hip_tensor { data: self.addr as *const c_void, token_stride: d as i64, head_stride: d as i64 }
    }
}

#[test]
fn one_query_prefill_against_max_keys_streams() {
    long_prefill(0, MAX_KEYS);
}

/// With k > 0 the tree search runs on the 2^31-1-key domain too: its cost is O(Kb log NB), nothing O(Tk).
#[test]
fn one_query_prefill_against_max_keys_searches_in_bounded_memory() {
    long_prefill(64, MAX_KEYS);
}

/// A decode step at `tk` cached keys, head_dim 256, the cache a stride-0 contiguous view; two steps, so that the
/// second reuses the stored mask (refresh 2).
fn long_decode(k: u32, tk: usize, selection: u32) {
    let mut rng = Rng::fresh("alloc-decode");
    let (d, hq) = (256, 4);
    let mut cfg = config(DType::F32, d as u32, hq as u32, 1);
    (cfg.k, cfg.refresh, cfg.decode_selection) = (k, 2, selection);
    // SAFETY: no cache-dir pointer.
    let (c, _) = unsafe { validate(&cfg) }.unwrap();
    let ctx = Ctx::new(&cfg).unwrap();
    let q = Tensor::random(&mut rng, DType::F32, 1, hq, d, 0, 1.0);
    let qb = Host.upload(&q.bytes(DType::F32));
    let (krow, kb) = one_row(&mut rng, d);
    let (vrow, vb) = one_row(&mut rng, d);
    let cache = CacheBufs {
        k: Host.upload(&[]),
        v: Host.upload(&[]),
        page_table: None,
        desc: hip_kv_cache {
            layout: hip_kv_layout::HIP_ATTN_KV_CONTIGUOUS as u32,
            page_size: 0,
            k: kb.addr as *const c_void,
            v: vb.addr as *const c_void,
            seq_stride: 0,
            token_stride: 0,
            head_stride: 0,
            page_table: std::ptr::null(),
            page_table_stride: 0,
            num_pages: 0,
        },
    };
    let state = Host.zeroed(ctx.state_size(1));
    for step in 0..2 {
        let out = run_decode(&Host, &ctx, DType::F32, &q, &cache, &[tk], tk, &state).unwrap();
        let (magic, st, e, blocks) = record(&Host.download(&state), state_ints(&c), 0);
        assert_eq!((magic, st), (hip_attn::plan::STATE_MAGIC, step + 1), "record after step {step}");
        let keys = BlockKeys::with_e(e as usize, tk, c.sink, c.bk);
        assert_eq!(blocks.len(), c.kb().min(keys.nb));
        let selected: usize = blocks.iter().map(|&j| keys.block_range(j as usize)).map(|(a, b)| b - a).sum();
        let n = c.sink + (tk - e as usize) + selected;
        for h in 0..hq {
            let s = c.scale * dot(q.at(0, h), &krow);
            check_uniform(
                &out.o[h * d..(h + 1) * d],
                out.lse[h],
                &vrow,
                s,
                n,
                &format!("decode k {k} step {step} head {h}"),
            );
        }
    }
    drop(qb);
}

#[test]
fn decode_at_2_pow_26_keys_head_dim_256_streams() {
    long_decode(0, 1 << 26, hip_selection::HIP_ATTN_SELECT_TREE as u32);
}

#[test]
fn decode_at_2_pow_26_keys_searches_in_bounded_memory() {
    long_decode(64, 1 << 26, hip_selection::HIP_ATTN_SELECT_TREE as u32);
}

/// SCAN reads every key of the domain once, so its length is kept moderate; its memory is O(Kb) all the same.
#[test]
fn decode_scan_at_a_long_context_stays_in_bounded_memory() {
    long_decode(64, 1 << 16, hip_selection::HIP_ATTN_SELECT_SCAN as u32);
}

// ---------- the scratch failure path, in a child process with a low address-space limit ----------

const CHILD: &str = "HIP_ATTN_ALLOC_TEST_CHILD";

/// Virtual memory of this process, in bytes.
fn address_space() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Runs `f` with the address space limited to what is mapped now plus `margin` bytes, then lifts the limit.
fn with_address_space_limit<T>(margin: u64, f: impl FnOnce() -> T) -> T {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: old is a writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut old) }, 0);
    let low = libc::rlimit { rlim_cur: address_space() + margin, rlim_max: old.rlim_max };
    // SAFETY: a valid rlimit; lowering the soft limit needs no privilege.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &low) }, 0);
    let r = f();
    // SAFETY: as above; raising the soft limit back up to the unchanged hard limit needs no privilege either.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &old) }, 0);
    r
}

/// A prefill whose scratch (the sampled queries of 1024 q heads sharing one mask, 64 queries each, head_dim 256:
/// 64 MiB) does not fit under the limit, though the inputs (Q a stride-0 view) and outputs already exist.
fn prefill_out_of_memory() {
    let (d, hq, t) = (256usize, 1024usize, 64usize);
    let mut cfg = config(DType::Bf16, d as u32, hq as u32, 1);
    (cfg.mask_sharing, cfg.bq, cfg.k, cfg.sink, cfg.window) =
        (hip_mask_sharing::HIP_ATTN_MASK_PER_KV_HEAD as u32, t as u32, 16, 4, 8);
    let ctx = Ctx::new(&cfg).unwrap();
    let mut rng = Rng::fresh("alloc-oom");
    let qb = Host.upload(&encode(DType::Bf16, &(0..d).map(|_| rng.sym()).collect::<Vec<_>>()));
    let k = Tensor::random(&mut rng, DType::Bf16, t, 1, d, 0, 1.0);
    let v = Tensor::random(&mut rng, DType::Bf16, t, 1, d, 0, 1.0);
    let (kb, vb) = (Host.upload(&k.bytes(DType::Bf16)), Host.upload(&v.bytes(DType::Bf16)));
    let ob = Host.poisoned(t * hq * d * 2);
    let lseb = Host.poisoned(t * hq * 4);
    let cu = Host.upload(&i32_bytes(&[0, t as i32]));
    let ws_bytes = ctx.prefill_ws(1, t as u32, t as u32, t as u32);
    let ws = Host.poisoned(ws_bytes);
    let state = Host.poisoned(ctx.state_size(1));
    let args = hip_prefill_args {
        struct_size: std::mem::size_of::<hip_prefill_args>() as u32,
        batch_size: 1,
        total_q: t as u32,
        total_k: t as u32,
        max_seqlen_q: t as u32,
        max_seqlen_k: t as u32,
        q: repeated(&qb),
        k: k.view(&kb),
        v: v.view(&vb),
        o: hip_tensor_mut { data: ob.addr as *mut c_void, token_stride: (hq * d) as i64, head_stride: d as i64 },
        cu_seqlens_q: cu.addr as *const i32,
        cu_seqlens_k: cu.addr as *const i32,
        lse: lseb.addr as *mut f32,
        mask_state_out: state.addr as *mut c_void,
        reserved: [0; 4],
    };
    // SAFETY: every buffer spans what the args describe.
    let run = || unsafe { hip_prefill(ctx.0, &args, ws.addr as *mut c_void, ws_bytes, std::ptr::null_mut()) };
    let (st, msg) = with_address_space_limit(16 << 20, || {
        let st = run();
        (st, last_error())
    });
    assert_eq!(st, hip_status::HIP_ATTN_STATUS_OUT_OF_MEMORY, "{msg}");
    assert!(msg.contains("bytes of host scratch"), "{msg}");
    for (name, b) in [("o", &ob), ("lse", &lseb), ("workspace", &ws), ("mask_state_out", &state)] {
        assert!(Host.download(b).iter().all(|&x| x == 0xFF), "prefill wrote {name} although it failed");
    }
    // The same call with the memory available succeeds: the failure was the scratch, nothing else.
    assert_eq!(run(), hip_status::HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
    println!("child: prefill OUT_OF_MEMORY ({msg}), nothing written");
}

/// A decode step whose search arrays (Kb = 2^20 blocks: over 100 MiB) do not fit under the limit.
fn decode_out_of_memory() {
    let d = 64usize;
    let mut cfg = config(DType::F32, d as u32, 1, 1);
    (cfg.k, cfg.bk) = (1 << 20, 1);
    let ctx = Ctx::new(&cfg).unwrap();
    let mut rng = Rng::fresh("alloc-oom-decode");
    let q = Tensor::random(&mut rng, DType::F32, 1, 1, d, 0, 1.0);
    let len = 100;
    let k = Tensor::random(&mut rng, DType::F32, len, 1, d, 0, 1.0);
    let v = Tensor::random(&mut rng, DType::F32, len, 1, d, 0, 1.0);
    let cache = Cache { k: vec![k], v: vec![v], page_size: Some(7), capacity: len }.upload(&Host, DType::F32, &mut rng);
    // An empty record (no mask yet) makes the step search.
    let state = Host.zeroed(ctx.state_size(1));
    let qb = Host.upload(&q.bytes(DType::F32));
    let ob = Host.poisoned(d * 4);
    let lseb = Host.poisoned(4);
    let lens = Host.upload(&i32_bytes(&[len as i32]));
    let ws_bytes = ctx.decode_ws(1, len as u32);
    let ws = Host.poisoned(ws_bytes);
    let args = decode_args(&q, &qb, &cache, &lens, len, &state, &ob, &lseb);
    // SAFETY: every buffer spans what the args describe.
    let run = || unsafe { hip_decode_step(ctx.0, &args, ws.addr as *mut c_void, ws_bytes, std::ptr::null_mut()) };
    let (st, msg) = with_address_space_limit(16 << 20, || {
        let st = run();
        (st, last_error())
    });
    assert_eq!(st, hip_status::HIP_ATTN_STATUS_OUT_OF_MEMORY, "{msg}");
    assert!(msg.contains("bytes of host scratch"), "{msg}");
    assert!(Host.download(&ob).iter().all(|&x| x == 0xFF), "decode wrote o although it failed");
    assert!(Host.download(&lseb).iter().all(|&x| x == 0xFF), "decode wrote lse although it failed");
    assert!(Host.download(&state).iter().all(|&x| x == 0), "decode wrote the mask state although it failed");
    assert_eq!(run(), hip_status::HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
    println!("child: decode OUT_OF_MEMORY ({msg}), nothing written");
}

/// RLIMIT_AS applies to the whole process, so the limited calls run in a child: this test binary started again
/// with CHILD set, running only this test.
#[test]
fn scratch_failure_is_out_of_memory_and_writes_nothing() {
    if std::env::var_os(CHILD).is_some() {
        prefill_out_of_memory();
        decode_out_of_memory();
        return;
    }
    let name = "scratch_failure_is_out_of_memory_and_writes_nothing";
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "child failed ({}):\n{text}", out.status);
    assert!(text.contains("child: prefill OUT_OF_MEMORY") && text.contains("child: decode OUT_OF_MEMORY"), "{text}");
}

// ---------- index data read in place: an output that overlaps it cannot steer a read outside the tensors ----------
// The argument check refuses an output that overlaps index data before anything runs (INVALID_ARGUMENT, nothing
// written). The backend's re-check of index data where it reads it in place stays as the second line (memory
// changed by another thread during the call); these cases pin the first.

/// cu_seqlens_k inside the output rows of sequence 0: it would be valid when checked and overwritten by sequence
/// 0's output before sequence 1 reads it again.
#[test]
fn cu_seqlens_changed_by_an_overlapping_output_is_reported() {
    let mut rng = Rng::fresh("alloc-alias-cu");
    let d = 64;
    let cfg = config(DType::F32, d as u32, 1, 1);
    let ctx = Ctx::new(&cfg).unwrap();
    let p = Problem::new(&mut rng, DType::F32, d, 1, 1, &[1, 1], &[4, 4], 0);
    let (qb, kb, vb) =
        (Host.upload(&p.q.bytes(DType::F32)), Host.upload(&p.k.bytes(DType::F32)), Host.upload(&p.v.bytes(DType::F32)));
    let mut o_bytes = vec![0xFFu8; 2 * d * 4];
    o_bytes[..12].copy_from_slice(&i32_bytes(&[0, 4, 8]));
    let ob = Host.upload(&o_bytes);
    let cuq = Host.upload(&i32_bytes(&[0, 1, 2]));
    let ws_bytes = ctx.prefill_ws(2, 2, 1, 4);
    let ws = Host.poisoned(ws_bytes);
    let args = hip_prefill_args {
        struct_size: std::mem::size_of::<hip_prefill_args>() as u32,
        batch_size: 2,
        total_q: 2,
        total_k: 8,
        max_seqlen_q: 1,
        max_seqlen_k: 4,
        q: p.q.view(&qb),
        k: p.k.view(&kb),
        v: p.v.view(&vb),
        o: hip_tensor_mut { data: ob.addr as *mut c_void, token_stride: d as i64, head_stride: d as i64 },
        cu_seqlens_q: cuq.addr as *const i32,
        cu_seqlens_k: ob.addr as *const i32,
        lse: std::ptr::null_mut(),
        mask_state_out: std::ptr::null_mut(),
        reserved: [0; 4],
    };
    // SAFETY: every buffer spans what the args describe; cu_seqlens_k aliases o on purpose.
    let st = unsafe { hip_prefill(ctx.0, &args, ws.addr as *mut c_void, ws_bytes, std::ptr::null_mut()) };
    let msg = last_error();
    assert_eq!(st, hip_status::HIP_ATTN_STATUS_INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("o (") && msg.contains("overlaps cu_seqlens_k"), "{msg}");
    assert_eq!(Host.download(&ob), o_bytes, "nothing may be written");
}

/// The page table inside the output row of sequence 0: sequence 1's page indices would become float bits once
/// sequence 0's output is written.
#[test]
fn page_table_changed_by_an_overlapping_output_is_reported() {
    let mut rng = Rng::fresh("alloc-alias-pages");
    let d = 64;
    let mut cfg = config(DType::F32, d as u32, 1, 1);
    (cfg.k, cfg.sink, cfg.window) = (4, 1, 2);
    let ctx = Ctx::new(&cfg).unwrap();
    let len = 12;
    let k: Vec<Tensor> = (0..2).map(|_| Tensor::random(&mut rng, DType::F32, len, 1, d, 0, 1.0)).collect();
    let v: Vec<Tensor> = (0..2).map(|_| Tensor::random(&mut rng, DType::F32, len, 1, d, 0, 1.0)).collect();
    let mut cache = Cache { k, v, page_size: Some(4), capacity: len }.upload(&Host, DType::F32, &mut rng);
    let table = Host.download(cache.page_table.as_ref().unwrap());
    let q = Tensor::random(&mut rng, DType::F32, 2, 1, d, 0, 1.0);
    let qb = Host.upload(&q.bytes(DType::F32));
    let mut o_bytes = vec![0xFFu8; 2 * d * 4];
    o_bytes[..table.len()].copy_from_slice(&table);
    let ob = Host.upload(&o_bytes);
    cache.desc.page_table = ob.addr as *const i32;
    let lseb = Host.poisoned(8);
    let lens = Host.upload(&i32_bytes(&[len as i32, len as i32]));
    let state = Host.zeroed(ctx.state_size(2));
    let ws_bytes = ctx.decode_ws(2, len as u32);
    let ws = Host.poisoned(ws_bytes);
    let args = decode_args(&q, &qb, &cache, &lens, len, &state, &ob, &lseb);
    // SAFETY: every buffer spans what the args describe; the page table aliases o on purpose.
    let st = unsafe { hip_decode_step(ctx.0, &args, ws.addr as *mut c_void, ws_bytes, std::ptr::null_mut()) };
    let msg = last_error();
    assert_eq!(st, hip_status::HIP_ATTN_STATUS_INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("o (") && msg.contains("overlaps kv.page_table"), "{msg}");
    assert_eq!(Host.download(&ob), o_bytes, "nothing may be written");
}

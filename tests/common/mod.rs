//! Test harness: random inputs, a plain f64 dense attention, and runners that drive the public C API over a
//! memory abstraction (host memory for the CPU backend, device memory for the CUDA tests).
#![allow(dead_code)]

use hip_attn::tensor::DType;
use hip_attn::*;
use std::ffi::{c_void, CStr};
use std::path::PathBuf;

pub mod gpu_mem;
pub mod shard;
pub mod tools;

/// Where cargo put libhip_attn.so and libhip_attn.a for this test run: target/<profile>/deps, beside the test
/// executable. (Cargo copies them up to target/<profile> only when the library itself was asked for, which
/// `cargo test` on a clean clone does not do, so a copy there may be missing or stale.)
pub fn built_library_dir() -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    for dir in [&deps, deps.parent().unwrap()] {
        if dir.join("libhip_attn.so").is_file() && dir.join("libhip_attn.a").is_file() {
            return dir.to_path_buf();
        }
    }
    panic!("libhip_attn.so and libhip_attn.a not found in {} or its parent", deps.display());
}

/// A private directory under the test's temporary target dir holding the built library as libhip_attn.so.1
/// (its SONAME), for LD_LIBRARY_PATH when running a program linked against it.
pub fn soname_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let so1 = dir.join("libhip_attn.so.1");
    let _ = std::fs::remove_file(&so1);
    std::fs::copy(built_library_dir().join("libhip_attn.so"), &so1).unwrap();
    dir
}

// ---------- random numbers ----------
/// The one RNG of the repository's tests and tools (tools/testkit): `Rng::new(seed)`, and `Rng::fresh(tag)` for a
/// fresh seed per run that is printed so that a failure can be replayed with HIP_ATTN_TEST_SEED.
pub use testkit::Rng;

// ---------- configuration ----------
pub fn dtype_raw(dt: DType) -> u32 {
    match dt {
        DType::Bf16 => hip_dtype::HIP_ATTN_DTYPE_BF16 as u32,
        DType::F16 => hip_dtype::HIP_ATTN_DTYPE_F16 as u32,
        DType::F32 => hip_dtype::HIP_ATTN_DTYPE_F32 as u32,
    }
}

pub fn config(dt: DType, d: u32, hq: u32, hkv: u32) -> hip_config {
    let mut c = hip_config_default();
    c.dtype = dtype_raw(dt);
    c.head_dim = d;
    c.num_q_heads = hq;
    c.num_kv_heads = hkv;
    c
}

pub fn last_error() -> String {
    // SAFETY: hip_last_error_message returns a valid NUL-terminated thread-local string.
    unsafe { CStr::from_ptr(hip_last_error_message()) }.to_string_lossy().into_owned()
}

pub struct Ctx(pub *mut hip_ctx);
impl Ctx {
    /// The handle, no longer destroyed on drop.
    pub fn into_raw(self) -> *mut hip_ctx {
        let p = self.0;
        std::mem::forget(self);
        p
    }
    pub fn new(cfg: &hip_config) -> Result<Ctx, (hip_status, String)> {
        let mut p = std::ptr::null_mut();
        // SAFETY: cfg is a valid hip_config and p is writable.
        let st = unsafe { hip_ctx_create(cfg, &mut p) };
        if st == hip_status::HIP_ATTN_STATUS_SUCCESS {
            Ok(Ctx(p))
        } else {
            assert!(p.is_null(), "failed create must leave *out NULL");
            Err((st, last_error()))
        }
    }
    pub fn prefill_ws(&self, batch: u32, total_q: u32, max_q: u32, max_k: u32) -> usize {
        let mut n = 0usize;
        // SAFETY: live context, writable out.
        let st = unsafe { hip_prefill_workspace_size(self.0, batch, total_q, max_q, max_k, &mut n) };
        assert_eq!(st, hip_status::HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
        n
    }
    pub fn decode_ws(&self, batch: u32, max_k: u32) -> usize {
        let mut n = 0usize;
        // SAFETY: live context, writable out.
        let st = unsafe { hip_decode_workspace_size(self.0, batch, max_k, &mut n) };
        assert_eq!(st, hip_status::HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
        n
    }
    pub fn state_size(&self, batch: u32) -> usize {
        let mut n = 0usize;
        // SAFETY: live context, writable out.
        let st = unsafe { hip_mask_state_size(self.0, batch, &mut n) };
        assert_eq!(st, hip_status::HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
        n
    }
}
impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: created by hip_ctx_create, destroyed once.
        unsafe { hip_ctx_destroy(self.0) }
    }
}

// ---------- memory ----------
/// A buffer in backend memory. `keep` owns the allocation.
pub struct Buf {
    pub addr: usize,
    pub bytes: usize,
    keep: Box<dyn std::any::Any>,
}
impl Buf {
    /// A buffer at `addr` whose allocation `keep` owns (freed when the Buf drops).
    pub fn new(addr: usize, bytes: usize, keep: Box<dyn std::any::Any>) -> Buf {
        Buf { addr, bytes, keep }
    }
}

pub trait Mem {
    /// A buffer holding `bytes`.
    fn upload(&self, bytes: &[u8]) -> Buf;
    fn download(&self, b: &Buf) -> Vec<u8>;
    /// The stream argument to pass to run calls.
    fn stream(&self) -> *mut c_void;
    /// Waits for queued work.
    fn sync(&self);
    fn backend(&self) -> u32;
    /// A buffer filled with 0xFF bytes: NaN in every float dtype, so an unwritten output element is caught.
    fn poisoned(&self, bytes: usize) -> Buf {
        self.upload(&vec![0xFF; bytes])
    }
    fn zeroed(&self, bytes: usize) -> Buf {
        self.upload(&vec![0; bytes])
    }
}

pub struct Host;
impl Mem for Host {
    fn upload(&self, bytes: &[u8]) -> Buf {
        // u128 storage gives the 16-byte alignment the API requires.
        let mut v = vec![0u128; bytes.len().div_ceil(16).max(1)];
        // SAFETY: v has at least bytes.len() bytes; distinct allocations.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr() as *mut u8, bytes.len()) };
        let addr = v.as_mut_ptr() as usize;
        Buf { addr, bytes: bytes.len(), keep: Box::new(v) }
    }
    fn download(&self, b: &Buf) -> Vec<u8> {
        // SAFETY: addr spans bytes of the live allocation kept in b.
        unsafe { std::slice::from_raw_parts(b.addr as *const u8, b.bytes) }.to_vec()
    }
    fn stream(&self) -> *mut c_void {
        std::ptr::null_mut()
    }
    fn sync(&self) {}
    fn backend(&self) -> u32 {
        hip_backend::HIP_ATTN_BACKEND_CPU as u32
    }
}

pub fn encode(dt: DType, xs: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; xs.len() * dt.size()];
    for (i, &x) in xs.iter().enumerate() {
        // SAFETY: out holds xs.len() elements of dt.
        unsafe { dt.write(out.as_mut_ptr(), i, x) };
    }
    out
}
pub fn decode(dt: DType, bytes: &[u8]) -> Vec<f32> {
    // SAFETY: bytes hold len/size elements of dt (possibly unaligned for f32: read_unaligned via copy).
    let n = bytes.len() / dt.size();
    let mut aligned = vec![0u32; bytes.len().div_ceil(4)];
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), aligned.as_mut_ptr() as *mut u8, bytes.len()) };
    (0..n).map(|i| unsafe { dt.read(aligned.as_ptr() as *const u8, i) }).collect()
}
pub fn i32s(bytes: &[u8]) -> Vec<i32> {
    bytes.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect()
}
pub fn i32_bytes(xs: &[i32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

// ---------- problems ----------
/// A [rows, heads, d] tensor of random values already rounded to the dtype, stored with `pad` extra elements
/// per row (to exercise strides).
#[derive(Clone)]
pub struct Tensor {
    pub rows: usize,
    pub heads: usize,
    pub d: usize,
    pub pad: usize,
    pub data: Vec<f32>,
}
impl Tensor {
    pub fn random(rng: &mut Rng, dt: DType, rows: usize, heads: usize, d: usize, pad: usize, amp: f32) -> Tensor {
        let data = (0..rows * heads * d).map(|_| dt.round(amp * rng.sym())).collect();
        Tensor { rows, heads, d, pad, data }
    }
    pub fn at(&self, r: usize, h: usize) -> &[f32] {
        let o = (r * self.heads + h) * self.d;
        &self.data[o..o + self.d]
    }
    pub fn row_stride(&self) -> usize {
        self.heads * self.d + self.pad
    }
    /// Bytes laid out with the padded row stride (padding filled with NaN to catch reads of it).
    pub fn bytes(&self, dt: DType) -> Vec<u8> {
        let mut flat = vec![f32::NAN; self.rows * self.row_stride()];
        for r in 0..self.rows {
            for h in 0..self.heads {
                let o = r * self.row_stride() + h * self.d;
                flat[o..o + self.d].copy_from_slice(self.at(r, h));
            }
        }
        encode(dt, &flat)
    }
    pub fn view(&self, b: &Buf) -> hip_tensor {
        hip_tensor { data: b.addr as *const c_void, token_stride: self.row_stride() as i64, head_stride: self.d as i64 }
    }
    /// Extracts [rows, heads, d] from bytes with this tensor's strides.
    pub fn unpack(&self, dt: DType, bytes: &[u8]) -> Vec<f32> {
        let flat = decode(dt, bytes);
        let mut out = Vec::with_capacity(self.rows * self.heads * self.d);
        for r in 0..self.rows {
            for h in 0..self.heads {
                let o = r * self.row_stride() + h * self.d;
                out.extend_from_slice(&flat[o..o + self.d]);
            }
        }
        out
    }
}

/// A batch of sequences for prefill.
#[derive(Clone)]
pub struct Problem {
    pub dt: DType,
    pub d: usize,
    pub hq: usize,
    pub hkv: usize,
    pub tq: Vec<usize>,
    pub tk: Vec<usize>,
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
}
impl Problem {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rng: &mut Rng,
        dt: DType,
        d: usize,
        hq: usize,
        hkv: usize,
        tq: &[usize],
        tk: &[usize],
        pad: usize,
    ) -> Self {
        let (nq, nk) = (tq.iter().sum(), tk.iter().sum());
        Problem {
            dt,
            d,
            hq,
            hkv,
            tq: tq.to_vec(),
            tk: tk.to_vec(),
            q: Tensor::random(rng, dt, nq, hq, d, pad, 1.0),
            k: Tensor::random(rng, dt, nk, hkv, d, pad, 1.0),
            v: Tensor::random(rng, dt, nk, hkv, d, pad, 1.0),
        }
    }
    pub fn cu(lens: &[usize]) -> Vec<i32> {
        std::iter::once(0)
            .chain(lens.iter().scan(0, |s, &l| {
                *s += l;
                Some(*s as i32)
            }))
            .collect()
    }
    pub fn q0(&self, b: usize) -> usize {
        self.tq[..b].iter().sum()
    }
    pub fn k0(&self, b: usize) -> usize {
        self.tk[..b].iter().sum()
    }
}

pub struct PrefillOut {
    pub o: Vec<f32>,
    pub lse: Vec<f32>,
    pub workspace: Vec<u8>,
    pub state: Vec<u8>,
}

/// Runs hip_prefill on `mem` and returns everything it wrote; outputs are poisoned first.
pub fn run_prefill(
    mem: &dyn Mem,
    ctx: &Ctx,
    p: &Problem,
    want_state: bool,
) -> Result<PrefillOut, (hip_status, String)> {
    run_prefill_claiming(mem, ctx, p, want_state, *p.tk.iter().max().unwrap())
}

/// `run_prefill` with `max_seqlen_k` as given, which may understate the sequences' real lengths: a fault only
/// the device can see.
pub fn run_prefill_claiming(
    mem: &dyn Mem,
    ctx: &Ctx,
    p: &Problem,
    want_state: bool,
    maxk: usize,
) -> Result<PrefillOut, (hip_status, String)> {
    run_prefill_faulty(mem, ctx, p, want_state, maxk, &Problem::cu(&p.tq))
}

/// `run_prefill_claiming` with `cu_seqlens_q` as given too (the tensors and totals stay the problem's): faults
/// only the device can see.
pub fn run_prefill_faulty(
    mem: &dyn Mem,
    ctx: &Ctx,
    p: &Problem,
    want_state: bool,
    maxk: usize,
    cu_q: &[i32],
) -> Result<PrefillOut, (hip_status, String)> {
    let (nq, nk) = (p.q.rows, p.k.rows);
    let maxq = *p.tq.iter().max().unwrap();
    let b = p.tq.len();
    let (qb, kb, vb) = (mem.upload(&p.q.bytes(p.dt)), mem.upload(&p.k.bytes(p.dt)), mem.upload(&p.v.bytes(p.dt)));
    let ob = mem.poisoned(p.q.rows * p.q.row_stride() * p.dt.size());
    let lseb = mem.poisoned(nq * p.hq * 4);
    let cuq = mem.upload(&i32_bytes(cu_q));
    let cuk = mem.upload(&i32_bytes(&Problem::cu(&p.tk)));
    let ws_bytes = ctx.prefill_ws(b as u32, nq as u32, maxq as u32, maxk as u32);
    let ws = mem.poisoned(ws_bytes.max(16));
    let state = mem.poisoned(ctx.state_size(b as u32).max(16));
    let args = hip_prefill_args {
        struct_size: std::mem::size_of::<hip_prefill_args>() as u32,
        batch_size: b as u32,
        total_q: nq as u32,
        total_k: nk as u32,
        max_seqlen_q: maxq as u32,
        max_seqlen_k: maxk as u32,
        q: p.q.view(&qb),
        k: p.k.view(&kb),
        v: p.v.view(&vb),
        o: hip_tensor_mut {
            data: ob.addr as *mut c_void,
            token_stride: p.q.row_stride() as i64,
            head_stride: p.d as i64,
        },
        cu_seqlens_q: cuq.addr as *const i32,
        cu_seqlens_k: cuk.addr as *const i32,
        lse: lseb.addr as *mut f32,
        mask_state_out: if want_state { state.addr as *mut c_void } else { std::ptr::null_mut() },
        reserved: [0; 4],
    };
    // SAFETY: every buffer spans what the args describe and lives until after sync.
    let st = unsafe { hip_prefill(ctx.0, &args, ws.addr as *mut c_void, ws_bytes, mem.stream()) };
    if st != hip_status::HIP_ATTN_STATUS_SUCCESS {
        return Err((st, last_error()));
    }
    mem.sync();
    Ok(PrefillOut {
        o: p.q.unpack(p.dt, &mem.download(&ob)),
        lse: f32s(&mem.download(&lseb)),
        workspace: mem.download(&ws),
        state: mem.download(&state),
    })
}

// ---------- the f64 dense oracle (tools/testkit) ----------
/// f64 attention of one query row over an explicit key list (keys of kv head `g`).
pub fn dense_keys(q: &[f32], k: &Tensor, v: &Tensor, g: usize, keys: &[usize], scale: f64) -> Vec<f64> {
    testkit::attend(q, scale, keys.iter().map(|&j| (k.at(j, g), v.at(j, g)))).o
}

/// Dense softmax attention in f64 over the keys `allowed(b, h, p, j)` admits (p = query position, j = key).
/// Returns outputs [total_q, hq, d] and LSEs [total_q, hq] (a row that admits no key keeps zeros and -inf).
pub fn dense(p: &Problem, scale: f64, allowed: impl Fn(usize, usize, usize, usize) -> bool) -> (Vec<f64>, Vec<f64>) {
    let group = p.hq / p.hkv;
    let mut out = vec![0f64; p.q.rows * p.hq * p.d];
    let mut lse = vec![f64::NEG_INFINITY; p.q.rows * p.hq];
    for b in 0..p.tq.len() {
        let (q0, k0, tq, tk) = (p.q0(b), p.k0(b), p.tq[b], p.tk[b]);
        for h in 0..p.hq {
            let g = h / group;
            for i in 0..tq {
                let pos = tk - tq + i;
                let keys = (0..tk).filter(|&j| allowed(b, h, pos, j)).map(|j| (p.k.at(k0 + j, g), p.v.at(k0 + j, g)));
                let a = testkit::attend(p.q.at(q0 + i, h), scale, keys);
                if a.z == 0.0 {
                    continue;
                }
                out[((q0 + i) * p.hq + h) * p.d..][..p.d].copy_from_slice(&a.o);
                lse[(q0 + i) * p.hq + h] = a.lse();
            }
        }
    }
    (out, lse)
}

/// ||got - want|| / ||want||; NaN anywhere fails.
pub fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        assert!(g.is_finite(), "non-finite output element (unwritten or overflow)");
        num += (g as f64 - w).powi(2);
        den += w * w;
    }
    (num / den.max(1e-300)).sqrt()
}

pub fn tolerance(dt: DType) -> f64 {
    match dt {
        DType::Bf16 => 1e-2,
        DType::F16 => 2e-3,
        DType::F32 => 1e-5,
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).abs()).fold(0.0, f64::max)
}

// ---------- decode ----------
/// KV cache contents per sequence (token-major [len, hkv, d]) and how to lay them out.
pub struct Cache {
    pub k: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// None = contiguous; Some(page_size) = paged with shuffled pages.
    pub page_size: Option<usize>,
    pub capacity: usize,
}

pub struct CacheBufs {
    pub k: Buf,
    pub v: Buf,
    pub page_table: Option<Buf>,
    pub desc: hip_kv_cache,
}

impl Cache {
    /// Lays the cache out in backend memory; pages are assigned in a shuffled order.
    pub fn upload(&self, mem: &dyn Mem, dt: DType, rng: &mut Rng) -> CacheBufs {
        let (hkv, d) = (self.k[0].heads, self.k[0].d);
        let row = hkv * d;
        let batch = self.k.len();
        match self.page_size {
            None => {
                let mut kf = vec![0f32; batch * self.capacity * row];
                let mut vf = kf.clone();
                for b in 0..batch {
                    let n = self.k[b].rows * row;
                    kf[b * self.capacity * row..][..n].copy_from_slice(&self.k[b].data);
                    vf[b * self.capacity * row..][..n].copy_from_slice(&self.v[b].data);
                }
                let (k, v) = (mem.upload(&encode(dt, &kf)), mem.upload(&encode(dt, &vf)));
                let desc = hip_kv_cache {
                    layout: hip_kv_layout::HIP_ATTN_KV_CONTIGUOUS as u32,
                    page_size: 0,
                    k: k.addr as *const c_void,
                    v: v.addr as *const c_void,
                    seq_stride: (self.capacity * row) as i64,
                    token_stride: row as i64,
                    head_stride: d as i64,
                    page_table: std::ptr::null(),
                    page_table_stride: 0,
                    num_pages: 0,
                };
                CacheBufs { k, v, page_table: None, desc }
            }
            Some(ps) => {
                let per_seq = self.capacity.div_ceil(ps);
                let num_pages = batch * per_seq + 3; // a few unused pages
                let mut ids: Vec<usize> = (0..num_pages).collect();
                for i in (1..ids.len()).rev() {
                    ids.swap(i, rng.below(i + 1));
                }
                let mut kf = vec![f32::NAN; num_pages * ps * row];
                let mut vf = kf.clone();
                let mut table = vec![-1i32; batch * per_seq];
                for b in 0..batch {
                    for pg in 0..per_seq {
                        let id = ids[b * per_seq + pg];
                        table[b * per_seq + pg] = id as i32;
                        for t in pg * ps..((pg + 1) * ps).min(self.k[b].rows) {
                            let dst = (id * ps + t % ps) * row;
                            kf[dst..dst + row].copy_from_slice(&self.k[b].data[t * row..(t + 1) * row]);
                            vf[dst..dst + row].copy_from_slice(&self.v[b].data[t * row..(t + 1) * row]);
                        }
                    }
                }
                let (k, v) = (mem.upload(&encode(dt, &kf)), mem.upload(&encode(dt, &vf)));
                let pt = mem.upload(&i32_bytes(&table));
                let desc = hip_kv_cache {
                    layout: hip_kv_layout::HIP_ATTN_KV_PAGED as u32,
                    page_size: ps as u32,
                    k: k.addr as *const c_void,
                    v: v.addr as *const c_void,
                    seq_stride: (ps * row) as i64,
                    token_stride: row as i64,
                    head_stride: d as i64,
                    page_table: pt.addr as *const i32,
                    page_table_stride: per_seq as u32,
                    num_pages: num_pages as u32,
                };
                CacheBufs { k, v, page_table: Some(pt), desc }
            }
        }
    }
}

#[derive(Debug)]
pub struct DecodeOut {
    pub o: Vec<f32>,
    pub lse: Vec<f32>,
}

#[allow(clippy::too_many_arguments)]
/// hip_decode_args for queries `q` (uploaded in `qb`, one row per sequence), lengths `lens` (int32, one per
/// sequence: the batch size), outputs `o` shaped like q and `lse`.
pub fn decode_args(
    q: &Tensor,
    qb: &Buf,
    cache: &CacheBufs,
    lens: &Buf,
    capacity: usize,
    state: &Buf,
    o: &Buf,
    lse: &Buf,
) -> hip_decode_args {
    hip_decode_args {
        struct_size: std::mem::size_of::<hip_decode_args>() as u32,
        batch_size: (lens.bytes / 4) as u32,
        max_seqlen_k: capacity as u32,
        reserved_u32: 0,
        q: q.view(qb),
        kv: cache.desc,
        seqlens_k: lens.addr as *const i32,
        mask_state: state.addr as *mut c_void,
        o: hip_tensor_mut { data: o.addr as *mut c_void, token_stride: q.row_stride() as i64, head_stride: q.d as i64 },
        lse: lse.addr as *mut f32,
        key_offset: 0,
        shard_flags: 0,
        reserved: [0; 3],
    }
}

#[allow(clippy::too_many_arguments)]
/// One hip_decode_step over `cache` with queries `q` ([batch, hq, d]) and the lengths `lens`; the mask state
/// buffer persists across calls.
pub fn run_decode(
    mem: &dyn Mem,
    ctx: &Ctx,
    dt: DType,
    q: &Tensor,
    cache: &CacheBufs,
    lens: &[usize],
    capacity: usize,
    state: &Buf,
) -> Result<DecodeOut, (hip_status, String)> {
    let batch = lens.len();
    let qb = mem.upload(&q.bytes(dt));
    let ob = mem.poisoned(q.rows * q.row_stride() * dt.size());
    let lseb = mem.poisoned(batch * q.heads * 4);
    let lensb = mem.upload(&i32_bytes(&lens.iter().map(|&x| x as i32).collect::<Vec<_>>()));
    let ws_bytes = ctx.decode_ws(batch as u32, capacity as u32);
    let ws = mem.poisoned(ws_bytes.max(16));
    let args = decode_args(q, &qb, cache, &lensb, capacity, state, &ob, &lseb);
    // SAFETY: all buffers span what the args describe and live until after sync.
    let st = unsafe { hip_decode_step(ctx.0, &args, ws.addr as *mut c_void, ws_bytes, mem.stream()) };
    if st != hip_status::HIP_ATTN_STATUS_SUCCESS {
        return Err((st, last_error()));
    }
    mem.sync();
    Ok(DecodeOut { o: q.unpack(dt, &mem.download(&ob)), lse: f32s(&mem.download(&lseb)) })
}

/// A mask-state record read back: (magic, step, e, blocks).
pub fn record(state: &[u8], rec_ints: usize, index: usize) -> (i32, i32, i32, Vec<i32>) {
    let r = &i32s(state)[index * rec_ints..(index + 1) * rec_ints];
    let h = hip_attn::plan::STATE_HEADER;
    (r[0], r[1], r[2], r[h..h + r[3].max(0) as usize].to_vec())
}

/// Prefill masks read back from a workspace: blocks selected for (slot, mask head).
pub fn workspace_mask(
    cfg: &hip_attn::config::Config,
    ws: &[u8],
    total_q: usize,
    batch: usize,
    slot: usize,
    mh: usize,
) -> Vec<i32> {
    let layout = hip_attn::plan::PrefillWorkspace::new(cfg, batch, total_q).unwrap();
    let idx = i32s(&ws[layout.idx_offset..]);
    let cnt = i32s(&ws[layout.cnt_offset..]);
    let rec = slot * cfg.mask_heads() + mh;
    idx[rec * cfg.kb()..][..cnt[rec] as usize].to_vec()
}

// ---------- near-tie aware mask comparison (tools/testkit) ----------
/// The tree search replayed with f64 scores, returning the selection and the smallest gap between the last kept
/// and the first dropped candidate over all iterations. When two implementations select differently, that gap
/// must be below the arithmetic precision for the difference to be a tie and not a bug.
pub fn search_margin(nb: usize, kb: usize, score: impl FnMut(usize) -> f64) -> (Vec<i32>, f64) {
    testkit::tree_replay(nb, kb, score)
}

/// f64 branch score of docs/ALGORITHM.md for explicit query rows (already sampled) against keys of one kv head each.
pub fn score_f64(queries: &[(&[f32], &Tensor, usize, usize)], a: usize, b: usize, sk: usize) -> f64 {
    // queries: (q row, key tensor, kv head, row offset of the sequence in the key tensor)
    testkit::branch_score(queries.len(), (a, b), sk, |i, t| {
        let (q, k, g, k0) = queries[i];
        testkit::dot(q, k.at(k0 + t, g))
    })
}

//! The standalone Hopper attention prototype of issue 15 (cuda/hopper/fa3.cuh, notes in docs/HOPPER-NOTES.md):
//! causal dense prefill, bf16, head_dim 128, one sequence, in the FlashAttention-3 structure (bulk tensor copies,
//! wgmma, warp specialization).
//!
//! - `hopper_kernel_compiles` (NVRTC only, no GPU): every variant compiles for sm_90a with no spill and without
//!   the compiler ignoring setmaxnreg; `HIP_ATTN_HOPPER_CUBIN_DIR=<dir>` keeps the cubins for disassembly.
//! - `hopper_matches_f64_reference` (GPU, sm_90): fresh random inputs at T = 1000 and 4096 (GQA, padded rows),
//!   outputs poisoned first, every O and LSE element written, sampled rows against f64 attention (O rel L2 < 1e-2,
//!   LSE rel err < 1e-5), a second run bitwise identical (a moving result is a race).
//! - `hopper_timing` (GPU, sm_90; ignored by default, run it with `--ignored`): T = 8k and 32k, 32 heads, median
//!   of 20 timed launches after warm-up, TFLOP/s with causal FLOPs 2 * T^2 * D * heads, beside the library's own
//!   exact paths through the C API on the same inputs; prints one table.
//!
//! Without a GPU (or with one that is not sm_90) the GPU tests print why they skip.
mod common;
use common::*;
use cudarc::driver::{result, sys};
use hip_attn::contract;
use hip_attn::tensor::DType;
use hip_attn::*;
use std::ffi::c_void;

const SRC: &str = include_str!("../cuda/hopper/fa3.cuh");
/// The wgmma primitives fa3.cuh includes.
const WGMMA: &str = include_str!("../cuda/hopper/wgmma.cuh");
const KERNEL: &str = "hopper_fa3_causal";
const D: usize = contract::HOPPER_HEAD_DIM;
const BM: usize = contract::HOPPER_ROWS;
const THREADS: u32 = contract::HOPPER_THREADS;
/// The variants compiled, checked and timed: (K/V pipeline depth HOPPER_STAGES, HOPPER_OVERLAP: 0 none, 1 the next
/// S with this P V, 2 that and consumer pingpong). The first is the plainest; the timing table compares every other
/// output with its.
const VARIANTS: [(u32, u32); 6] = [(2, 0), (3, 0), (2, 1), (3, 1), (2, 2), (3, 2)];

/// Dynamic shared memory of a variant (HOPPER_SMEM_BYTES in the kernel).
fn smem_bytes(stages: u32) -> u32 {
    contract::hopper_smem(stages as i64, BM as i64, D as i64) as u32
}

/// The cubin of a variant and NVRTC's log; a compile error or a warning that defeats the design is an error.
fn compile((stages, overlap): (u32, u32)) -> Result<(Vec<u8>, String), String> {
    let opts = vec![
        "-std=c++17".to_string(),
        format!("-DHOPPER_STAGES={stages}"),
        format!("-DHOPPER_OVERLAP={overlap}"),
        "-Xptxas=-v".to_string(),
    ];
    let header = contract::header_text();
    let sources = [("fa3.cu", SRC), ("hip_contract.h", header.as_str()), ("hopper/wgmma.cuh", WGMMA)];
    let out = hip_attn::cuda::compile::compile_cubin_with_log("fa3.cu", &sources, &opts, "sm_90a")
        .map_err(|e| format!("HOPPER_STAGES={stages} HOPPER_OVERLAP={overlap}: {e}"))?;
    // C7508: setmaxnreg ignored. "serializ" (C7513, C7514): wgmma made synchronous; C7519: a warpgroup.arrive the
    // compiler had to add because registers of a running wgmma were touched. A stack frame or spills: registers moved to
    // local memory.
    let frame_or_spill = out.log.lines().any(|l| {
        (l.contains("stack frame") && !l.contains(" 0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads"))
            || l.contains("bytes lmem") && !l.contains(" 0 bytes lmem")
    });
    if out.log.contains("C7508") || out.log.contains("C7519") || out.log.contains("serializ") || frame_or_spill {
        return Err(format!(
            "HOPPER_STAGES={stages} HOPPER_OVERLAP={overlap}: NVRTC log shows a defeated design point:\n{}",
            out.log
        ));
    }
    Ok((out.cubin, out.log))
}

#[test]
fn hopper_kernel_compiles() {
    if let Err(e) = hip_attn::cuda::ensure_nvrtc() {
        let install =
            format!("{e}; pip install nvidia-cuda-nvrtc==13.0.88 and put its nvidia/cu13/lib on LD_LIBRARY_PATH");
        return tools::missing("hopper_kernel_compiles", "NVRTC", &install);
    }
    for (stages, overlap) in VARIANTS {
        let (cubin, log) = compile((stages, overlap)).unwrap_or_else(|e| panic!("{e}"));
        assert!(String::from_utf8_lossy(&cubin).contains(KERNEL), "no {KERNEL} in the cubin");
        let usage: Vec<&str> = log.lines().filter(|l| l.contains("registers") || l.contains("stack frame")).collect();
        eprintln!(
            "HOPPER_STAGES={stages} HOPPER_OVERLAP={overlap}: {} bytes of cubin; {}",
            cubin.len(),
            usage.join("; ")
        );
        if let Some(dir) = std::env::var_os("HIP_ATTN_HOPPER_CUBIN_DIR") {
            let path = std::path::Path::new(&dir).join(format!("fa3-s{stages}-o{overlap}.cubin"));
            std::fs::write(&path, &cubin).unwrap();
            eprintln!("wrote {}", path.display());
        }
    }
}

// ---------- device side ----------

/// The GPU when it is an sm_90 part, or why the test skips.
fn hopper_gpu(test: &str) -> Option<gpu_mem::Gpu> {
    if let Err(why) = gpu_mem::find() {
        tools::no_gpu(test, why);
        return None;
    }
    let gpu = gpu_mem::open(Box::new(())).unwrap();
    // SAFETY: the driver is initialised (find) and device 0 exists.
    let major = unsafe {
        result::device::get_attribute(
            result::device::get(0).unwrap(),
            sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
        )
    }
    .unwrap();
    if major != 9 {
        tools::no_gpu(test, format!("the kernel is sm_90a only and device 0 is compute capability {major}.x"));
        return None;
    }
    Some(gpu)
}

/// A loaded variant of the kernel.
struct Kernel {
    stages: u32,
    overlap: u32,
    module: sys::CUmodule,
    func: sys::CUfunction,
}
impl Kernel {
    fn load((stages, overlap): (u32, u32)) -> Result<Kernel, String> {
        let (mut cubin, _) = compile((stages, overlap))?;
        cubin.push(0);
        // SAFETY: the cubin is a complete ELF image from NVRTC, alive for the call.
        let module = unsafe { result::module::load_data(cubin.as_ptr() as *const c_void) }
            .map_err(|e| format!("cuModuleLoadData: {e:?}"))?;
        // SAFETY: the module was just loaded; the name is a kernel of it.
        let func = unsafe { result::module::get_function(module, std::ffi::CString::new(KERNEL).unwrap()) }
            .map_err(|e| format!("cuModuleGetFunction: {e:?}"))?;
        // SAFETY: a valid function handle; the size is within the device's opt-in limit (checked by the driver).
        unsafe {
            result::function::set_function_attribute(
                func,
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem_bytes(stages) as i32,
            )
        }
        .map_err(|e| format!("cuFuncSetAttribute(max dynamic shared = {}): {e:?}", smem_bytes(stages)))?;
        Ok(Kernel { stages, overlap, module, func })
    }
}
impl Kernel {
    fn name(&self) -> String {
        format!(
            "hopper fa3 stages {}{}",
            self.stages,
            match self.overlap {
                1 => " overlap",
                2 => " overlap pingpong",
                _ => "",
            }
        )
    }
}
impl Drop for Kernel {
    fn drop(&mut self) {
        // SAFETY: loaded in Kernel::load, unloaded once; callers synchronise before dropping.
        let _ = unsafe { result::module::unload(self.module) };
    }
}

/// A bf16 [tokens][heads][128] tensor in device memory with element strides.
struct Dev {
    buf: Buf,
    tokens: usize,
    heads: usize,
    tok_stride: usize,
    head_stride: usize,
}

/// A 3-D (d, head, token) tensor map with 64 x 1 x 128 boxes, 128-byte swizzled: the layout the kernel's wgmma
/// descriptors assume. The bulk tensor copy engine needs a 16-byte aligned base and strides that are multiples of
/// 16 bytes (8 elements); the error names the field otherwise.
fn tensor_map(t: &Dev) -> Result<sys::CUtensorMap, String> {
    if !t.buf.addr.is_multiple_of(16) {
        return Err(format!("tensor base {:#x} is not 16-byte aligned", t.buf.addr));
    }
    for (what, s) in [("token_stride", t.tok_stride), ("head_stride", t.head_stride)] {
        if (s * 2) % 16 != 0 {
            return Err(format!("{what} = {s} elements is not a multiple of 8 (16 bytes)"));
        }
    }
    let dims: [u64; 3] = [D as u64, t.heads as u64, t.tokens as u64];
    let strides: [u64; 2] = [(t.head_stride * 2) as u64, (t.tok_stride * 2) as u64];
    let boxes: [u32; 3] = [64, 1, BM as u32];
    let elem: [u32; 3] = [1, 1, 1];
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    // SAFETY: every array has the rank's length (strides: rank - 1), the address is device memory spanning the
    // described tensor, and `map` is writable.
    let r = unsafe {
        sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
            3,
            t.buf.addr as *mut c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            elem.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    r.result().map_err(|e| format!("cuTensorMapEncodeTiled: {e:?}"))?;
    // SAFETY: initialised by the successful call.
    Ok(unsafe { map.assume_init() })
}

/// Inputs and outputs of one problem on the device (one sequence, T tokens).
struct Io {
    t: usize,
    hq: usize,
    hkv: usize,
    q: Dev,
    k: Dev,
    v: Dev,
    o: Dev,
    lse: Buf,
}

fn dev_tensor(mem: &dyn Mem, bytes: &[u8], tokens: usize, heads: usize, tok_stride: usize) -> Dev {
    Dev { buf: mem.upload(bytes), tokens, heads, tok_stride, head_stride: D }
}

/// Launches the kernel once on `stream` (asynchronous).
fn launch(k: &Kernel, io: &Io, scale: f32, stream: *mut c_void) -> Result<(), String> {
    let (mut mq, mut mk, mut mv) = (tensor_map(&io.q)?, tensor_map(&io.k)?, tensor_map(&io.v)?);
    if !io.o.tok_stride.is_multiple_of(2) || !io.o.head_stride.is_multiple_of(2) || !io.o.buf.addr.is_multiple_of(4) {
        return Err("O must be 4-byte aligned with even strides (bf16 pairs are stored as one word)".into());
    }
    let mut o = io.o.buf.addr as u64;
    let (mut o_tok, mut o_head) = (io.o.tok_stride as i64, io.o.head_stride as i64);
    let mut lse = io.lse.addr as u64;
    let (mut t, mut heads, mut group) = (io.t as i32, io.hq as i32, (io.hq / io.hkv) as i32);
    let mut scale_log2 = scale * std::f32::consts::LOG2_E;
    let mut params: Vec<*mut c_void> = vec![
        &mut mq as *mut _ as *mut c_void,
        &mut mk as *mut _ as *mut c_void,
        &mut mv as *mut _ as *mut c_void,
        &mut o as *mut _ as *mut c_void,
        &mut o_tok as *mut _ as *mut c_void,
        &mut o_head as *mut _ as *mut c_void,
        &mut lse as *mut _ as *mut c_void,
        &mut t as *mut _ as *mut c_void,
        &mut heads as *mut _ as *mut c_void,
        &mut group as *mut _ as *mut c_void,
        &mut scale_log2 as *mut _ as *mut c_void,
    ];
    let grid = (io.t.div_ceil(BM) as u32, io.hq as u32, 1);
    // SAFETY: the parameter list matches hopper_fa3_causal's signature in order and type, each pointer lives until
    // the call returns (the driver copies the values), and the buffers span the tensors the maps and strides
    // describe.
    unsafe {
        result::launch_kernel(k.func, grid, (THREADS, 1, 1), smem_bytes(k.stages), stream as sys::CUstream, &mut params)
    }
    .map_err(|e| format!("cuLaunchKernel: {e:?}"))
}

/// Runs and waits; a trap (a pipeline wait that timed out) or a fault comes back as the error.
fn run_sync(k: &Kernel, io: &Io, scale: f32, mem: &dyn Mem) -> Result<(), String> {
    launch(k, io, scale, mem.stream())?;
    // SAFETY: the stream belongs to `mem` and lives.
    unsafe { result::stream::synchronize(mem.stream() as sys::CUstream) }
        .map_err(|e| format!("kernel failed ({}): {e:?}", k.name()))
}

/// f64 causal attention of query row `i` of head `h` (keys 0..=i): (O, natural-log LSE).
fn reference_row(p: &Problem, i: usize, h: usize, scale: f64) -> (Vec<f64>, f64) {
    let g = h / (p.hq / p.hkv);
    let q = p.q.at(i, h);
    let logits: Vec<f64> =
        (0..=i).map(|j| scale * q.iter().zip(p.k.at(j, g)).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>()).collect();
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logits.iter().map(|s| (s - m).exp()).sum();
    let mut o = vec![0f64; D];
    for (j, s) in logits.iter().enumerate() {
        let w = (s - m).exp() / sum;
        for (x, &vv) in o.iter_mut().zip(p.v.at(j, g)) {
            *x += w * vv as f64;
        }
    }
    (o, m + sum.ln())
}

#[test]
fn hopper_matches_f64_reference() {
    let Some(gpu) = hopper_gpu("hopper_matches_f64_reference") else { return };
    let mem: &dyn Mem = &gpu;
    let mut rng = Rng::fresh("hopper_matches_f64_reference");
    let mut failures = Vec::new();
    'variants: for variant in VARIANTS {
        let kernel = match Kernel::load(variant) {
            Ok(k) => k,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        // T = 1000 ends in a partial tile; 4 query heads over 2 kv heads checks the GQA head mapping; 8 padding
        // elements per row check the token stride.
        for (t, hq, hkv) in [(1000usize, 4usize, 2usize), (4096, 4, 2)] {
            let p = Problem::new(&mut rng, DType::Bf16, D, hq, hkv, &[t], &[t], 8);
            let scale = 1.0 / (D as f64).sqrt();
            let q = dev_tensor(mem, &p.q.bytes(DType::Bf16), t, hq, p.q.row_stride());
            let k = dev_tensor(mem, &p.k.bytes(DType::Bf16), t, hkv, p.k.row_stride());
            let v = dev_tensor(mem, &p.v.bytes(DType::Bf16), t, hkv, p.v.row_stride());
            let o = Dev {
                buf: mem.poisoned(t * p.q.row_stride() * 2),
                tokens: t,
                heads: hq,
                tok_stride: p.q.row_stride(),
                head_stride: D,
            };
            let io = Io { t, hq, hkv, q, k, v, o, lse: mem.poisoned(t * hq * 4) };
            let what = format!("{} T={t} Hq={hq} Hkv={hkv}", kernel.name());
            if let Err(e) = run_sync(&kernel, &io, scale as f32, mem) {
                failures.push(format!("{what}: {e}"));
                // A trapped or faulting kernel leaves the context unusable: nothing after it can run.
                break 'variants;
            }
            let o_bytes = mem.download(&io.o.buf);
            let lse = f32s(&mem.download(&io.lse));
            let got = p.q.unpack(DType::Bf16, &o_bytes);
            let unwritten_o = got.iter().filter(|x| !x.is_finite()).count();
            let unwritten_lse = lse.iter().filter(|x| !x.is_finite()).count();
            // Rows: the first and last 64, both sides of every tile edge up to 1024, 64 at random.
            let mut rows: Vec<usize> = (0..64).chain(t - 64..t).collect();
            for e in (BM..t.min(1024)).step_by(BM) {
                rows.extend([e - 1, e, e + 1]);
            }
            rows.extend((0..64).map(|_| rng.below(t)));
            rows.sort_unstable();
            rows.dedup();
            let (mut num, mut den, mut lse_err) = (0f64, 0f64, 0f64);
            for h in 0..hq {
                for &i in &rows {
                    let (want, want_lse) = reference_row(&p, i, h, scale);
                    let g = &got[(i * hq + h) * D..][..D];
                    for (&a, &b) in g.iter().zip(&want) {
                        num += (a as f64 - b).powi(2);
                        den += b * b;
                    }
                    let l = lse[i * hq + h] as f64;
                    lse_err = lse_err.max((l - want_lse).abs() / want_lse.abs().max(1.0));
                }
            }
            let rel = (num / den).sqrt();
            // The same inputs again: any difference is a race.
            if let Err(e) = run_sync(&kernel, &io, scale as f32, mem) {
                failures.push(format!("{what}, second run: {e}"));
                break 'variants;
            }
            let again = mem.download(&io.o.buf) == o_bytes && f32s(&mem.download(&io.lse)) == lse;
            eprintln!(
                "{what}: O rel L2 {rel:.2e}, LSE max rel err {lse_err:.2e} ({} rows x {hq} heads), unwritten O {unwritten_o} \
                 LSE {unwritten_lse}, rerun identical {again}",
                rows.len()
            );
            if !(rel < 1e-2 && lse_err < 1e-5 && unwritten_o == 0 && unwritten_lse == 0 && again) {
                failures.push(format!("{what}: O rel L2 {rel:.2e} LSE {lse_err:.2e} unwritten {unwritten_o}/{unwritten_lse} rerun identical {again}"));
            }
        }
    }
    assert!(failures.is_empty(), "hopper kernel failures:\n{}", failures.join("\n"));
}

// ---------- timing ----------

/// `n` random bf16 values in [-1, 1) as bytes (never zeros: they hide unwritten outputs and run faster).
fn random_bf16(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..n {
        out.extend_from_slice(&half::bf16::from_f32(rng.sym()).to_bits().to_le_bytes());
    }
    out
}

/// ||a - b|| / ||b|| over two bf16 buffers; None if `a` holds a non-finite value.
fn rel_l2_bf16(a: &[u8], b: &[u8]) -> Option<f64> {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.chunks_exact(2).zip(b.chunks_exact(2)) {
        let x = half::bf16::from_bits(u16::from_le_bytes([x[0], x[1]])).to_f64();
        let y = half::bf16::from_bits(u16::from_le_bytes([y[0], y[1]])).to_f64();
        if !x.is_finite() {
            return None;
        }
        num += (x - y).powi(2);
        den += y * y;
    }
    Some((num / den).sqrt())
}

/// Median milliseconds of `reps` runs of `f` on `stream`, each between two events, after `warm` untimed runs.
fn time_ms(
    stream: *mut c_void,
    warm: usize,
    reps: usize,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<f64, String> {
    let s = stream as sys::CUstream;
    for _ in 0..warm {
        f()?;
    }
    let ev = |_| result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT).map_err(|e| format!("{e:?}"));
    let starts: Vec<sys::CUevent> = (0..reps).map(ev).collect::<Result<_, _>>()?;
    let ends: Vec<sys::CUevent> = (0..reps).map(ev).collect::<Result<_, _>>()?;
    for i in 0..reps {
        // SAFETY: live events and stream.
        unsafe { result::event::record(starts[i], s) }.map_err(|e| format!("{e:?}"))?;
        f()?;
        // SAFETY: as above.
        unsafe { result::event::record(ends[i], s) }.map_err(|e| format!("{e:?}"))?;
    }
    // SAFETY: the stream lives.
    unsafe { result::stream::synchronize(s) }.map_err(|e| format!("run failed: {e:?}"))?;
    let mut ms = Vec::with_capacity(reps);
    for i in 0..reps {
        // SAFETY: both events were recorded and have completed (the stream is synchronised).
        ms.push(unsafe { result::event::elapsed(starts[i], ends[i]) }.map_err(|e| format!("{e:?}"))? as f64);
        // SAFETY: created above, destroyed once, no longer in use.
        unsafe {
            let _ = result::event::destroy(starts[i]);
            let _ = result::event::destroy(ends[i]);
        }
    }
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(ms[reps / 2])
}

/// The library's exact attention through hip_prefill on the same device tensors, into `o` and `lse`.
struct Library {
    name: &'static str,
    ctx: Ctx,
    ws: Buf,
    ws_bytes: usize,
    cu: Buf,
}
impl Library {
    fn new(
        mem: &dyn Mem,
        name: &'static str,
        t: usize,
        heads: usize,
        tune: impl Fn(&mut hip_config),
    ) -> Result<Library, String> {
        let mut cfg = config(DType::Bf16, D as u32, heads as u32, heads as u32);
        cfg.backend = mem.backend();
        tune(&mut cfg);
        let ctx = Ctx::new(&cfg).map_err(|(st, msg)| format!("{name}: hip_ctx_create: {st:?}: {msg}"))?;
        let ws_bytes = ctx.prefill_ws(1, t as u32, t as u32, t as u32);
        let ws = mem.poisoned(ws_bytes.max(16));
        let cu = mem.upload(&i32_bytes(&[0, t as i32]));
        Ok(Library { name, ctx, ws, ws_bytes, cu })
    }
    fn run(&self, io: &Io, o: &Dev, lse: &Buf, stream: *mut c_void) -> Result<(), String> {
        let view = |d: &Dev| hip_tensor {
            data: d.buf.addr as *const c_void,
            token_stride: d.tok_stride as i64,
            head_stride: d.head_stride as i64,
        };
        let args = hip_prefill_args {
            struct_size: std::mem::size_of::<hip_prefill_args>() as u32,
            batch_size: 1,
            total_q: io.t as u32,
            total_k: io.t as u32,
            max_seqlen_q: io.t as u32,
            max_seqlen_k: io.t as u32,
            q: view(&io.q),
            k: view(&io.k),
            v: view(&io.v),
            o: hip_tensor_mut {
                data: o.buf.addr as *mut c_void,
                token_stride: o.tok_stride as i64,
                head_stride: o.head_stride as i64,
            },
            cu_seqlens_q: self.cu.addr as *const i32,
            cu_seqlens_k: self.cu.addr as *const i32,
            lse: lse.addr as *mut f32,
            mask_state_out: std::ptr::null_mut(),
            reserved: [0; 4],
        };
        // SAFETY: every buffer spans what the args describe and outlives the queued work (callers synchronise).
        let st = unsafe { hip_prefill(self.ctx.0, &args, self.ws.addr as *mut c_void, self.ws_bytes, stream) };
        if st != hip_status::HIP_ATTN_STATUS_SUCCESS {
            return Err(format!("{}: hip_prefill: {st:?}: {}", self.name, last_error()));
        }
        Ok(())
    }
}

/// How a library row changes the default configuration for a sequence of T tokens.
type Tune = fn(&mut hip_config, usize);

#[test]
#[ignore = "timing on an H200-class GPU: scripts/gpu-run.sh hopper runs it with --include-ignored"]
fn hopper_timing() {
    let Some(gpu) = hopper_gpu("hopper_timing") else { return };
    let mem: &dyn Mem = &gpu;
    let mut rng = Rng::fresh("hopper_timing");
    let heads = 32;
    let scale = 1.0 / (D as f32).sqrt();
    let kernels: Vec<Kernel> = VARIANTS.iter().map(|&v| Kernel::load(v).unwrap_or_else(|e| panic!("{e}"))).collect();
    let mut table =
        vec![format!("{:<34} {:>6} {:>9} {:>9} {:>13}", "hopper table: variant", "T", "ms", "TFLOP/s", "O vs first")];
    let mut failures = Vec::new();
    for t in [8192usize, 32768] {
        let row = heads * D;
        let n = t * row;
        let q = dev_tensor(mem, &random_bf16(&mut rng, n), t, heads, row);
        let k = dev_tensor(mem, &random_bf16(&mut rng, n), t, heads, row);
        let v = dev_tensor(mem, &random_bf16(&mut rng, n), t, heads, row);
        let io = Io {
            t,
            hq: heads,
            hkv: heads,
            q,
            k,
            v,
            o: Dev { buf: mem.poisoned(2 * n), tokens: t, heads, tok_stride: row, head_stride: D },
            lse: mem.poisoned(4 * t * heads),
        };
        let flops = 2.0 * (t * t) as f64 * D as f64 * heads as f64;
        let reps = 20;
        let mut first: Option<Vec<u8>> = None;
        let mut record = |name: String, ms: f64, out: Vec<u8>, failures: &mut Vec<String>| {
            let cmp = match &first {
                None => "-".to_string(),
                Some(f) => match rel_l2_bf16(&out, f) {
                    Some(r) => {
                        if r >= 1e-2 {
                            failures
                                .push(format!("{name} T={t}: output differs from the first row's by rel L2 {r:.2e}"));
                        }
                        format!("{r:.2e}")
                    }
                    None => {
                        failures.push(format!("{name} T={t}: non-finite output (unwritten?)"));
                        "NON-FINITE".into()
                    }
                },
            };
            if first.is_none() {
                if out.chunks_exact(2).any(|x| !half::bf16::from_bits(u16::from_le_bytes([x[0], x[1]])).is_finite()) {
                    failures.push(format!("{name} T={t}: non-finite output (unwritten?)"));
                }
                first = Some(out);
            }
            table.push(format!("{name:<34} {t:>6} {ms:>9.3} {:>9.1} {cmp:>13}", flops / (ms * 1e-3) / 1e12));
        };
        for kernel in &kernels {
            let name = kernel.name();
            // Poisoned again so this variant's own writes are what the comparison sees.
            // SAFETY: the buffer spans `2 * n` bytes; nothing is queued on it (the last download synchronised).
            unsafe { result::memset_d8_sync(io.o.buf.addr as sys::CUdeviceptr, 0xFF, 2 * n) }.unwrap();
            match time_ms(mem.stream(), 3, reps, || launch(kernel, &io, scale, mem.stream())) {
                Ok(ms) => record(name, ms, mem.download(&io.o.buf), &mut failures),
                Err(e) => {
                    failures.push(format!("{name} T={t}: {e}"));
                    break;
                }
            }
        }
        let libs: [(&'static str, Tune); 2] = [
            ("library exact-k (k=T, bk 64)", |c, t| {
                c.k = t as u32;
                c.bk = 64;
            }),
            ("library exact-window (bq 128)", |c, t| {
                c.window = t as u32;
                c.bq = 128;
            }),
        ];
        for (name, tune) in libs {
            let lib = match Library::new(mem, name, t, heads, |c| tune(c, t)) {
                Ok(l) => l,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            let o = Dev { buf: mem.poisoned(2 * n), tokens: t, heads, tok_stride: row, head_stride: D };
            let lse = mem.poisoned(4 * t * heads);
            match time_ms(mem.stream(), 2, reps, || lib.run(&io, &o, &lse, mem.stream())) {
                Ok(ms) => record(name.to_string(), ms, mem.download(&o.buf), &mut failures),
                Err(e) => failures.push(format!("{name} T={t}: {e}")),
            }
        }
    }
    for line in &table {
        tools::say(line);
    }
    assert!(failures.is_empty(), "hopper timing failures:\n{}", failures.join("\n"));
}

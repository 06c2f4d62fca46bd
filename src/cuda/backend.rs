//! The CUDA backend: kernels from cuda/ compiled for this context's configuration, launched on the caller's
//! stream over the caller's device pointers. Context creation does all loading and compiling; run calls only
//! fill a parameter block on the stack and launch (no allocation, no synchronization, no module loading), so
//! they can be captured in a CUDA graph.

use super::{
    ensure_libraries, launch, launch_dependent, CacheConfig, CacheOutcome, CudaDevice, CudaError, DecodeParams,
    DeviceInfo, KernelModule, LogLevel, MappedFlag, MergeParams, PrefillParams,
};
use super::module::{KernelSet, Unit};
use crate::args::{Buffer, DecodeArgs, MergeArgs, PrefillArgs};
use crate::config::{Config, CreateOptions, MaskSharing};
use crate::contract::{
    self, COMBINE_THREADS, CUDA_MAX_BK, CUDA_MAX_GROUP, DECODE_THREADS, DEVERR_ALL, DEVERR_MASK_CONFIG,
    DEVERR_MASK_STATE, DEVERR_PAGE_TABLE, DEVERR_SEQLENS, HOPPER_HEAD_DIM, HOPPER_ROWS, HOPPER_SPARSE_KEYS,
    HOPPER_SPARSE_MAX_BQ, HOPPER_SPARSE_STAGES, HOPPER_SPARSE_THREADS, HOPPER_STAGES, HOPPER_THREADS,
    MERGE_HEADS_PER_CTA, MERGE_THREADS, SCAN_THREADS, SEARCH_THREADS, K8_THREADS,
};
use crate::plan::{self, DecodePlan, DecodeSearch, DeviceTraits, PrefillPlan};
use crate::status::{hip_status::*, Error, Result};
use crate::tensor::DType;
use super::launch::launch_args;
use cudarc::driver::sys::{CUfunction_attribute, CUresult, CUstream, CUtensorMap};

/// Kernel sources, embedded: NVRTC compiles hip_attn.cu with the others as named headers. hip_contract.h is the
/// text build.rs generates from src/contract.rs (cuda/generated/hip_contract.h is its committed copy).
const SOURCES: [(&str, &str); 19] = [
    ("hip_attn.cu", include_str!("../../cuda/hip_attn.cu")),
    ("hip_contract.h", include_str!(concat!(env!("OUT_DIR"), "/hip_contract.h"))),
    ("common.cuh", include_str!("../../cuda/common.cuh")),
    ("decode_kv.cuh", include_str!("../../cuda/decode_kv.cuh")),
    ("search.cuh", include_str!("../../cuda/search.cuh")),
    ("scan.cuh", include_str!("../../cuda/scan.cuh")),
    ("attention.cuh", include_str!("../../cuda/attention.cuh")),
    ("attn/mainloop.cuh", include_str!("../../cuda/attn/mainloop.cuh")),
    ("attn/mask.cuh", include_str!("../../cuda/attn/mask.cuh")),
    ("attn/softmax.cuh", include_str!("../../cuda/attn/softmax.cuh")),
    ("attn/epilogue.cuh", include_str!("../../cuda/attn/epilogue.cuh")),
    ("attn/prefill.cuh", include_str!("../../cuda/attn/prefill.cuh")),
    ("attn/decode.cuh", include_str!("../../cuda/attn/decode.cuh")),
    ("merge.cuh", include_str!("../../cuda/merge.cuh")),
    ("k8.cuh", include_str!("../../cuda/k8.cuh")),
    ("hopper/wgmma.cuh", include_str!("../../cuda/hopper/wgmma.cuh")),
    ("hopper/fa3.cuh", include_str!("../../cuda/hopper/fa3.cuh")),
    ("hopper/dense.cuh", include_str!("../../cuda/hopper/dense.cuh")),
    ("hopper/sparse.cuh", include_str!("../../cuda/hopper/sparse.cuh")),
];

/// Kernel entry points, in the order `KernelSet` resolves them (indices below). Index DECODE_WIDE, the cluster
/// decode kernel, is hip_decode_step_wide or, in a module whose masks serve several q heads,
/// DECODE_SEARCH_WIDE_KERNEL (`plan::decode_step_kernel`; `kernel_names`).
pub const KERNELS: [&str; 12] = [
    "hip_prefill_search",
    "hip_prefill_attn",
    "hip_decode_search",
    "hip_decode_attn",
    "hip_decode_combine",
    "hip_merge_states",
    "hip_decode_step_wide",
    "hip_prefill_attn_dense",
    "hip_decode_attn_direct",
    "hip_decode_scan",
    "hip_decode_scan_merge",
    "hip_prefill_scan",
];
/// The cluster decode search alone, in place of hip_decode_step_wide where `plan::decode_step_kernel` says so.
pub const DECODE_SEARCH_WIDE_KERNEL: &str = "hip_decode_search_wide";
/// The dense prefill attention on the Hopper pipeline (cuda/hopper/dense.cuh): in the module only where
/// `hopper_dense_compiled` says so, resolved apart from KERNELS.
pub const HOPPER_DENSE_KERNEL: &str = "hip_prefill_attn_hopper";
/// Its index in the module: resolved after KERNELS.
const HOPPER_DENSE: usize = KERNELS.len();
/// Its dynamic shared memory, as the module compiles it (HIP_ATTN_HOPPER_STAGES).
const HOPPER_SMEM: u32 =
    contract::hopper_smem(HOPPER_STAGES as i64, HOPPER_ROWS as i64, HOPPER_HEAD_DIM as i64) as u32;

/// The block-sparse prefill attention on the Hopper pipeline (cuda/hopper/sparse.cuh): in the module only where
/// `hopper_sparse_compiled` says so, resolved apart from KERNELS.
pub const HOPPER_SPARSE_KERNEL: &str = "hip_prefill_attn_hopper_sparse";

/// The kernels that make the FP8-scored search's copy of K (cuda/k8.cuh): in the module only with
/// HIP_ATTN_FLAG_FP8_SEARCH_SCORES, resolved after the rest.
pub const K8_KERNELS: [&str; 2] = ["hip_prefill_k8_amax", "hip_prefill_k8_copy"];

/// Whether the module for `cfg` on `arch` holds hip_prefill_attn_hopper (the condition of cuda/hip_attn.cu).
pub fn hopper_dense_compiled(cfg: &Config, arch: &str) -> bool {
    arch == "sm_90a" && cfg.dtype == DType::Bf16 && cfg.head_dim == HOPPER_HEAD_DIM
}

/// Whether the module for `cfg` on `arch` holds hip_prefill_attn_hopper_sparse (the condition of cuda/hip_attn.cu).
pub fn hopper_sparse_compiled(cfg: &Config, arch: &str) -> bool {
    hopper_dense_compiled(cfg, arch) && cfg.bq <= HOPPER_SPARSE_MAX_BQ
}

/// Dynamic shared memory of hip_prefill_attn_hopper_sparse in the module for `cfg`.
fn hopper_sparse_smem(cfg: &Config) -> u32 {
    let (stages, keys, kbx) = (HOPPER_SPARSE_STAGES as i64, HOPPER_SPARSE_KEYS as i64, cfg.kb().max(1) as i64);
    contract::hopper_sparse_smem(stages, keys, cfg.head_dim as i64, kbx) as u32
}

/// The programs that context creation compiles at once, slowest first, each loaded as its own module: (the
/// kernels it provides, its partners). One program of all the kernels took 7-8 s on the H200 host, nearly all in
/// NVVM and ptxas on one thread; spread over threads it takes about as long as its slowest program.
///
/// NVVM's interprocedural passes see the whole program, so a kernel's code can depend on which other kernels
/// share its program (e.g. a device function that every caller in the program calls with the same constant
/// argument is specialised before it is inlined): hip_decode_search alone compiles to other (equivalent) code
/// than beside a prefill search. These groups keep the code of every kernel byte-identical to what the single
/// program made, for every variant tests/kernels_compile.rs compiles (HIP_ATTN_CHECK_SPLIT=1 checks it). A
/// partner is compiled into a program only for that reason; its kernel is loaded from its own program.
/// cuda/hip_attn.cu compiles the kernels of one program under -DHIP_ONLY -DHIP_WANT_<name>. The Hopper
/// block-sparse kernel's program comes last, out of that order: it compiles in under 2 s (NVRTC 13, one thread),
/// and appended it left the other units' indices, so their cache files and dumped cubins, as they were.
pub const UNITS: [(&[&str], &[&str]); 12] = [
    (&["hip_decode_step_wide"], &["hip_prefill_search"]),
    (&[DECODE_SEARCH_WIDE_KERNEL], &["hip_prefill_search"]),
    (&["hip_prefill_attn_dense"], &["hip_prefill_search"]),
    (&["hip_prefill_search", "hip_prefill_attn"], &[]),
    (&["hip_prefill_scan", "hip_decode_search"], &[]),
    (&[HOPPER_DENSE_KERNEL], &[]),
    (&["hip_decode_attn", "hip_decode_combine", "hip_merge_states"], &[]),
    (&["hip_decode_attn_direct"], &[]),
    (&["hip_decode_scan"], &[]),
    (&["hip_decode_scan_merge"], &[]),
    (&K8_KERNELS, &[]),
    (&[HOPPER_SPARSE_KERNEL], &[]),
];

/// The kernels a context for `cfg` on `arch` loads, in index order: KERNELS (with the configuration's cluster
/// decode kernel), then the Hopper dense and block-sparse kernels where they are compiled, then the FP8 copy's.
pub fn kernel_names(cfg: &Config, arch: &str) -> Vec<&'static str> {
    let mut names = KERNELS.to_vec();
    if !plan::decode_step_kernel(cfg) {
        names[DECODE_WIDE] = DECODE_SEARCH_WIDE_KERNEL;
    }
    if hopper_dense_compiled(cfg, arch) {
        names.push(HOPPER_DENSE_KERNEL);
    }
    if hopper_sparse_compiled(cfg, arch) {
        names.push(HOPPER_SPARSE_KERNEL);
    }
    if cfg.fp8_search {
        names.extend(K8_KERNELS);
    }
    names
}

/// The NVRTC programs for `cfg` on `arch` when `threads` compile at once: [`UNITS`] with their options, less the
/// Hopper one where its kernel is not compiled; with one thread, a single program of every kernel, since the split
/// costs about a third more CPU in all (headers parsed per program, partners compiled again) and only pays when
/// the programs run side by side.
pub fn compile_units(cfg: &Config, arch: &str, threads: usize) -> Vec<Unit> {
    let base = compile_options(cfg, arch);
    let names = kernel_names(cfg, arch);
    if threads <= 1 {
        return vec![Unit { options: base, names, partners: Vec::new() }];
    }
    UNITS
        .iter()
        .filter(|(kernels, _)| kernels.iter().all(|k| names.contains(k)))
        .map(|(kernels, partners)| {
            let mut options = base.clone();
            options.push("-DHIP_ONLY=1".into());
            options.extend(kernels.iter().chain(partners.iter()).map(|k| format!("-DHIP_WANT_{k}=1")));
            Unit { options, names: kernels.to_vec(), partners: partners.to_vec() }
        })
        .collect()
}

const PREFILL_SEARCH: usize = 0;
const PREFILL_ATTN: usize = 1;
const DECODE_SEARCH: usize = 2;
const DECODE_ATTN: usize = 3;
const DECODE_COMBINE: usize = 4;
const MERGE: usize = 5;
const DECODE_WIDE: usize = 6;
const PREFILL_ATTN_DENSE: usize = 7;
const DECODE_ATTN_DIRECT: usize = 8;
const DECODE_SCAN: usize = 9;
const DECODE_SCAN_MERGE: usize = 10;
const PREFILL_SCAN: usize = 11;

const MAX_GRID_YZ: usize = 65535;

// The contract's geometry (src/contract.rs) in the host's integer types.
fn dense_threads(d: usize) -> u32 {
    contract::dense_threads(d as i64) as u32
}

fn dense_smem(d: usize) -> u32 {
    contract::dense_smem(d as i64) as u32
}

fn prefill_threads(bq: usize, d: usize) -> u32 {
    contract::prefill_threads(bq as i64, d as i64) as u32
}

impl From<CudaError> for Error {
    fn from(e: CudaError) -> Error {
        let status = match &e {
            CudaError::LibraryMissing { .. }
            | CudaError::DeviceOrdinal { .. }
            | CudaError::UnsupportedArch { .. }
            | CudaError::ArchNotSupportedByNvrtc { .. } => HIP_ATTN_STATUS_CUDA_UNAVAILABLE,
            CudaError::Compile { .. } => HIP_ATTN_STATUS_KERNEL_COMPILE_FAILED,
            CudaError::Nvrtc { code, .. } if *code == cudarc::nvrtc::sys::nvrtcResult::NVRTC_ERROR_OUT_OF_MEMORY as i32 => {
                HIP_ATTN_STATUS_OUT_OF_MEMORY
            }
            CudaError::OutOfMemory { .. } => HIP_ATTN_STATUS_OUT_OF_MEMORY,
            // Any driver call can run out of device memory (module loading, context creation), not only the
            // allocations that say so.
            CudaError::Driver { code, .. } if *code == CUresult::CUDA_ERROR_OUT_OF_MEMORY as i32 => {
                HIP_ATTN_STATUS_OUT_OF_MEMORY
            }
            CudaError::Panic { .. } => HIP_ATTN_STATUS_INTERNAL,
            _ => HIP_ATTN_STATUS_CUDA_ERROR,
        };
        Error::new(status, e.to_string())
    }
}

/// What the CUDA kernels support beyond the common validation (src/contract.rs: cuda_max_bq, cuda_max_kb,
/// CUDA_MAX_BK, CUDA_MAX_GROUP).
pub fn check_supported(cfg: &Config) -> Result<()> {
    let d = cfg.head_dim;
    let (max_bq, max_kb) = (contract::cuda_max_bq(d as i64) as usize, contract::cuda_max_kb(d as i64) as usize);
    let unsupported = |what: String| Err(Error::unsupported(format!("{what} on the CUDA backend")));
    if cfg.dtype == DType::F32 {
        return unsupported("dtype f32 is not supported (use bf16 or f16)".into());
    }
    if cfg.bq > max_bq {
        return unsupported(format!("bq ({}) above {max_bq} is not supported with head_dim {d}", cfg.bq));
    }
    if cfg.kb() > max_kb {
        return unsupported(format!("k ({}) needs {} key blocks; at most {max_kb} are supported", cfg.k, cfg.kb()));
    }
    if cfg.bk > CUDA_MAX_BK {
        return unsupported(format!("bk ({}) above {CUDA_MAX_BK} is not supported", cfg.bk));
    }
    if cfg.group() > CUDA_MAX_GROUP {
        return unsupported(format!(
            "a GQA group of {} q heads per kv head (above {CUDA_MAX_GROUP}) is not supported",
            cfg.group()
        ));
    }
    if cfg.fp8_search {
        let rows = cfg.bq.div_ceil(cfg.sq) * cfg.mask_head_q_heads(0).len();
        if rows > contract::FP8_SEARCH_MAX_ROWS {
            return unsupported(format!(
                "flags HIP_ATTN_FLAG_FP8_SEARCH_SCORES with {rows} rows per search (ceil(bq / sq), times the GQA \
                 group when masks are per kv head; at most {}) is not supported",
                contract::FP8_SEARCH_MAX_ROWS
            ));
        }
        if d != 128 {
            return unsupported(format!("flags HIP_ATTN_FLAG_FP8_SEARCH_SCORES with head_dim {d} (only 128) is not supported"));
        }
    }
    if cfg.num_q_heads > MAX_GRID_YZ {
        return unsupported(format!("num_q_heads ({}) above {MAX_GRID_YZ} is not supported", cfg.num_q_heads));
    }
    Ok(())
}

/// CTAs per decode mask search when compiling for `arch` ("sm_90a", "sm_80", ...): a cluster of 8 (the portable
/// size) where thread-block clusters exist (sm_90 and newer), else 1. The grid of the cluster decode kernel
/// (hip_decode_step_wide or hip_decode_search_wide) scales by it.
pub fn decode_search_cluster(arch: &str) -> u32 {
    let digits: String = arch.trim_start_matches("sm_").chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.parse::<u32>().is_ok_and(|n| n >= 90) {
        8
    } else {
        1
    }
}

/// The -D options that specialise the kernels for one configuration and architecture.
pub fn compile_options(cfg: &Config, arch: &str) -> Vec<String> {
    let dtype = match cfg.dtype {
        DType::Bf16 => 0,
        _ => 1,
    };
    let mut opts = vec![
        format!("-DHIP_DTYPE={dtype}"),
        format!("-DHIP_HEAD_DIM={}", cfg.head_dim),
        format!("-DHIP_KB={}", cfg.kb()),
        format!("-DHIP_BQ={}", cfg.bq),
        format!("-DHIP_BK={}", cfg.bk),
        format!("-DHIP_SQ={}", cfg.sq),
        format!("-DHIP_SK={}", cfg.sk),
        format!("-DHIP_GROUP={}", cfg.group()),
        format!("-DHIP_SHARE_KV={}", (cfg.sharing == MaskSharing::PerKvHead) as i32),
        format!("-DHIP_CAUSAL={}", cfg.causal as i32),
        format!("-DHIP_DSEARCH_CL={}", decode_search_cluster(arch)),
        format!("-DHIP_DECODE_STEP={}", plan::decode_step_kernel(cfg) as i32),
        "-std=c++17".into(),
    ];
    // (only when set, so that the default modules' options, and with them their kernel-cache keys, stay as they were)
    if cfg.fp8_search {
        opts.push("-DHIP_FP8_SEARCH=1".into());
    }
    opts
}

#[cfg(any(test, feature = "internals"))]
/// The kernel sources, for tools and tests that compile them outside a context.
pub fn sources() -> &'static [(&'static str, &'static str)] {
    &SOURCES
}

/// At most this many decode search CTAs share an SM.
const DSEARCH_CTAS_PER_SM: i32 = 4;

/// Dynamic shared memory, unused by the kernel, that keeps the decode search at DSEARCH_CTAS_PER_SM CTAs per SM
/// (`static_smem`: the kernel's own). Most decode steps reuse the mask, and each search CTA then only checks its
/// record, while the attention CTAs (a programmatic dependent launch) take the room the search CTAs leave. At 96
/// registers the search fits 5 CTAs per SM on Hopper, and with 5 the batch-16 cached step (512 search CTAs) ran
/// 4 us slower than with 4 (H200, A/B in one run: 61.8 vs 57.7 us; BENCHMARKS.md). The price: a step that does
/// search, with between 4 and 5 searches per SM, takes two waves instead of one. 0 where no pad is needed or
/// the pad would need more than the 48 KiB a CTA gets without opting in.
fn dsearch_smem_pad(info: &DeviceInfo, static_smem: i32) -> u32 {
    // A CTA takes static + dynamic + reserved bytes; CAP + 1 of them must not fit.
    let need = info.smem_per_sm / (DSEARCH_CTAS_PER_SM + 1) + 1 - info.smem_reserved_per_block;
    let pad = ((need - static_smem).max(0) as u32).next_multiple_of(128) as i32;
    if pad == 0 || static_smem + pad > info.max_smem_per_block {
        return 0;
    }
    pad as u32
}

/// CTAs of `func` (launched with `threads` threads and `smem` bytes of dynamic shared memory) that fit on one SM;
/// the context is bound.
fn occupancy(func: Option<cudarc::driver::sys::CUfunction>, threads: u32, smem: u32) -> Result<usize> {
    let func = func.ok_or_else(|| Error::internal("a decode kernel was not loaded"))?;
    let mut n: std::ffi::c_int = 0;
    // SAFETY: `func` belongs to the loaded module of the bound context; the driver only writes `n`.
    let r =
        unsafe { cudarc::driver::sys::cuOccupancyMaxActiveBlocksPerMultiprocessor(&mut n, func, threads as i32, smem as usize) };
    if r != CUresult::CUDA_SUCCESS {
        return Err(Error::new(
            HIP_ATTN_STATUS_CUDA_ERROR,
            format!("cuOccupancyMaxActiveBlocksPerMultiprocessor: {r:?}"),
        ));
    }
    Ok(n.max(0) as usize)
}

pub struct CudaBackend {
    // Field order is drop order: modules and flag go before the device's context reference.
    module: KernelSet,
    flag: MappedFlag,
    dev: CudaDevice,
    /// CTAs per decode search (HIP_DSEARCH_CL of the module).
    dsearch_cl: u32,
    /// Dynamic shared memory of each launch of hip_decode_search and of hip_decode_search_wide (see
    /// `dsearch_smem_pad`; none for hip_decode_step_wide, which attends in the room it leaves).
    dsearch_pad: [u32; 2],
    /// Decode attention and combine go out as programmatic dependent launches (sm_90+).
    pdl: bool,
    /// CTAs of hip_decode_scan resident on the whole device at once.
    scan_resident: usize,
    /// CTAs of the cluster decode kernel (index DECODE_WIDE) one SM holds, as launched (0 without clusters).
    cluster_per_sm: usize,
    /// hip_prefill_attn_hopper is loaded (index HOPPER_DENSE) with its shared memory granted.
    hopper: bool,
    /// The module's kernels by index (`kernel_names`), for messages.
    names: Vec<&'static str>,
    /// The indices of K8_KERNELS, where the module has them.
    k8: Option<[usize; 2]>,
    /// hip_prefill_attn_hopper_sparse's index and dynamic shared memory, where it is loaded with that memory
    /// granted and chosen: it then runs the block-sparse attention in place of hip_prefill_attn.
    hopper_sparse: Option<(usize, u32)>,
}

/// Whether the Hopper kernel `index` of the module, compiled there, runs in place of its classic twin: the default,
/// unless the environment variable `var` is "classic" when the context is created (for A/B runs and as an escape
/// from a fault without a rebuild), or its `smem` bytes of dynamic shared memory cannot be granted. Either way the
/// log says why `what` keeps the classic kernel.
fn hopper_kernel_kept(
    module: &KernelSet,
    index: usize,
    smem: u32,
    var: &str,
    what: &str,
    log: &dyn Fn(LogLevel, &str),
) -> bool {
    if std::env::var(var).is_ok_and(|v| v == "classic") {
        log(LogLevel::Info, &format!("{var}=classic: {what} keeps the classic kernel"));
        return false;
    }
    match module.set_max_dynamic_smem(index, smem) {
        Ok(()) => true,
        Err(e) => {
            log(LogLevel::Warn, &format!("{what} keeps the classic kernel: {e}"));
            false
        }
    }
}

fn batch_limit(batch: usize) -> Result<()> {
    if batch > MAX_GRID_YZ {
        return Err(Error::unsupported(format!("batch_size ({batch}) above {MAX_GRID_YZ} on the CUDA backend")));
    }
    Ok(())
}

impl CudaBackend {
    pub fn new(cfg: &Config, ordinal: i32, opts: &CreateOptions) -> Result<CudaBackend> {
        check_supported(cfg)?;
        ensure_libraries()?;
        let dev = CudaDevice::new(ordinal, None)?;
        let info = dev.info();
        let log = |level: LogLevel, msg: &str| opts.log.log(level, msg);
        log(
            LogLevel::Info,
            &format!(
                "device {} ({}), compute capability {}.{}, {} SMs: compiling for {}",
                info.ordinal, info.name, info.cc_major, info.cc_minor, info.sm_count, info.arch
            ),
        );
        let cache = CacheConfig { enabled: true, dir: opts.kernel_cache_dir.clone() };
        let started = std::time::Instant::now();
        if cfg.fp8_search && info.arch != "sm_90a" {
            return Err(Error::unsupported(format!(
                "flags HIP_ATTN_FLAG_FP8_SEARCH_SCORES needs an sm_90 device (its E4M3 warpgroup MMA) on the CUDA \
                 backend; device {} is {}",
                info.ordinal, info.arch
            )));
        }
        let hopper_compiled = hopper_dense_compiled(cfg, &info.arch);
        let names = kernel_names(cfg, &info.arch);
        let (module, outcomes) = KernelSet::build(
            &dev,
            &cache,
            SOURCES[0].0,
            &SOURCES,
            &compile_units(cfg, &info.arch, super::compile::compile_threads()),
            &names,
            &log,
        )?;
        let compiled = outcomes.iter().filter(|o| **o != CacheOutcome::Hit).count();
        let how = match compiled {
            0 => format!("{} modules loaded from the kernel cache", outcomes.len()),
            n => format!("{n} of {} modules compiled with NVRTC", outcomes.len()),
        };
        log(LogLevel::Info, &format!("kernels ({how}) ready in {:.3} s", started.elapsed().as_secs_f64()));
        let flag = MappedFlag::new(&dev)?;
        let (pdl, dsearch_cl) = (info.cc_major >= 9, decode_search_cluster(&info.arch));
        let dense = dense_smem(cfg.head_dim);
        if dense > info.max_smem_per_block as u32 {
            module.set_max_dynamic_smem(PREFILL_ATTN_DENSE, dense)?;
        }
        let hopper = hopper_compiled
            && hopper_kernel_kept(&module, HOPPER_DENSE, HOPPER_SMEM, "HIP_ATTN_DENSE_KERNEL", "dense prefill", &log);
        let mut dsearch_pad = [0; 2];
        let searches_only = [(DECODE_SEARCH, true), (DECODE_WIDE, !plan::decode_step_kernel(cfg))];
        for (pad, (kernel, search_only)) in dsearch_pad.iter_mut().zip(searches_only) {
            if search_only {
                let static_smem = module.attribute(kernel, CUfunction_attribute::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)?;
                *pad = dsearch_smem_pad(info, static_smem);
            }
        }
        let scan_resident = {
            let _bound = dev.bind()?;
            info.sm_count.max(1) as usize * occupancy(module.func(DECODE_SCAN), SCAN_THREADS, 0)?.max(1)
        };
        let cluster_per_sm = match dsearch_cl {
            1 => 0,
            _ => {
                let _bound = dev.bind()?;
                occupancy(module.func(DECODE_WIDE), SEARCH_THREADS, dsearch_pad[1]).unwrap_or_else(|e| {
                    // (a figure for the cluster rule only: without it, the rule's own cap)
                    log(LogLevel::Warn, &format!("cluster decode kernel occupancy unknown ({e}): assuming 4 per SM"));
                    4
                })
            }
        };
        let at = |name| names.iter().position(|n| *n == name);
        let k8 = at(K8_KERNELS[0]).zip(at(K8_KERNELS[1])).map(|(a, c)| [a, c]);
        let sparse_smem = hopper_sparse_smem(cfg);
        let hopper_sparse = at(HOPPER_SPARSE_KERNEL)
            .filter(|&i| {
                hopper_kernel_kept(&module, i, sparse_smem, "HIP_ATTN_SPARSE_KERNEL", "block-sparse prefill", &log)
            })
            .map(|i| (i, sparse_smem));
        let mut backend = CudaBackend {
            module,
            flag,
            dev,
            dsearch_cl,
            dsearch_pad,
            pdl,
            scan_resident,
            cluster_per_sm,
            hopper,
            names,
            k8,
            hopper_sparse,
        };
        if backend.dsearch_cl > 1 && !backend.clusters_fit()? {
            // (e.g. an MPS client limited to a few SMs): the one-CTA search works everywhere.
            log(
                LogLevel::Warn,
                "no cluster of the decode search fits on this device: using the one-CTA search and the attention kernels",
            );
            backend.dsearch_cl = 1;
        }
        Ok(backend)
    }

    /// What decode plans need of this device.
    pub fn device_traits(&self) -> DeviceTraits {
        DeviceTraits {
            sm_count: self.dev.info().sm_count.max(1) as usize,
            search_cluster: self.dsearch_cl,
            cluster_per_sm: self.cluster_per_sm,
            scan_resident: self.scan_resident,
        }
    }

    fn func(&self, i: usize) -> Result<cudarc::driver::sys::CUfunction> {
        self.module.func(i).ok_or_else(|| {
            Error::internal(format!("kernel {} was not loaded", self.names.get(i).unwrap_or(&"(index out of range)")))
        })
    }

    /// Reports (once) bad index data that an earlier call's kernels met on the device. Kernels OR bits into a
    /// flag in mapped host memory; reading it needs no synchronization, so the report comes with a later call.
    fn take_device_error(&self) -> Result<()> {
        let bits = self.flag.read();
        if bits == 0 {
            return Ok(());
        }
        self.flag.clear();
        let mut what = Vec::new();
        if bits & DEVERR_SEQLENS != 0 {
            what.push(
                "cu_seqlens or seqlens_k out of range (a prefill's cu_seqlens_q[0] or cu_seqlens_k[0] not 0, \
                 cu_seqlens decreasing, a sequence longer than max_seqlen_q or max_seqlen_k or with Tq > Tk, or \
                 cu_seqlens_q[batch_size] != total_q or cu_seqlens_k[batch_size] != total_k; a decode's \
                 seqlens_k[b] outside [1, max_seqlen_k]; those sequences were skipped, their outputs zeroed)",
            );
        }
        if bits & DEVERR_PAGE_TABLE != 0 {
            what.push("a page index outside [0, num_pages) (those heads were skipped, their outputs zeroed)");
        }
        if bits & DEVERR_MASK_STATE != 0 {
            what.push(
                "a mask-state record with count, e or a block out of range (it was searched anew; a stale record? \
                 zero the sequence's mask-state records after truncating its cache)",
            );
        }
        if bits & DEVERR_MASK_CONFIG != 0 {
            what.push(
                "a mask-state record written by a context of another configuration (it was searched anew; give \
                 each configuration its own mask state)",
            );
        }
        if bits & !DEVERR_ALL != 0 {
            what.push("an unknown device error");
        }
        Err(Error::bad_index(format!(
            "an earlier call on this context met bad index data on the device: {}; this call did nothing",
            what.join("; ")
        )))
    }

    #[cfg(any(test, feature = "internals"))]
    /// The device address of the mapped error flag (tests use it with the layout kernel).
    pub fn flag_ptr(&self) -> u64 {
        self.flag.device_ptr()
    }

    /// # Safety
    /// Every pointer in `a` and `ws` is device memory of this context's device spanning its validated extent,
    /// and `stream` is NULL or a stream of that device.
    pub unsafe fn prefill(
        &self,
        cfg: &Config,
        plan: &PrefillPlan,
        a: &PrefillArgs,
        ws: Buffer,
        stream: usize,
    ) -> Result<()> {
        batch_limit(a.batch)?;
        self.take_device_error()?;
        let _bound = self.dev.bind()?;
        let layout = &plan.workspace;
        let p = PrefillParams {
            q: a.q.addr as u64,
            k: a.k.addr as u64,
            v: a.v.addr as u64,
            o: a.o.addr as u64,
            lse: a.lse.map_or(0, |l| l.addr as u64),
            cu_seqlens_q: a.cu_seqlens_q as u64,
            cu_seqlens_k: a.cu_seqlens_k as u64,
            mask_idx: (ws.addr + layout.idx_offset) as u64,
            mask_cnt: (ws.addr + layout.cnt_offset) as u64,
            mask_state: a.mask_state_out.map_or(0, |b| b.addr as u64),
            error_flag: self.flag.device_ptr(),
            q_tok_stride: a.q.row_stride as i64,
            q_head_stride: a.q.head_stride as i64,
            k_tok_stride: a.k.row_stride as i64,
            k_head_stride: a.k.head_stride as i64,
            v_tok_stride: a.v.row_stride as i64,
            v_head_stride: a.v.head_stride as i64,
            o_tok_stride: a.o.row_stride as i64,
            o_head_stride: a.o.head_stride as i64,
            batch: a.batch as i32,
            total_q: a.total_q as i32,
            total_k: a.total_k as i32,
            max_seqlen_q: a.max_seqlen_q as i32,
            max_seqlen_k: a.max_seqlen_k as i32,
            num_q_heads: cfg.num_q_heads as i32,
            num_kv_heads: cfg.num_kv_heads as i32,
            mask_heads: cfg.mask_heads() as i32,
            sink: cfg.sink as i32,
            window: cfg.window as i32,
            state_ints: plan.state_ints as i32,
            slots: layout.slots as i32,
            scale: cfg.scale,
            scan_tail: cfg.prefill_scan_tail.min(i32::MAX as usize) as i32,
            tail_blocks: layout.tail_blocks as i32,
            state_fingerprint: plan::state_fingerprint(cfg),
            k8: if layout.k8_chunks > 0 { (ws.addr + layout.k8_offset) as u64 } else { 0 },
            k8_amax: if layout.k8_chunks > 0 { (ws.addr + layout.k8_amax_offset) as u64 } else { 0 },
            k8_chunks: layout.k8_chunks.min(i32::MAX as usize) as i32,
            reserved: 0,
        };
        let s = stream as CUstream;
        // SAFETY: the parameter block matches hip_prefill_params (layout checked by a GPU test) and addresses
        // memory the caller promised; the context is bound; the grids follow src/contract.rs. The two attention
        // kernels write the rows of disjoint sets of sequences. The Hopper dense kernel takes (three CUtensorMaps,
        // the same parameter block), each argument pointer to a value of that type living across the launch; its
        // tensor maps describe the validated q, k, v views, and its grid and shared memory are what it was built
        // and granted for (HOPPER_SMEM set at creation).
        unsafe {
            if let Some(grid) = plan.k8_grid {
                let [amax, copy] = self.k8.ok_or_else(|| Error::internal("the FP8 copy kernels were not loaded"))?;
                launch(self.func(amax)?, grid, (K8_THREADS, 1, 1), 0, s, &p)?;
                launch(self.func(copy)?, grid, (K8_THREADS, 1, 1), 0, s, &p)?;
            }
            launch(self.func(PREFILL_SEARCH)?, plan.search_grid, (SEARCH_THREADS, 1, 1), 0, s, &p)?;
            if let Some(grid) = plan.scan_grid {
                launch(self.func(PREFILL_SCAN)?, grid, (SEARCH_THREADS, 1, 1), 0, s, &p)?;
            }
            let mut hopper_maps = None;
            if let plan::DenseKernel::Hopper { grid } = self.dense_plan(cfg, plan, a).dense_kernel {
                // A view the driver refuses to describe (see tensor_map) keeps the classic kernel.
                if let (Ok(tq), Ok(tk), Ok(tv)) = (tensor_map(&a.q, a.total_q), tensor_map(&a.k, a.total_k), tensor_map(&a.v, a.total_k)) {
                    hopper_maps = Some((grid, [tq, tk, tv]));
                }
            }
            if let Some((grid, mut maps)) = hopper_maps {
                let mut params = p;
                let [tq, tk, tv] = &mut maps;
                let mut args: [*mut std::ffi::c_void; 4] = [
                    (tq as *mut CUtensorMap).cast(),
                    (tk as *mut CUtensorMap).cast(),
                    (tv as *mut CUtensorMap).cast(),
                    (&mut params as *mut PrefillParams).cast(),
                ];
                let func = self.func(HOPPER_DENSE)?;
                launch_args(func, grid, (HOPPER_THREADS, 1, 1), HOPPER_SMEM, s, &mut args)?;
            } else {
                let (dense_block, smem) = ((dense_threads(cfg.head_dim), 1, 1), dense_smem(cfg.head_dim));
                launch(self.func(PREFILL_ATTN_DENSE)?, plan.dense_grid, dense_block, smem, s, &p)?;
            }
            if let Some(grid) = plan.sparse_grid {
                if let Some((index, smem)) = self.hopper_sparse {
                    launch(self.func(index)?, grid, (HOPPER_SPARSE_THREADS, 1, 1), smem, s, &p)?;
                } else {
                    let threads = prefill_threads(cfg.bq, cfg.head_dim);
                    launch(self.func(PREFILL_ATTN)?, grid, (threads, 1, 1), 0, s, &p)?;
                }
            }
        }
        Ok(())
    }

    /// The plan of this call with its dense kernel chosen for this module and the call's tensors.
    pub fn dense_plan(&self, cfg: &Config, plan: &PrefillPlan, a: &PrefillArgs) -> PrefillPlan {
        let op = |t: &crate::tensor::TensorView| plan::DenseOperand {
            addr: t.addr,
            row_stride: t.row_stride,
            head_stride: t.head_stride,
        };
        let mut plan = *plan;
        plan.choose_dense_kernel(cfg, self.hopper, a.total_k, [op(&a.q), op(&a.k), op(&a.v), op(&a.o)]);
        plan
    }

    /// Whether at least one cluster of the cluster decode kernel can be resident (the driver's occupancy query).
    fn clusters_fit(&self) -> Result<bool> {
        let _bound = self.dev.bind()?;
        let func = self.func(DECODE_WIDE)?;
        // SAFETY: an all-zero CUlaunchConfig is valid plain data (null stream and attributes, no attributes);
        // the grid and block are set below.
        let mut config: cudarc::driver::sys::CUlaunchConfig = unsafe { std::mem::zeroed() };
        (config.gridDimX, config.gridDimY, config.gridDimZ) = (self.dsearch_cl, 1, 1);
        (config.blockDimX, config.blockDimY, config.blockDimZ) = (SEARCH_THREADS, 1, 1);
        config.sharedMemBytes = self.dsearch_pad[1]; // as launched
        let mut n: std::ffi::c_int = 0;
        // SAFETY: the context is bound, `func` belongs to the loaded module (its cluster shape is compiled in),
        // `config` and `n` live across the call; the driver only reads `config` and writes `n`.
        let r = unsafe { cudarc::driver::sys::cuOccupancyMaxActiveClusters(&mut n, func, &config) };
        Ok(r == CUresult::CUDA_SUCCESS && n >= 1)
    }

    /// # Safety
    /// As for `prefill`.
    pub unsafe fn decode(
        &self,
        cfg: &Config,
        plan: &DecodePlan,
        a: &DecodeArgs,
        ws: Buffer,
        stream: usize,
    ) -> Result<()> {
        batch_limit(a.batch)?;
        self.take_device_error()?;
        let _bound = self.dev.bind()?;
        let l = plan.launch.ok_or_else(|| Error::internal("a decode plan without the CUDA launches"))?;
        let layout = &plan.workspace;
        let scan = matches!(l.search, DecodeSearch::Scan { .. });
        let (page_size, page_table, pt_stride, num_pages) =
            a.paging.map_or((0, 0, 0, 0), |p| (p.page_size, p.page_table, p.pt_stride, p.num_pages));
        // A shard runs the unsharded kernels with its range's sink and window (runtime parameters) and the
        // fingerprint of that role (docs/ALGORITHM.md, "Sharded sequences"); the plan stays the context's, so a
        // shard's split count, and with it HIP_ATTN_FLAG_BATCH_INVARIANT, does not depend on its role.
        let role = cfg.for_range(a.range);
        let p = DecodeParams {
            q: a.q.addr as u64,
            o: a.o.addr as u64,
            lse: a.lse.map_or(0, |l| l.addr as u64),
            k_cache: a.kv.k as u64,
            v_cache: a.kv.v as u64,
            seqlens_k: a.seqlens_k as u64,
            page_table: page_table as u64,
            mask_state: a.mask_state.addr as u64,
            part_o: (ws.addr + layout.part_o_offset) as u64,
            part_lse: (ws.addr + layout.part_lse_offset) as u64,
            error_flag: self.flag.device_ptr(),
            q_seq_stride: a.q.row_stride as i64,
            q_head_stride: a.q.head_stride as i64,
            o_seq_stride: a.o.row_stride as i64,
            o_head_stride: a.o.head_stride as i64,
            kv_seq_stride: a.kv.outer_stride as i64,
            kv_tok_stride: a.kv.token_stride as i64,
            kv_head_stride: a.kv.head_stride as i64,
            scan_ws: if scan { (ws.addr + layout.scan_offset) as u64 } else { 0 },
            batch: a.batch as i32,
            paged: a.paging.is_some() as i32,
            page_size: page_size as i32,
            pt_stride: pt_stride as i32,
            num_pages: num_pages as i32,
            max_seqlen_k: a.max_seqlen_k as i32,
            num_q_heads: cfg.num_q_heads as i32,
            num_kv_heads: cfg.num_kv_heads as i32,
            mask_heads: cfg.mask_heads() as i32,
            sink: role.sink as i32,
            window: role.window as i32,
            refresh: cfg.refresh.min(i32::MAX as usize) as i32,
            state_ints: plan.state_ints as i32,
            num_splits: l.splits as i32,
            scale: cfg.scale,
            scan_splits: match l.search {
                DecodeSearch::Scan { splits } => splits as i32,
                DecodeSearch::Tree { .. } | DecodeSearch::Step { .. } => 1,
            },
            state_fingerprint: plan::state_fingerprint(&role),
            reserved: 0,
        };
        let s = stream as CUstream;
        // SAFETY: as in prefill, for hip_decode_params; the workspace holds batch x q heads x splits partials
        // (decode_splits never picks more than the plan's DecodeWorkspace holds; hip_decode_step_wide, whose
        // splits are its cluster's CTAs, writes none) and, with SCAN, the scan regions of the plan's layout for this
        // batch and max_seqlen_k.
        unsafe {
            match l.search {
                DecodeSearch::Step { .. } => {
                    // The whole step, in one ordinary launch (it waits for the caller's work, nothing waits on it
                    // programmatically).
                    launch(self.func(DECODE_WIDE)?, l.search_grid, (SEARCH_THREADS, 1, 1), 0, s, &p)?;
                    return Ok(());
                }
                DecodeSearch::Tree { cluster } => {
                    let (kernel, pad) = match cluster {
                        2.. => (DECODE_WIDE, self.dsearch_pad[1]),
                        _ => (DECODE_SEARCH, self.dsearch_pad[0]),
                    };
                    launch(self.func(kernel)?, l.search_grid, (SEARCH_THREADS, 1, 1), pad, s, &p)?;
                }
                DecodeSearch::Scan { .. } => {
                    // The scan waits for the caller's work as an ordinary launch; the merge, a dependent launch,
                    // waits for the scan's candidates with pdl_wait().
                    launch(self.func(DECODE_SCAN)?, l.search_grid, (SCAN_THREADS, 1, 1), 0, s, &p)?;
                    let grid = l.scan_merge_grid.ok_or_else(|| Error::internal("a SCAN plan without its merge"))?;
                    let merge = (self.func(DECODE_SCAN_MERGE)?, grid, (SCAN_THREADS, 1, 1));
                    if self.pdl {
                        launch_dependent(merge.0, merge.1, merge.2, s, &p)?;
                    } else {
                        launch(merge.0, merge.1, merge.2, 0, s, &p)?;
                    }
                }
            }
            // The search kernel does not wait on the caller's previous work programmatically (an ordinary launch);
            // the kernels after it do, and call pdl_wait() before touching what the kernel before them writes.
            // With one split the attention writes the output rows itself, as the combine would (the same values).
            let grid = l.attn_grid.ok_or_else(|| Error::internal("a decode plan without its attention grid"))?;
            let attn_kernel = if l.combine_grid.is_none() { DECODE_ATTN_DIRECT } else { DECODE_ATTN };
            let attn = (self.func(attn_kernel)?, grid, (DECODE_THREADS, 1, 1));
            let combine = l.combine_grid.map(|grid| self.func(DECODE_COMBINE).map(|f| (f, grid, (COMBINE_THREADS, 1, 1))));
            let combine = combine.transpose()?;
            for (f, grid, block) in std::iter::once(attn).chain(combine) {
                if self.pdl {
                    launch_dependent(f, grid, block, s, &p)?;
                } else {
                    launch(f, grid, block, 0, s, &p)?;
                }
            }
        }
        Ok(())
    }

    /// # Safety
    /// As for `prefill`.
    pub unsafe fn merge(&self, _cfg: &Config, m: &MergeArgs, stream: usize) -> Result<()> {
        let _bound = self.dev.bind()?;
        let p = MergeParams {
            o_a: m.a.addr as u64,
            lse_a: m.lse_a.addr as u64,
            o_b: m.b.addr as u64,
            lse_b: m.lse_b.addr as u64,
            o_out: m.out.addr as u64,
            lse_out: m.lse_out.map_or(0, |l| l.addr as u64),
            a_tok_stride: m.a.row_stride as i64,
            a_head_stride: m.a.head_stride as i64,
            b_tok_stride: m.b.row_stride as i64,
            b_head_stride: m.b.head_stride as i64,
            out_tok_stride: m.out.row_stride as i64,
            out_head_stride: m.out.head_stride as i64,
            num_tokens: m.a.rows as i32,
            num_heads: m.a.heads as i32,
        };
        let grid = (m.a.rows as u32, m.a.heads.div_ceil(MERGE_HEADS_PER_CTA) as u32, 1);
        // SAFETY: as in prefill, for hip_merge_params.
        unsafe { launch(self.func(MERGE)?, grid, (MERGE_THREADS, 1, 1), 0, stream as CUstream, &p) }?;
        Ok(())
    }

    #[cfg(any(test, feature = "internals"))]
    /// Compiles the layout kernel that src/contract.rs generates for its parameter blocks, runs it on `stream`
    /// and waits for it (tests compare its output with `contract::expected_layout()`, the Rust layout). It is not
    /// part of the context's module, so the kernels an engine runs do not carry it.
    ///
    /// # Safety
    /// `out` is device memory for `contract::expected_layout().len()` u64s.
    pub unsafe fn launch_layout_kernel(&self, out: u64, stream: usize) -> Result<()> {
        let header = contract::header_text();
        let source = contract::layout_kernel_source();
        let sources = [("layout.cu", source.as_str()), ("hip_contract.h", header.as_str())];
        let cubin = super::compile_cubin("layout.cu", &sources, &["-std=c++17".into()], &self.dev.info().arch)?;
        let module = KernelModule::load(&self.dev, &cubin, &[contract::LAYOUT_KERNEL_NAME])?;
        let func = module.func(0).ok_or_else(|| Error::internal("the layout kernel was not loaded"))?;
        let _bound = self.dev.bind()?;
        // SAFETY: hip_params_layout takes one u64 pointer argument, a buffer the caller provides. The module is
        // unloaded only after the stream has finished the kernel (the synchronization below).
        unsafe { launch(func, (1, 1, 1), (1, 1, 1), 0, stream as CUstream, &out) }?;
        // SAFETY: the caller's stream, in the bound context.
        unsafe { cudarc::driver::sys::cuStreamSynchronize(stream as CUstream) }
            .result()
            .map_err(|e| Error::from(super::error::drv("cuStreamSynchronize", e)))?;
        drop(module);
        Ok(())
    }
}

/// The (d, head, token) tensor map of a bf16 [tokens][heads][HOPPER_HEAD_DIM] view over `tokens` rows, in boxes of
/// 64 d x 1 head x HOPPER_ROWS tokens with 128-byte swizzling: the shape hip_prefill_attn_hopper's copies and wgmma reads expect.
/// Errors where the driver refuses the view (the plan has checked alignment and strides already).
fn tensor_map(t: &crate::tensor::TensorView, tokens: usize) -> std::result::Result<CUtensorMap, CUresult> {
    use cudarc::driver::sys::{
        cuTensorMapEncodeTiled, CUtensorMapDataType, CUtensorMapFloatOOBfill, CUtensorMapInterleave,
        CUtensorMapL2promotion, CUtensorMapSwizzle,
    };
    let dims: [u64; 3] = [HOPPER_HEAD_DIM as u64, t.heads as u64, tokens as u64];
    let strides: [u64; 2] = [(t.head_stride * 2) as u64, (t.row_stride * 2) as u64];
    let boxes: [u32; 3] = [64, 1, HOPPER_ROWS as u32];
    let elem: [u32; 3] = [1, 1, 1];
    let mut map = std::mem::MaybeUninit::<CUtensorMap>::zeroed();
    // SAFETY: every array has the rank's length (strides: rank - 1) and lives across the call; the driver only
    // reads them and the address (it does not dereference it here) and writes `map`.
    let r = unsafe {
        cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
            3,
            t.addr as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            elem.as_ptr(),
            CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    if r != CUresult::CUDA_SUCCESS {
        return Err(r);
    }
    // SAFETY: initialised by the successful call.
    Ok(unsafe { map.assume_init() })
}

#[cfg(test)]
mod tests {
    use super::{
        check_supported, compile_options, compile_units, decode_search_cluster, dsearch_smem_pad,
        hopper_sparse_compiled, kernel_names, DECODE_SEARCH_WIDE_KERNEL, HOPPER_DENSE_KERNEL, HOPPER_SPARSE_KERNEL,
        K8_KERNELS, KERNELS,
    };
    use crate::status::hip_status::HIP_ATTN_STATUS_UNSUPPORTED;
    use crate::cuda::module::place_kernels;
    use crate::cuda::{CudaError, DeviceInfo};
    use crate::status::{hip_status::*, Error};
    use crate::ffi::convert::{config as validate, default_config};

    #[test]
    fn nvrtc_out_of_memory_is_out_of_memory() {
        use cudarc::nvrtc::sys::nvrtcResult as R;
        let err = |code: R| {
            Error::from(CudaError::Nvrtc { call: "nvrtcCompileProgram", code: code as i32, message: String::new() })
        };
        assert_eq!(err(R::NVRTC_ERROR_OUT_OF_MEMORY).status, HIP_ATTN_STATUS_OUT_OF_MEMORY);
        assert_eq!(err(R::NVRTC_ERROR_INVALID_INPUT).status, HIP_ATTN_STATUS_CUDA_ERROR);
    }

    /// HIP_ATTN_FLAG_FP8_SEARCH_SCORES outside what the CUDA kernels build (head_dim 128, at most 128 rows per
    /// search) is refused as unsupported, naming the flag; within it, accepted. (The architecture is checked at
    /// context creation, where the device is known.)
    #[test]
    fn fp8_search_support_is_checked() {
        use crate::ffi::types::hip_mask_sharing::HIP_ATTN_MASK_PER_KV_HEAD as KV;
        use crate::ffi::types::HIP_ATTN_FLAG_FP8_SEARCH_SCORES as FP8;
        let cfg = |edit: &dyn Fn(&mut crate::ffi::types::hip_config)| {
            let mut raw = default_config();
            (raw.num_q_heads, raw.num_kv_heads, raw.flags) = (32, 8, FP8);
            edit(&mut raw);
            // SAFETY: default_config leaves kernel_cache_dir NULL, which validate accepts.
            unsafe { validate(&raw) }.unwrap().0
        };
        assert!(check_supported(&cfg(&|_| ())).is_ok());
        // 32 rows x a group of 4 with masks per kv head: 128, the most.
        assert!(check_supported(&cfg(&|c| c.mask_sharing = KV as u32)).is_ok());
        for (what, bad) in [
            ("head_dim 64", cfg(&|c| c.head_dim = 64)),
            ("256 rows per search", cfg(&|c| (c.mask_sharing, c.bq) = (KV as u32, 64))),
            ("132 rows per search", cfg(&|c| (c.mask_sharing, c.bq) = (KV as u32, 33))),
        ] {
            let e = check_supported(&bad).expect_err(what);
            assert_eq!(e.status, HIP_ATTN_STATUS_UNSUPPORTED, "{what}");
            assert!(e.message.contains("HIP_ATTN_FLAG_FP8_SEARCH_SCORES"), "{what}: {}", e.message);
        }
    }

    #[test]
    fn compile_units_hold_every_kernel_once() {
        use crate::ffi::types::hip_dtype::{HIP_ATTN_DTYPE_BF16 as BF16, HIP_ATTN_DTYPE_F16 as F16};
        use crate::ffi::types::hip_mask_sharing::{HIP_ATTN_MASK_PER_KV_HEAD as KV, HIP_ATTN_MASK_PER_Q_HEAD as Q};
        use crate::ffi::types::HIP_ATTN_FLAG_BATCH_INVARIANT as INVARIANT;
        use crate::ffi::types::HIP_ATTN_FLAG_FP8_SEARCH_SCORES as FP8;
        // (arch, dtype, head_dim, bq, mask sharing, flags, Hopper dense kernel compiled, decode step kernel
        // compiled); the Hopper block-sparse kernel is compiled with the dense one where bq <= 64.
        let cases = [
            ("sm_90a", BF16, 128, 32, Q, 0, true, true),
            ("sm_90a", BF16, 128, 32, Q, FP8, true, true),
            ("sm_90a", F16, 128, 32, KV, FP8, false, false),
            ("sm_90a", BF16, 128, 64, KV, 0, true, false),
            ("sm_90a", BF16, 128, 65, Q, 0, true, true),
            ("sm_90a", BF16, 128, 1, Q, INVARIANT, true, false),
            ("sm_90a", F16, 128, 32, Q, 0, false, true),
            ("sm_90a", BF16, 64, 32, Q, 0, false, true),
            ("sm_80", BF16, 128, 32, Q, 0, false, true),
            ("sm_80", BF16, 128, 32, KV, 0, false, false),
        ];
        for (arch, dtype, head_dim, bq, sharing, flags, hopper, step) in cases {
            let mut raw = default_config();
            (raw.dtype, raw.head_dim, raw.num_q_heads, raw.num_kv_heads, raw.bq) = (dtype as u32, head_dim, 32, 8, bq);
            (raw.mask_sharing, raw.flags) = (sharing as u32, flags);
            // SAFETY: default_config leaves kernel_cache_dir NULL, which validate accepts.
            let cfg = unsafe { validate(&raw) }.unwrap().0;
            let names = kernel_names(&cfg, arch);
            let fp8 = flags & FP8 != 0;
            let sparse = hopper && bq <= 64;
            assert_eq!(hopper_sparse_compiled(&cfg, arch), sparse);
            let want = KERNELS.len() + hopper as usize + sparse as usize + 2 * fp8 as usize;
            assert_eq!(names.len(), want, "{arch} {dtype:?} {head_dim} bq {bq}");
            assert_eq!(names.contains(&HOPPER_DENSE_KERNEL), hopper);
            assert_eq!(names.contains(&HOPPER_SPARSE_KERNEL), sparse);
            // The FP8-scored search: its copy kernels, and its -D option only with the flag (the default modules'
            // options, so their kernel-cache keys, stay what they were).
            assert!(K8_KERNELS.iter().all(|k| names.contains(k) == fp8));
            assert_eq!(compile_options(&cfg, arch).contains(&"-DHIP_FP8_SEARCH=1".to_string()), fp8);
            assert!(!compile_options(&cfg, arch).iter().any(|o| o == "-DHIP_FP8_SEARCH=0"));
            // The cluster decode kernel: the whole step for masks of one q head, the search alone for shared masks
            // and batch-invariant decode.
            assert_eq!(names.contains(&"hip_decode_step_wide"), step);
            assert_eq!(names.contains(&DECODE_SEARCH_WIDE_KERNEL), !step);
            assert!(compile_options(&cfg, arch).contains(&format!("-DHIP_DECODE_STEP={}", step as i32)));
            // One compiling thread: one program of every kernel, as before the split.
            let single = compile_units(&cfg, arch, 1);
            assert_eq!(single.len(), 1);
            assert_eq!(single[0].names, names);
            assert!(single[0].partners.is_empty());
            assert!(!single[0].options.iter().any(|o| o.starts_with("-DHIP_ONLY") || o.starts_with("-DHIP_WANT_")));
            place_kernels(&single, &names).unwrap_or_else(|e| panic!("{arch} {dtype:?} {head_dim}: {e}"));
            let units = compile_units(&cfg, arch, 16);
            place_kernels(&units, &names).unwrap_or_else(|e| panic!("{arch} {dtype:?} {head_dim}: {e}"));
            for unit in &units {
                // The options select exactly the unit's kernels and partners, after the configuration's own.
                let wants: Vec<&str> =
                    unit.options.iter().filter_map(|o| o.strip_prefix("-DHIP_WANT_")?.strip_suffix("=1")).collect();
                let mut expect: Vec<&str> = unit.names.iter().chain(&unit.partners).copied().collect();
                expect.sort();
                let mut got = wants.clone();
                got.sort();
                assert_eq!(got, expect);
                assert!(unit.options.contains(&"-DHIP_ONLY=1".to_string()));
                assert!(unit.partners.iter().all(|p| names.contains(p) && !unit.names.contains(p)));
            }
            let mut keys: Vec<&Vec<String>> = units.iter().map(|u| &u.options).collect();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), units.len(), "every unit has its own options, so its own cache entry");
        }
    }

    fn device(smem_per_sm: i32) -> DeviceInfo {
        DeviceInfo {
            ordinal: 0,
            name: "test".into(),
            cc_major: 9,
            cc_minor: 0,
            sm_count: 132,
            max_smem_per_block: 48 << 10,
            max_smem_per_block_optin: 227 << 10,
            l2_bytes: 50 << 20,
            smem_per_sm,
            smem_reserved_per_block: 1024,
            can_map_host_memory: true,
            arch: "sm_90a".into(),
        }
    }

    #[test]
    fn decode_search_pad_leaves_room_for_four_ctas_not_five() {
        let hopper = device(228 << 10);
        for static_smem in [40_000, 44_576, 45_000] {
            let pad = dsearch_smem_pad(&hopper, static_smem) as i32;
            let per_cta = static_smem + pad + 1024;
            assert_eq!(hopper.smem_per_sm / per_cta, 4, "static {static_smem}: pad {pad}");
            assert_eq!(pad % 128, 0);
        }
        assert_eq!(dsearch_smem_pad(&hopper, 46_000), 0, "already at most 4 per SM");
        // Ampere (A100: 164 KiB per SM): 3 CTAs of ~45 KB fit anyway.
        assert_eq!(dsearch_smem_pad(&device(164 << 10), 44_576), 0);
        // A pad past the 48 KiB a CTA gets without opting in is not taken.
        assert_eq!(dsearch_smem_pad(&device(400 << 10), 30_000), 0);
    }

    #[test]
    fn decode_search_uses_clusters_from_sm_90() {
        for (arch, cl) in
            [("sm_80", 1), ("sm_86", 1), ("sm_89", 1), ("sm_90", 8), ("sm_90a", 8), ("sm_100a", 8), ("sm_120", 8)]
        {
            assert_eq!(decode_search_cluster(arch), cl, "{arch}");
        }
        assert_eq!(decode_search_cluster("compute_90"), 1, "not a real architecture: no cluster");
    }
}

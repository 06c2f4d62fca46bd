//! CUDA runtime layer: safe loading of libcuda and libnvrtc, NVRTC compilation to cubin with an on-disk cache,
//! module loading, allocation-free kernel launch on the caller's stream, and the mapped device error flag.
//!
//! Built on cudarc 0.19.10 (features driver + nvrtc + dynamic-loading + cuda-13000), using its `result`/`sys`
//! layers only, except for `CudaContext::new`, which retains the primary context.
//!
//! Context creation (once per hip-attn context):
//!
//! 1. `loader::ensure_libraries()`: LibraryMissing instead of a cudarc panic.
//! 2. `CudaDevice::new(ordinal, None)`: primary context, properties, cubin arch.
//! 3. `KernelSet::build(&dev, &cache_cfg, main, sources, units, names, &log)`: per unit (an NVRTC program of some
//!    of the kernels) the cache, else NVRTC (the missing units compiled at once, on threads), then one module
//!    per unit (`KernelModule::load`), with every function resolved up front.
//! 4. `set.set_max_dynamic_smem(i, bytes)` for kernels above 48 KiB of shared memory.
//! 5. `MappedFlag::new(&dev)`: error flag; put `flag.device_ptr()` in the params.
//!
//! Run path (every call; no allocation):
//!
//! 1. `let _g = dev.bind()?;`
//! 2. fill a params struct on the stack;
//! 3. `unsafe { launch(f, grid, block, smem, caller_stream, &params) }?` for each kernel; return.
//!
//! Later (after the caller synchronized): `flag.read()`, `flag.clear()`.
//!
//! Destruction: drop modules and flag (any order; each keeps the context alive), then the device.

pub mod backend;
// The runtime layer (modules below) is general: some of its functions serve only this repository's tests and
// tools, which reach them with the `internals` feature.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub mod cache;
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub mod compile;
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub mod device;
pub mod error;
pub mod flag;
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub mod launch;
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub mod loader;
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub mod module;
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub mod params;

pub use backend::CudaBackend;
pub use cache::{CacheConfig, CacheOutcome, LogLevel};
pub use device::{CudaDevice, DeviceInfo};
pub use error::CudaError;
pub use flag::MappedFlag;
pub use launch::{launch, launch_dependent};
pub use loader::ensure_libraries;
pub use module::{KernelModule, KernelSet, Unit};
pub use params::{DecodeParams, MergeParams, PrefillParams};
#[cfg(feature = "internals")]
pub use {
    cache::CacheKey,
    compile::{compile_cubin, compile_cubin_with_log, compile_many, nvrtc_supported_archs, nvrtc_version},
    device::{select_arch, CtxGuard, CtxHandle},
    launch::launch_args,
    loader::{ensure_driver, ensure_nvrtc},
};

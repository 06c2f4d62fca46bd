//! hip-attn: HiP attention (hierarchically pruned sparse attention, Lee et al., arXiv 2406.09827) with a stable
//! C API.
//!
//! The crate's Rust surface is that C API: the `hip_*` functions and types at the crate root, which
//! `include/hip_attn.h` declares. Everything else is internal. The cargo feature `internals` makes the internal
//! modules public for this repository's own tests and tools; it is unstable, outside semver, and not for other
//! crates.
//!
//! # Architecture
//!
//! A call goes through four layers, each taking only what the one before it validated:
//!
//! 1. `ffi` (the C shell): the `extern "C"` entry points (`ffi/mod.rs`), the C-visible types and their documented
//!    rules (`ffi/types.rs`), and `ffi/convert.rs`, the one place that reads a raw `hip_*` struct and turns it into
//!    a validated Rust value: `hip_config` into `config::Config`, `hip_prefill_args` into `args::PrefillArgs`
//!    (tensors into `tensor::TensorView`), and so on. No C struct goes past it.
//! 2. `context`: a `Config` bound to a backend. Each run call builds its plan, checks the caller's workspace
//!    against it, and hands the plan and the arguments to the backend.
//! 3. `plan`: everything decided per call shape, each in exactly one function: the workspace layouts and sizes
//!    (which the size queries return), the mask-state record size, the decode and SCAN split counts, the kernel
//!    choice, the dense-only decision and the launch grids. FlashInfer's plan/run split: plan once per shape, run
//!    many times.
//! 4. The backends: `cpu` (the exact reference, the oracle for everything) and `cuda`, which copies the
//!    configuration, the arguments and the plan into a parameter block (`contract.rs`: the parameter blocks,
//!    record layout, error bits and geometry, defined once; the kernels' header `cuda/generated/hip_contract.h` is
//!    generated from it) and launches kernels compiled for the configuration (`cuda::backend::compile_options`
//!    turns its fields into -D options).
//!
//! Following a field, `hip_config.window` say: `ffi::convert::config` checks its range into `Config::window`;
//! `plan` uses it for the dense-only decision and the decode split rule; `cpu` gives it to `spec::BlockKeys`
//! (docs/ALGORITHM.md's key sets); `cuda::CudaBackend` writes it into the `window` field of the parameter blocks
//! that the kernels in `cuda/*.cuh` read. Fields that shape the kernels themselves (head_dim, bq, bk, Kb, sq, sk,
//! the GQA group, mask sharing, causal) reach them as compile-time constants instead.
//!
//! Other modules: `status` (status codes and error messages), `spec` (docs/ALGORITHM.md's key sets and tree search
//! as plain functions, shared by the CPU backend and the tests).

/// Declares internal modules: public with the `internals` feature, private without it.
macro_rules! internal_modules {
    ($($(#[$m:meta])* $name:ident;)*) => {
        $(
            $(#[$m])*
            #[cfg(feature = "internals")]
            pub mod $name;
            $(#[$m])*
            #[cfg(not(feature = "internals"))]
            mod $name;
        )*
    };
}

internal_modules! {
    args;
    config;
    context;
    contract;
    cpu;
    cuda;
    ffi;
    plan;
    spec;
    status;
    tensor;
}

pub use ffi::types::*;
pub use ffi::*;
pub use status::hip_status;

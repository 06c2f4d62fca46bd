//! hip-attn: HiP attention (hierarchically pruned sparse attention, Lee et al., arXiv 2406.09827) with a stable
//! C API.
//!
//! The tree shows the architecture:
//! - `ffi`: the C shell (`extern "C"` entry points and the C-visible types), thin and audited.
//! - `status`: status codes and error messages. `config`: configuration validation. `tensor`: tensor
//!   descriptors and element conversion. `args`: run-call argument validation. `plan`: buffer layouts.
//! - `contract`: the Rust-CUDA contract (parameter blocks, record layout, error bits, geometry), defined once;
//!   the kernels' header cuda/generated/hip_contract.h is generated from it.
//! - `spec`: docs/ALGORITHM.md's key sets and tree search as plain functions.
//! - `context`: the safe core that binds a configuration to a backend.
//! - `cpu`: the exact CPU reference backend. `cuda`: the CUDA backend (kernels in `cuda/`).

pub mod args;
pub mod config;
pub mod context;
pub mod contract;
pub mod cpu;
pub mod cuda;
pub mod ffi;
pub mod plan;
pub mod spec;
pub mod status;
pub mod tensor;

pub use ffi::types::*;
pub use ffi::*;
pub use status::hip_status;

//! The kernel parameter blocks and their layout check, as defined in src/contract.rs (the one definition, from
//! which cuda/generated/hip_contract.h is generated); re-exported here for the CUDA backend and its tests.

pub use crate::contract::{
    expected_layout, layout_kernel_source, DecodeParams, MergeParams, PrefillParams, BLOCKS, LAYOUT_KERNEL_NAME,
};

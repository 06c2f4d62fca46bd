//! Temporary stand-in for the CUDA backend while it is being integrated.
use crate::args::{Buffer, DecodeArgs, MergeArgs, PrefillArgs};
use crate::config::{Config, CreateOptions};
use crate::status::{hip_status, Error, Result};
pub struct CudaBackend;
impl CudaBackend {
    pub fn new(_: &Config, _: i32, _: &CreateOptions) -> Result<Self> {
        Err(Error::new(hip_status::HIP_ATTN_STATUS_CUDA_UNAVAILABLE, "the CUDA backend is not built yet"))
    }
    pub unsafe fn prefill(&self, _: &Config, _: &PrefillArgs, _: Buffer, _: usize) -> Result<()> { unreachable!() }
    pub unsafe fn decode(&self, _: &Config, _: &DecodeArgs, _: Buffer, _: usize) -> Result<()> { unreachable!() }
    pub unsafe fn merge(&self, _: &Config, _: &MergeArgs, _: usize) -> Result<()> { unreachable!() }
}

//! Device memory for the GPU tests (tests/gpu.rs, tests/gpu_fuzz.rs): allocations and copies through the driver
//! API, on a non-blocking stream of the device's primary context (the caller's stream from the library's point of
//! view). Test binaries without a GPU never call `open`.

use super::{Buf, Mem};
use cudarc::driver::{result, sys, CudaContext};
use hip_attn::hip_backend;
use std::ffi::c_void;
use std::sync::Arc;

pub struct Gpu {
    _ctx: Arc<CudaContext>,
    stream: sys::CUstream,
    /// Whatever the test holds for as long as the device is in use (tests/gpu.rs: a guard of its device-memory
    /// lock).
    _guard: Box<dyn std::any::Any>,
}

/// A device allocation, freed on drop.
pub struct DevAlloc(pub sys::CUdeviceptr);
impl Drop for DevAlloc {
    fn drop(&mut self) {
        // SAFETY: allocated by malloc_sync, freed once; the tests synchronize before dropping buffers.
        unsafe { result::free_sync(self.0) }.unwrap();
    }
}

impl Mem for Gpu {
    fn upload(&self, bytes: &[u8]) -> Buf {
        // SAFETY: a fresh allocation of at least bytes.len() bytes, then a synchronous copy into it.
        let p = unsafe { result::malloc_sync(bytes.len().max(16)) }.unwrap();
        // SAFETY: p spans bytes.len() bytes.
        unsafe { result::memcpy_htod_sync(p, bytes) }.unwrap();
        Buf::new(p as usize, bytes.len(), Box::new(DevAlloc(p)))
    }
    fn download(&self, b: &Buf) -> Vec<u8> {
        self.sync();
        let mut out = vec![0u8; b.bytes];
        // SAFETY: b spans b.bytes of device memory.
        unsafe { result::memcpy_dtoh_sync(&mut out, b.addr as sys::CUdeviceptr) }.unwrap();
        out
    }
    fn stream(&self) -> *mut c_void {
        self.stream as *mut c_void
    }
    fn sync(&self) {
        // SAFETY: the stream lives as long as self.
        unsafe { result::stream::synchronize(self.stream) }.unwrap();
    }
    fn backend(&self) -> u32 {
        hip_backend::HIP_ATTN_BACKEND_CUDA as u32
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        self.sync();
        // SAFETY: created in open(), destroyed once.
        unsafe { result::stream::destroy(self.stream) }.unwrap();
    }
}

/// Why there is no device to test on (no driver, or no device), if so.
pub fn find() -> Result<(), String> {
    hip_attn::cuda::ensure_driver().map_err(|e| format!("GPU not found ({e})"))?;
    if result::init().is_err() || result::device::get_count().map_or(true, |n| n == 0) {
        return Err("GPU not found (the CUDA driver reports no device)".into());
    }
    Ok(())
}

/// Device 0 with its own stream, holding `guard` while it lives; or why there is no device.
pub fn open(guard: Box<dyn std::any::Any>) -> Result<Gpu, String> {
    find()?;
    let ctx = CudaContext::new(0).map_err(|e| format!("{e:?}"))?;
    ctx.bind_to_thread().map_err(|e| format!("{e:?}"))?;
    let stream = result::stream::create(result::stream::StreamKind::NonBlocking).map_err(|e| format!("{e:?}"))?;
    Ok(Gpu { _ctx: ctx, stream, _guard: guard })
}

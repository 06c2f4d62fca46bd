//! Device error flag: one u32 of pinned host memory mapped into the device's address space. Kernels OR
//! HIP_ATTN_DEVERR_* bits into it (atomicOr through the device pointer, a system-scope write over the bus); the
//! host reads it at any time without synchronizing, e.g. after the caller has synchronized its stream.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use cudarc::driver::result;
use cudarc::driver::sys::{self, CUdeviceptr};

use super::device::{CtxHandle, CudaDevice};
use super::error::{drv, drv_alloc, CudaError};

/// One mapped, pinned u32. Freed on drop.
pub struct MappedFlag {
    host: NonNull<u32>,
    dev: CUdeviceptr,
    ctx: CtxHandle,
}

// SAFETY: the pinned allocation is process-wide (PORTABLE) and accessed only through atomic operations, so any
// thread may read or clear it; the context it was allocated in is kept alive by `ctx`.
unsafe impl Send for MappedFlag {}
// SAFETY: as above: every access through &self is atomic.
unsafe impl Sync for MappedFlag {}

impl MappedFlag {
    /// Allocates the flag (cuMemHostAlloc DEVICEMAP | PORTABLE), zeroes it, and gets its device address.
    pub fn new(dev: &CudaDevice) -> Result<MappedFlag, CudaError> {
        if !dev.info().can_map_host_memory {
            return Err(CudaError::InvalidArgument { what: "device cannot map host memory".into() });
        }
        let _g = dev.bind()?;
        let bytes = std::mem::size_of::<u32>();
        // SAFETY: the context is current. The returned memory is uninitialised; it is zeroed below before any
        // read. cuMemHostAlloc returns page-aligned memory, so it is aligned for u32/AtomicU32.
        let p = unsafe { result::malloc_host(bytes, sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE) }
            .map_err(|e| drv_alloc("cuMemHostAlloc", "device error flag", bytes, e))?;
        let Some(host) = NonNull::new(p as *mut u32) else {
            return Err(CudaError::OutOfMemory { what: "device error flag", bytes });
        };
        // SAFETY: `host` points to 4 writable, aligned bytes we own; no device work can see it yet.
        unsafe { host.as_ptr().write_volatile(0) };
        let mut dptr: CUdeviceptr = 0;
        // SAFETY: `host` was allocated with DEVICEMAP in the current context; `dptr` is a valid out-pointer.
        let got = unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dptr, host.as_ptr() as *mut c_void, 0) }.result();
        if let Err(e) = got {
            // SAFETY: `host` came from cuMemHostAlloc above and is freed once, on this error path only.
            let _ = unsafe { result::free_host(host.as_ptr() as *mut c_void) };
            return Err(drv("cuMemHostGetDevicePointer", e));
        }
        Ok(MappedFlag { host, dev: dptr, ctx: dev.handle().clone() })
    }

    /// Device address to put in the kernel parameter block (`error_flag` field).
    #[inline]
    pub fn device_ptr(&self) -> u64 {
        self.dev
    }

    #[inline]
    fn atom(&self) -> &AtomicU32 {
        // SAFETY: `host` is a live, 4-byte aligned allocation owned by self for as long as &self lives; all host
        // accesses go through this atomic, and the device only writes it with atomic read-modify-writes.
        unsafe { AtomicU32::from_ptr(self.host.as_ptr()) }
    }

    /// Current bits. A plain (atomic acquire) load of host memory: no driver call, no synchronization. Bits
    /// from kernels still running may or may not be visible yet: synchronize the stream first for a final answer.
    #[inline]
    pub fn read(&self) -> u32 {
        self.atom().load(Ordering::Acquire)
    }

    /// Sets the flag back to 0. Bits OR-ed by kernels still in flight at that moment may be lost: clear only when
    /// no kernel that writes the flag is running (e.g. after reading it once the stream is synchronized).
    #[inline]
    pub fn clear(&self) {
        self.atom().store(0, Ordering::Release)
    }
}

impl Drop for MappedFlag {
    fn drop(&mut self) {
        let g = self.ctx.bind();
        // SAFETY: `host` came from cuMemHostAlloc and is freed exactly once, here. The owner guarantees no kernel
        // using the device pointer is still running (documented on the owning context's destroy call).
        let _ = unsafe { result::free_host(self.host.as_ptr() as *mut c_void) };
        drop(g);
    }
}

//! One GPU: its primary context, its properties, and the cubin architecture to compile for.
//!
//! Context hygiene: this is a library living in someone else's process (PyTorch, an inference engine) that uses
//! the CUDA runtime on the same threads. We retain the device's PRIMARY context (the one the runtime uses, so
//! pointers and streams from the caller are valid in it) and never leave a different context current on the
//! caller's thread: [`CtxHandle::bind`] returns a guard that restores whatever was current before, and creation
//! and destruction restore it too.

use std::ffi::c_char;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use cudarc::driver::result;
use cudarc::driver::sys::{self, CUcontext, CUdevice_attribute};
use cudarc::driver::CudaContext;

use super::compile::{nvrtc_supported_archs, nvrtc_version};
use super::error::{drv, CudaError};
use super::loader::ensure_libraries;

/// A shared reference to a retained primary context. Cloned into every object that needs the context alive
/// (modules, mapped memory), so the context outlives them whatever order the owner drops things in.
pub struct CtxHandle {
    ctx: ManuallyDrop<Arc<CudaContext>>,
    raw: CUcontext,
}

// SAFETY: a CUcontext handle may be used from any thread (the driver API is thread-safe; "current" is per
// thread, and bind() sets it on the calling thread). Arc<CudaContext> is itself Send + Sync.
unsafe impl Send for CtxHandle {}
// SAFETY: as above; no method takes &self and mutates shared state without the driver's own locking.
unsafe impl Sync for CtxHandle {}

impl Clone for CtxHandle {
    fn clone(&self) -> Self {
        CtxHandle { ctx: ManuallyDrop::new(Arc::clone(&self.ctx)), raw: self.raw }
    }
}

impl Drop for CtxHandle {
    fn drop(&mut self) {
        // The last Arc drop releases the primary context, and cudarc's Drop makes it current first without
        // restoring: remember what the caller had and put it back.
        let prev = current_raw();
        // SAFETY: self.ctx is dropped exactly once, here, and never used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.ctx) };
        if let Some(prev) = prev {
            if prev != self.raw {
                // SAFETY: `prev` was current on this thread a moment ago, so it is a live context (or null,
                // which unbinds). Failures are ignored: nothing useful can be done about them in a destructor.
                let _ = unsafe { result::ctx::set_current(prev) };
            }
        }
    }
}

/// Current context of the calling thread (Some(null) when none); None if the query itself failed.
fn current_raw() -> Option<CUcontext> {
    match result::ctx::get_current() {
        Ok(Some(c)) => Some(c),
        Ok(None) => Some(std::ptr::null_mut()),
        Err(_) => None,
    }
}

/// Restores the previously current context when dropped. Not Send: contexts are current per thread.
#[must_use = "the context is only bound while the guard lives"]
pub struct CtxGuard<'a> {
    prev: Option<CUcontext>,
    _not_send: PhantomData<(*const (), &'a ())>,
}

impl Drop for CtxGuard<'_> {
    fn drop(&mut self) {
        if let Some(prev) = self.prev {
            // SAFETY: `prev` was current on this thread when the guard was made and the guard cannot leave the
            // thread; it is a live context or null (null unbinds). Errors cannot be reported from a destructor.
            let _ = unsafe { result::ctx::set_current(prev) };
        }
    }
}

impl CtxHandle {
    /// Makes this context current on the calling thread until the guard drops (then the previous one is
    /// restored). Cost when it is already current (the common case: the caller's runtime uses the same primary
    /// context): one cuCtxGetCurrent. Otherwise two cuCtxSetCurrent in all. Never allocates.
    #[inline]
    pub fn bind(&self) -> Result<CtxGuard<'_>, CudaError> {
        let mut cur: CUcontext = std::ptr::null_mut();
        // SAFETY: the driver is loaded and initialised (a CtxHandle only exists after ensure_driver and a
        // successful context retain); `cur` is a valid out-pointer.
        unsafe { sys::cuCtxGetCurrent(&mut cur) }.result().map_err(|e| drv("cuCtxGetCurrent", e))?;
        if cur == self.raw {
            return Ok(CtxGuard { prev: None, _not_send: PhantomData });
        }
        // SAFETY: self.raw is a primary context retained by self.ctx, so it stays alive while `self` does.
        unsafe { result::ctx::set_current(self.raw) }.map_err(|e| drv("cuCtxSetCurrent", e))?;
        Ok(CtxGuard { prev: Some(cur), _not_send: PhantomData })
    }

    /// The raw context (owned by this handle: never destroy or release it).
    pub fn raw(&self) -> CUcontext {
        self.raw
    }

    /// The cudarc context, for using cudarc's safe API (e.g. `wrap_borrowed_stream`).
    pub fn cudarc(&self) -> &Arc<CudaContext> {
        &self.ctx
    }
}

/// Properties read once at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub ordinal: i32,
    pub name: String,
    pub cc_major: i32,
    pub cc_minor: i32,
    pub sm_count: i32,
    /// Shared memory per block without opt-in (48 KiB).
    pub max_smem_per_block: i32,
    /// Shared memory per block with opt-in (cuFuncSetAttribute MAX_DYNAMIC_SHARED_SIZE_BYTES), e.g. 227 KiB.
    pub max_smem_per_block_optin: i32,
    pub l2_bytes: i32,
    /// Shared memory per SM (228 KiB on Hopper), and what the driver reserves of it for every resident CTA.
    pub smem_per_sm: i32,
    pub smem_reserved_per_block: i32,
    pub can_map_host_memory: bool,
    /// Cubin target: "sm_90a", "sm_80", ...
    pub arch: String,
}

/// A GPU with its retained primary context.
pub struct CudaDevice {
    ctx: CtxHandle,
    info: DeviceInfo,
}

impl CudaDevice {
    /// Retains the primary context of device `ordinal` and reads its properties. `arch_override` replaces the
    /// automatic choice of [`select_arch`] (it must be an "sm_..." target the device can run).
    /// Leaves the calling thread's current context as it was.
    pub fn new(ordinal: i32, arch_override: Option<&str>) -> Result<CudaDevice, CudaError> {
        ensure_libraries()?;
        let count = result::device::get_count().map_err(|e| drv("cuDeviceGetCount", e))?;
        if ordinal < 0 || ordinal >= count {
            return Err(CudaError::DeviceOrdinal { ordinal, count });
        }
        let prev = current_raw();
        let created = catch_unwind(AssertUnwindSafe(|| CudaContext::new(ordinal as usize)));
        // CudaContext::new binds the new context to this thread: put the caller's back (below, on all paths).
        let restore = |prev: Option<CUcontext>| {
            if let Some(p) = prev {
                // SAFETY: `p` was current on this thread just before, so it is live (or null: unbind).
                let _ = unsafe { result::ctx::set_current(p) };
            }
        };
        let ctx = match created {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                restore(prev);
                return Err(drv("cuDevicePrimaryCtxRetain", e));
            }
            Err(_) => {
                restore(prev);
                return Err(CudaError::Panic { what: "CudaContext::new".into() });
            }
        };
        let raw = ctx.cu_ctx();
        let handle = CtxHandle { ctx: ManuallyDrop::new(ctx), raw };
        let info = Self::query(&handle, ordinal, arch_override);
        restore(prev);
        // On error `handle` drops here, releasing the primary context (and restoring the current one).
        Ok(CudaDevice { ctx: handle, info: info? })
    }

    fn query(handle: &CtxHandle, ordinal: i32, arch_override: Option<&str>) -> Result<DeviceInfo, CudaError> {
        let dev = handle.cudarc().cu_device();
        let attr = |a: CUdevice_attribute| -> Result<i32, CudaError> {
            // SAFETY: `dev` came from cuDeviceGet inside CudaContext::new and the driver is initialised.
            unsafe { result::device::get_attribute(dev, a) }.map_err(|e| drv("cuDeviceGetAttribute", e))
        };
        use CUdevice_attribute::*;
        let cc_major = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let cc_minor = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        if cc_major < 8 {
            return Err(CudaError::UnsupportedArch { major: cc_major, minor: cc_minor });
        }
        let mut buf = [0u8; 256];
        // SAFETY: `buf` is writable for the length passed; the driver writes a NUL-terminated name (truncated
        // to fit). The terminator is searched below rather than assumed.
        unsafe { sys::cuDeviceGetName(buf.as_mut_ptr() as *mut c_char, buf.len() as i32, dev) }
            .result()
            .map_err(|e| drv("cuDeviceGetName", e))?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..end]).into_owned();
        let arch = match arch_override {
            Some(a) if a.starts_with("sm_") && a.len() > 3 => a.to_string(),
            Some(a) => {
                return Err(CudaError::InvalidArgument { what: format!("architecture override {a:?} is not sm_XY") })
            }
            None => select_arch(cc_major, cc_minor)?,
        };
        Ok(DeviceInfo {
            ordinal,
            name,
            cc_major,
            cc_minor,
            sm_count: attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
            max_smem_per_block: attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK)?,
            max_smem_per_block_optin: attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?,
            l2_bytes: attr(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?,
            smem_per_sm: attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR)?,
            smem_reserved_per_block: attr(CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK)?,
            can_map_host_memory: attr(CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY)? != 0,
            arch,
        })
    }

    /// See [`CtxHandle::bind`]. Call at the start of every entry point that touches the GPU.
    #[inline]
    pub fn bind(&self) -> Result<CtxGuard<'_>, CudaError> {
        self.ctx.bind()
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// A handle keeping the context alive (for objects that must outlive a borrow of the device).
    pub fn handle(&self) -> &CtxHandle {
        &self.ctx
    }
}

/// The cubin target for compute capability `major.minor`, given the loaded NVRTC. Needs only NVRTC.
pub fn select_arch(major: i32, minor: i32) -> Result<String, CudaError> {
    if major < 8 {
        return Err(CudaError::UnsupportedArch { major, minor });
    }
    let supported = nvrtc_supported_archs()?;
    let nv = nvrtc_version()?;
    select_arch_from(major, minor, &supported, nv)
}

/// Pure part of [`select_arch`]: 9.0 -> sm_90a; 10.0 -> sm_100a when NVRTC lists 100; otherwise sm_XY when
/// NVRTC lists it, else the newest listed sm_XZ of the same major with Z <= Y (a cubin runs on later minors of
/// its major); below 8.0 -> UnsupportedArch; nothing usable -> ArchNotSupportedByNvrtc.
pub fn select_arch_from(major: i32, minor: i32, supported: &[i32], nvrtc: (i32, i32)) -> Result<String, CudaError> {
    if major < 8 || !(0..=9).contains(&minor) {
        return Err(CudaError::UnsupportedArch { major, minor });
    }
    let cc = major * 10 + minor;
    if (major, minor) == (9, 0) && supported.contains(&90) {
        return Ok("sm_90a".into());
    }
    if (major, minor) == (10, 0) && supported.contains(&100) {
        return Ok("sm_100a".into());
    }
    if supported.contains(&cc) {
        return Ok(format!("sm_{cc}"));
    }
    match supported.iter().copied().filter(|&s| s / 10 == major && s <= cc && s >= 80).max() {
        Some(s) => Ok(format!("sm_{s}")),
        None => Err(CudaError::ArchNotSupportedByNvrtc { major, minor, nvrtc_major: nvrtc.0, nvrtc_minor: nvrtc.1 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NV13: &[i32] = &[75, 80, 86, 87, 88, 89, 90, 100, 103, 110, 120, 121];

    #[test]
    fn arch_choice() {
        let s = |maj, min, sup: &[i32]| select_arch_from(maj, min, sup, (13, 0));
        assert_eq!(s(8, 0, NV13).unwrap(), "sm_80");
        assert_eq!(s(8, 6, NV13).unwrap(), "sm_86");
        assert_eq!(s(8, 9, NV13).unwrap(), "sm_89");
        assert_eq!(s(9, 0, NV13).unwrap(), "sm_90a");
        assert_eq!(s(10, 0, NV13).unwrap(), "sm_100a");
        assert_eq!(s(12, 0, NV13).unwrap(), "sm_120");
        // NVRTC without the exact minor: newest lower minor of the same major.
        assert_eq!(s(8, 9, &[80, 86, 90]).unwrap(), "sm_86");
        // 10.0 with an NVRTC that lacks sm_100: no cubin possible (sm_90 cubins do not run on 10.x).
        assert!(matches!(s(10, 0, &[80, 86, 89, 90]), Err(CudaError::ArchNotSupportedByNvrtc { .. })));
        assert!(matches!(s(7, 5, NV13), Err(CudaError::UnsupportedArch { major: 7, minor: 5 })));
        assert!(matches!(s(6, 1, NV13), Err(CudaError::UnsupportedArch { .. })));
        assert!(matches!(s(8, 12, NV13), Err(CudaError::UnsupportedArch { .. })));
    }

    #[test]
    fn select_arch_with_real_nvrtc() {
        if !crate::cuda::compile::tests::nvrtc_available() {
            return;
        }
        assert_eq!(select_arch(9, 0).unwrap(), "sm_90a");
        assert_eq!(select_arch(8, 0).unwrap(), "sm_80");
        assert!(matches!(select_arch(7, 0), Err(CudaError::UnsupportedArch { .. })));
    }

    #[test]
    fn device_creation_without_driver_is_an_error() {
        // SAFETY: probe only.
        if unsafe { cudarc::driver::sys::is_culib_present() } {
            eprintln!("skipped: libcuda present (GPU machine); covered by the lead's GPU tests");
            return;
        }
        let r = std::panic::catch_unwind(|| CudaDevice::new(0, None).map(|_| ())).expect("panicked");
        assert!(matches!(r, Err(CudaError::LibraryMissing { ref library }) if library == "libcuda"), "{r:?}");
    }
}

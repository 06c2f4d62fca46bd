//! Error type of the CUDA runtime layer. Plain data: the C API layer maps each variant to a status code and
//! formats the message with `Display`.

use cudarc::driver::result::DriverError;
use cudarc::driver::sys::CUresult;
use cudarc::nvrtc::result::NvrtcError;

/// Everything the CUDA runtime layer can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CudaError {
    /// A shared library could not be loaded: `library` is "libcuda" (the driver) or "libnvrtc".
    #[error("{library} could not be loaded (not installed, or not on the library search path)")]
    LibraryMissing { library: String },

    /// A CUDA driver call failed. `code` is the CUresult value, `message` is "NAME: description" as given by
    /// cuGetErrorName / cuGetErrorString.
    #[error("CUDA driver call {call} failed with {code} ({message})")]
    Driver { call: &'static str, code: i32, message: String },

    /// An NVRTC call other than the compilation itself failed.
    #[error("NVRTC call {call} failed with {code} ({message})")]
    Nvrtc { call: &'static str, code: i32, message: String },

    /// NVRTC rejected the kernel source; `log` is the program log.
    #[error("NVRTC compilation for {arch} failed:\n{log}")]
    Compile { arch: String, log: String },

    /// The device is older than sm_80, or no cubin target exists for it in this NVRTC.
    #[error("unsupported GPU architecture: compute capability {major}.{minor} (sm_80 or newer is required)")]
    UnsupportedArch { major: i32, minor: i32 },

    /// The device is new enough, but the loaded NVRTC cannot produce a cubin for it (NVRTC too old).
    #[error("NVRTC {nvrtc_major}.{nvrtc_minor} cannot compile for compute capability {major}.{minor}")]
    ArchNotSupportedByNvrtc { major: i32, minor: i32, nvrtc_major: i32, nvrtc_minor: i32 },

    /// An allocation failed.
    #[error("out of memory allocating {bytes} bytes for {what}")]
    OutOfMemory { what: &'static str, bytes: usize },

    /// The device ordinal does not name a visible device.
    #[error("device ordinal {ordinal} is out of range ({count} devices visible)")]
    DeviceOrdinal { ordinal: i32, count: i32 },

    /// A caller-supplied value is unusable (interior NUL byte in a name, shared memory above the device limit, ...).
    #[error("invalid argument: {what}")]
    InvalidArgument { what: String },

    /// A cudarc call panicked (a library or symbol that vanished between the presence check and the call). Caught
    /// with catch_unwind; reported instead of unwinding into the caller.
    #[error("internal panic in {what}")]
    Panic { what: String },
}

/// Text for a driver error: "CUDA_ERROR_X: description". Never fails; falls back to the number.
pub(crate) fn driver_message(e: &DriverError) -> String {
    let name = e.error_name().map(|s| s.to_string_lossy().into_owned());
    let desc = e.error_string().map(|s| s.to_string_lossy().into_owned());
    match (name, desc) {
        (Ok(n), Ok(d)) => format!("{n}: {d}"),
        (Ok(n), Err(_)) => n,
        (Err(_), Ok(d)) => d,
        (Err(_), Err(_)) => format!("CUresult {}", e.0 as i32),
    }
}

/// Converts a driver error returned by `call` into [`CudaError::Driver`].
pub(crate) fn drv(call: &'static str, e: DriverError) -> CudaError {
    CudaError::Driver { call, code: e.0 as i32, message: driver_message(&e) }
}

/// Like [`drv`], but maps CUDA_ERROR_OUT_OF_MEMORY to [`CudaError::OutOfMemory`].
pub(crate) fn drv_alloc(call: &'static str, what: &'static str, bytes: usize, e: DriverError) -> CudaError {
    if e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        CudaError::OutOfMemory { what, bytes }
    } else {
        drv(call, e)
    }
}

/// Converts an NVRTC error returned by `call` into [`CudaError::Nvrtc`] (NVRTC must be loaded: only call this
/// with an error that NVRTC itself returned).
pub(crate) fn nvrtc_err(call: &'static str, e: NvrtcError) -> CudaError {
    // SAFETY: nvrtcGetErrorString accepts any nvrtcResult and returns a pointer to a static NUL-terminated
    // string (or null for values it does not know, handled below). NVRTC is loaded because it produced `e`.
    let p = unsafe { cudarc::nvrtc::sys::nvrtcGetErrorString(e.0) };
    let message = if p.is_null() {
        format!("{:?}", e.0)
    } else {
        // SAFETY: non-null, points to a static NUL-terminated string owned by libnvrtc.
        unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
    };
    CudaError::Nvrtc { call, code: e.0 as i32, message }
}

//! Safe first contact with libcuda and libnvrtc.
//!
//! cudarc (feature `dynamic-loading`) opens its libraries lazily, on the first call into them, and PANICS when a
//! library or a symbol is missing. Every path into cudarc therefore goes through [`ensure_driver`] or
//! [`ensure_nvrtc`] first; they check presence with cudarc's own probes (`is_culib_present`) and then make the
//! first real call inside `catch_unwind`, so that a missing library becomes [`CudaError::LibraryMissing`].
//!
//! How cudarc 0.19.10 finds the libraries (read from its source, `get_lib_name_candidates` in lib.rs and
//! `culib()` in driver/sys and nvrtc/sys): there is NO environment variable of its own. It calls
//! `libloading::Library::new(name)` (dlopen(name, RTLD_LAZY | RTLD_LOCAL)) on a list of bare file names and keeps
//! the first that opens. For "cuda" (then "nvcuda") and "nvrtc" the list is, in order:
//!   libX.so, libX64.so, libX64_13.so, libX64_130.so, libX64_130_0.so, libX64_130_0.so, libX64_10.so,
//!   libX64_11.so, libX64_12.so, libX64_130_0.so, libX64_9.so, libX.so.13, libX.so.12, libX.so.11, libX.so.10,
//!   libX.so.9, libX.so.1
//! ("13"/"0" come from the `cuda-13000` feature). Being bare names, they are resolved by the dynamic loader:
//! DT_RUNPATH of the loading object, LD_LIBRARY_PATH, /etc/ld.so.cache, then /lib and /usr/lib. So:
//!   * the driver is normally found as libcuda.so.1 through ld.so.cache;
//!   * libnvrtc is found as libnvrtc.so (a toolkit's dev symlink, which wins if present) or libnvrtc.so.13
//!     (or .12 ...: an older NVRTC is accepted too; [`super::compile::nvrtc_version`] says which one loaded);
//!   * libnvrtc itself dlopens libnvrtc-builtins.so.13.0 BY SONAME, so the directory holding both must be on
//!     the loader's search path (LD_LIBRARY_PATH for a pip wheel's nvidia/cu13/lib), or both must be opened
//!     first by absolute path with [`preload_library`] (builtins first): glibc then matches the later bare-name
//!     dlopen of "libnvrtc.so.13" against the SONAME of the already loaded object.

use std::ffi::CString;
use std::panic::catch_unwind;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::{drv, nvrtc_err, CudaError};

static DRIVER_OK: AtomicBool = AtomicBool::new(false);
static NVRTC_OK: AtomicBool = AtomicBool::new(false);

/// Name used in [`CudaError::LibraryMissing`] for the driver.
pub const LIBCUDA: &str = "libcuda";
/// Name used in [`CudaError::LibraryMissing`] for NVRTC.
pub const LIBNVRTC: &str = "libnvrtc";

/// Checks that libcuda can be loaded and initialises the driver (cuInit). Only a positive answer is cached; a
/// negative one is re-probed on the next call (so a library installed later is picked up).
pub fn ensure_driver() -> Result<(), CudaError> {
    if DRIVER_OK.load(Ordering::Acquire) {
        return Ok(());
    }
    // SAFETY: is_culib_present only dlopens candidate names and drops the handles; it calls no CUDA function.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaError::LibraryMissing { library: LIBCUDA.to_string() });
    }
    // First real use: cudarc opens the library for good and resolves cuInit. A panic here (library vanished,
    // symbol missing) is turned into LibraryMissing instead of unwinding into the caller.
    match catch_unwind(cudarc::driver::result::init) {
        Ok(Ok(())) => {
            DRIVER_OK.store(true, Ordering::Release);
            Ok(())
        }
        Ok(Err(e)) => Err(drv("cuInit", e)),
        Err(_) => Err(CudaError::LibraryMissing { library: LIBCUDA.to_string() }),
    }
}

/// Checks that libnvrtc can be loaded and answers nvrtcVersion. Needs no driver and no GPU. Only a positive
/// answer is cached.
pub fn ensure_nvrtc() -> Result<(), CudaError> {
    if NVRTC_OK.load(Ordering::Acquire) {
        return Ok(());
    }
    // SAFETY: is_culib_present only dlopens candidate names and drops the handles; it calls no NVRTC function.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(CudaError::LibraryMissing { library: LIBNVRTC.to_string() });
    }
    let first_use = catch_unwind(|| {
        let (mut major, mut minor) = (0i32, 0i32);
        // SAFETY: both pointers are valid, writable c_ints for the duration of the call.
        unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }.result()
    });
    match first_use {
        Ok(Ok(())) => {
            NVRTC_OK.store(true, Ordering::Release);
            Ok(())
        }
        Ok(Err(e)) => Err(nvrtc_err("nvrtcVersion", e)),
        Err(_) => Err(CudaError::LibraryMissing { library: LIBNVRTC.to_string() }),
    }
}

/// Both libraries: what a context (driver + run-time compilation) needs. Checks the driver first.
pub fn ensure_libraries() -> Result<(), CudaError> {
    ensure_driver()?;
    ensure_nvrtc()
}

/// dlopens `path` with RTLD_NOW | RTLD_GLOBAL and never closes it, so that a later bare-name dlopen by cudarc
/// (or by libnvrtc for its builtins) finds the already loaded object by SONAME. For NVRTC from a directory that
/// is not on the search path: preload `libnvrtc-builtins.so.13.0`, then `libnvrtc.so.13`, before any other call
/// of this module. A failure is reported as LibraryMissing with the loader's message.
pub fn preload_library(path: &Path) -> Result<(), CudaError> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| CudaError::InvalidArgument { what: "library path contains a NUL byte".into() })?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call. The handle is intentionally leaked:
    // the library stays loaded for the life of the process, as cudarc's own handles do.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if h.is_null() {
        // SAFETY: dlerror returns null or a pointer to a NUL-terminated, thread-local message that stays valid
        // until the next dl* call on this thread; it is copied at once.
        let msg = unsafe {
            let m = libc::dlerror();
            if m.is_null() {
                String::from("dlopen failed")
            } else {
                std::ffi::CStr::from_ptr(m).to_string_lossy().into_owned()
            }
        };
        return Err(CudaError::LibraryMissing { library: format!("{} ({msg})", path.display()) });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// There is no driver on the development machine: the driver check must report LibraryMissing for libcuda
    /// and never panic. On a GPU machine it must succeed.
    #[test]
    fn driver_check_never_panics() {
        let r = std::panic::catch_unwind(ensure_driver).expect("ensure_driver panicked");
        // SAFETY: probe only, see ensure_driver.
        let present = unsafe { cudarc::driver::sys::is_culib_present() };
        match r {
            Ok(()) => assert!(present),
            Err(CudaError::LibraryMissing { library }) => {
                assert!(!present);
                assert_eq!(library, LIBCUDA);
                // Same answer again (negative answers are not cached, re-probing must stay panic-free).
                assert!(matches!(ensure_libraries(), Err(CudaError::LibraryMissing { .. })));
                eprintln!("libcuda absent: LibraryMissing as expected");
            }
            Err(e) => {
                // Library present but no usable device (e.g. CUDA_ERROR_NO_DEVICE): an Err, not a panic.
                assert!(present, "unexpected error {e}");
            }
        }
    }

    #[test]
    fn nvrtc_check_never_panics() {
        let r = std::panic::catch_unwind(ensure_nvrtc).expect("ensure_nvrtc panicked");
        // SAFETY: probe only.
        let present = unsafe { cudarc::nvrtc::sys::is_culib_present() };
        match r {
            Ok(()) => assert!(present),
            Err(CudaError::LibraryMissing { library }) => {
                assert!(!present);
                assert_eq!(library, LIBNVRTC);
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    #[test]
    fn preload_missing_file_is_an_error() {
        let r = preload_library(Path::new("/nonexistent/libnope.so.1"));
        assert!(matches!(r, Err(CudaError::LibraryMissing { .. })));
    }
}

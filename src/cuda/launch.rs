//! Kernel launch on the caller's stream: one parameter block passed by value, no allocation, no synchronization;
//! optionally as a programmatic dependent launch (sm_90+).

use std::ffi::c_void;

use cudarc::driver::sys::{self, CUfunction, CUlaunchAttribute, CUlaunchAttributeID, CUlaunchConfig, CUstream};

use super::error::{drv, CudaError};

/// cuda.h's `CU_STREAM_PER_THREAD` (cudarc's bindings omit the macro).
const CU_STREAM_PER_THREAD: usize = 0x2;

/// The stream work is queued on: the caller's, or for NULL the calling thread's per-thread default stream. The
/// legacy default stream (what NULL means to the driver) would serialize against every blocking stream of the
/// context, an engine's included; the per-thread stream still orders before the caller's later synchronous
/// copies, which is what a NULL-stream caller expects.
fn target_stream(stream: CUstream) -> CUstream {
    if stream.is_null() {
        CU_STREAM_PER_THREAD as CUstream
    } else {
        stream
    }
}

/// Launches `func` with a single by-value kernel argument `params` (the kernel is declared
/// `extern "C" __global__ void k(P p)`) on `stream`, and returns at once.
///
/// Zero allocation on success: the argument array is a one-element array on the stack. The driver copies
/// the parameter bytes before returning, so `params` may be dropped or reused right after the call, and the
/// launch is safe to record into a CUDA graph being captured on `stream`.
///
/// # Safety
/// * The context that loaded `func` is current on the calling thread (hold a `CtxGuard` from `bind()`), and the
///   module owning `func` is still loaded.
/// * `P` has exactly the layout of the kernel's single parameter (a `#[repr(C)]` block of src/contract.rs), and
///   every device address inside it is valid for what the kernel will do with it until the kernel has finished
///   (on the stream's timeline, not the host's).
/// * `stream` is null (replaced by the per-thread default stream) or a live stream of that same context, owned by
///   the caller:
///   this function neither retains nor destroys it, and does not synchronize with it.
/// * `smem_bytes` does not exceed what was allowed for `func` with `set_max_dynamic_smem` (the driver checks it
///   and returns an error otherwise, so this is a correctness rather than a soundness condition).
#[inline]
pub unsafe fn launch<P: Copy>(
    func: CUfunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    smem_bytes: u32,
    stream: CUstream,
    params: &P,
) -> Result<(), CudaError> {
    // SAFETY: forwarded contract.
    unsafe { launch_one(func, grid, block, smem_bytes, stream, params, false) }
}

/// Launch with an explicit argument array, for kernels with several parameters (each entry points to one
/// argument value). Same contract as [`launch`], with "P" read as "each argument".
///
/// # Safety
/// As for [`launch`]; additionally `args.len()` equals the kernel's parameter count and `args[i]` points to a
/// value of exactly the type of parameter i.
#[inline]
pub unsafe fn launch_args(
    func: CUfunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    smem_bytes: u32,
    stream: CUstream,
    args: &mut [*mut c_void],
) -> Result<(), CudaError> {
    // SAFETY: forwarded contract (see above).
    unsafe { launch_ex(func, grid, block, smem_bytes, stream, args, false) }
}

/// As [`launch`], as a programmatic dependent launch (sm_90 and newer): the kernel may start while the previous
/// kernel on `stream` is still running, once every CTA of that kernel has executed
/// `griddepcontrol.launch_dependents` (or exited). Saves most of the gap between short dependent kernels, in
/// streams and in captured graphs.
///
/// # Safety
/// As for [`launch`]; additionally the device is sm_90 or newer, and the kernel executes `griddepcontrol.wait`
/// (`pdl_wait()` in cuda/common.cuh) before it reads anything the previous kernel on the stream writes or writes
/// anything that kernel reads.
#[inline]
pub unsafe fn launch_dependent<P: Copy>(
    func: CUfunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    stream: CUstream,
    params: &P,
) -> Result<(), CudaError> {
    // SAFETY: forwarded contract.
    unsafe { launch_one(func, grid, block, 0, stream, params, true) }
}

/// [`launch`] and [`launch_dependent`]: a single by-value parameter block.
///
/// # Safety
/// As for [`launch`]; with `dependent`, as for [`launch_dependent`].
#[inline]
unsafe fn launch_one<P: Copy>(
    func: CUfunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    smem_bytes: u32,
    stream: CUstream,
    params: &P,
    dependent: bool,
) -> Result<(), CudaError> {
    let mut args: [*mut c_void; 1] = [params as *const P as *mut c_void];
    // SAFETY: per the callers' contract the context is current, `func` is live and `P` matches the kernel's
    // single parameter; `args` holds one pointer to size_of::<P>() readable bytes, which the driver copies during
    // the call (it never writes through it).
    unsafe { launch_ex(func, grid, block, smem_bytes, stream, &mut args, dependent) }
}

/// The driver launch calls: cuLaunchKernel, or cuLaunchKernelEx for the launch attribute of a dependent launch.
///
/// # Safety
/// As for [`launch_args`]; with `dependent`, as for [`launch_dependent`].
#[inline]
unsafe fn launch_ex(
    func: CUfunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    smem_bytes: u32,
    stream: CUstream,
    args: &mut [*mut c_void],
    dependent: bool,
) -> Result<(), CudaError> {
    let stream = target_stream(stream);
    if !dependent {
        // Plain launches keep to cuLaunchKernel, which every driver has (cuLaunchKernelEx needs CUDA 12).
        // SAFETY: forwarded contract: the context is current, `func` is live, `args` matches the kernel's
        // parameters and outlives the call; the driver copies the argument values and only reads `args`.
        return unsafe {
            sys::cuLaunchKernel(
                func,
                grid.0,
                grid.1,
                grid.2,
                block.0,
                block.1,
                block.2,
                smem_bytes,
                stream,
                args.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        }
        .result()
        .map_err(|e| drv("cuLaunchKernel", e));
    }
    // SAFETY: an all-zero CUlaunchAttribute is a valid value (an id enum whose 0 is CU_LAUNCH_ATTRIBUTE_IGNORE and
    // a union of plain integers); id and value are set right after.
    let mut attr: CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attr.id = CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    let config = CUlaunchConfig {
        gridDimX: grid.0,
        gridDimY: grid.1,
        gridDimZ: grid.2,
        blockDimX: block.0,
        blockDimY: block.1,
        blockDimZ: block.2,
        sharedMemBytes: smem_bytes,
        hStream: stream,
        attrs: &mut attr,
        numAttrs: 1,
    };
    // SAFETY: forwarded contract: the context is current, `func` is live, `args` matches the kernel's parameters.
    // `config` and `attr` live on this frame for the whole call and the driver only reads them; the argument
    // values are copied during the call.
    unsafe { sys::cuLaunchKernelEx(&config, func, args.as_mut_ptr(), std::ptr::null_mut()) }
        .result()
        .map_err(|e| drv("cuLaunchKernelEx", e))
}

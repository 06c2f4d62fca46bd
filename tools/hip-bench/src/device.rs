//! The CUDA device as hip-bench drives it through the driver API: memory, events, graphs and the stream.

use cudarc::driver::{result, sys, CudaContext};
use std::ffi::c_void;
use std::sync::Arc;

use crate::{
    api::{drv, Fail, Res},
    inputs::par_rows,
};

/// Host staging chunk for uploads of generated data.
pub(crate) const UPLOAD_CHUNK_BYTES: usize = 256 << 20;
/// Device memory left free beyond what a configuration allocates (context, kernels, fragmentation).
pub(crate) const MEM_MARGIN: usize = 1 << 30;

// ---------------------------------------------------------------------------------------------------------------
// Device memory, events, graphs
// ---------------------------------------------------------------------------------------------------------------

/// Device memory from cuMemAlloc, freed on drop once the device is idle.
pub(crate) struct DevBuf {
    pub(crate) ptr: sys::CUdeviceptr,
    pub(crate) bytes: usize,
}

impl DevBuf {
    pub(crate) fn alloc(bytes: usize, what: &str) -> Res<DevBuf> {
        // SAFETY: a plain allocation (at least 256 bytes, so that a zero-size buffer still has a valid address);
        // nothing reads it before it is written.
        let ptr = unsafe { result::malloc_sync(bytes.max(256)) }
            .map_err(|e| Fail::Error(format!("cuMemAlloc({bytes} bytes for {what}): {e:?}")))?;
        Ok(DevBuf { ptr, bytes })
    }
    pub(crate) fn ptr(&self) -> *mut c_void {
        self.ptr as *mut c_void
    }
    pub(crate) fn at(&self, offset: usize) -> sys::CUdeviceptr {
        self.ptr + offset as u64
    }
    pub(crate) fn span_ok(&self, offset: usize, bytes: usize) -> Res<()> {
        if offset.checked_add(bytes).is_none_or(|end| end > self.bytes) {
            return Err(Fail::Error(format!(
                "internal: access [{offset}, +{bytes}) outside a {}-byte buffer",
                self.bytes
            )));
        }
        Ok(())
    }
    /// Synchronous copy of `data` to byte offset `offset`.
    pub(crate) fn upload<T: Copy>(&self, offset: usize, data: &[T]) -> Res<()> {
        self.span_ok(offset, std::mem::size_of_val(data))?;
        // SAFETY: the destination span lies inside this allocation (checked); the source lives through the call.
        unsafe { result::memcpy_htod_sync(self.at(offset), data) }.map_err(drv("cuMemcpyHtoD"))
    }
    /// Synchronous copy of `n` elements from byte offset `offset`. The caller has synchronized the stream that
    /// wrote them.
    pub(crate) fn download<T: Copy + Default>(&self, offset: usize, n: usize) -> Res<Vec<T>> {
        self.span_ok(offset, n * std::mem::size_of::<T>())?;
        let mut out = vec![T::default(); n];
        // SAFETY: the source span lies inside this allocation (checked); `out` holds exactly n elements.
        unsafe { result::memcpy_dtoh_sync(&mut out, self.at(offset)) }.map_err(drv("cuMemcpyDtoH"))?;
        Ok(out)
    }
    /// Fills the buffer with `byte`, ordered on `stream`.
    pub(crate) fn fill_async(&self, byte: u8, stream: sys::CUstream) -> Res<()> {
        // SAFETY: the span is this allocation; the stream is the bench's live stream.
        unsafe { result::memset_d8_async(self.ptr, byte, self.bytes, stream) }.map_err(drv("cuMemsetD8Async"))
    }
    /// Uploads `rows` generated rows of `row` elements (bf16) in chunks, generating each chunk on all cores.
    pub(crate) fn upload_generated(&self, rows: usize, row: usize, gen: impl Fn(usize, &mut [u16]) + Sync) -> Res<()> {
        self.span_ok(0, rows * row * 2)?;
        let chunk_rows = (UPLOAD_CHUNK_BYTES / (row * 2)).max(1).min(rows.max(1));
        let mut host = vec![0u16; chunk_rows * row];
        let mut r0 = 0;
        while r0 < rows {
            let n = chunk_rows.min(rows - r0);
            let buf = &mut host[..n * row];
            par_rows(buf, row, |r, dst| gen(r0 + r, dst));
            self.upload(r0 * row * 2, buf)?;
            r0 += n;
        }
        Ok(())
    }
}

impl Drop for DevBuf {
    fn drop(&mut self) {
        // An error path may return while kernels still use this buffer: wait for the device first.
        let _ = result::ctx::synchronize();
        // SAFETY: allocated by malloc_sync, freed exactly once, the device is idle.
        if let Err(e) = unsafe { result::free_sync(self.ptr) } {
            elog!("warning: cuMemFree: {e:?}");
        }
    }
}

pub(crate) struct Event(sys::CUevent);

impl Event {
    pub(crate) fn new() -> Res<Event> {
        result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT).map(Event).map_err(drv("cuEventCreate"))
    }
    pub(crate) fn record(&self, stream: sys::CUstream) -> Res<()> {
        // SAFETY: a live event and the bench's live stream.
        unsafe { result::event::record(self.0, stream) }.map_err(drv("cuEventRecord"))
    }
    /// Milliseconds from `start` to this event (both recorded on one stream and completed).
    pub(crate) fn ms_since(&self, start: &Event) -> Res<f64> {
        // SAFETY: both events are live and were recorded on the same stream, which the caller synchronized.
        unsafe { result::event::elapsed(start.0, self.0) }.map(f64::from).map_err(drv("cuEventElapsedTime"))
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: created by event::create, destroyed once (the driver defers it if still pending).
        let _ = unsafe { result::event::destroy(self.0) };
    }
}

/// An instantiated CUDA graph.
pub(crate) struct GraphExec(sys::CUgraphExec);

impl GraphExec {
    /// Captures what `enqueue` queues on `stream` (thread-local capture mode: other threads' CUDA calls are not
    /// affected). The capture is ended on every path, so the stream stays usable after an error.
    pub(crate) fn capture(stream: sys::CUstream, enqueue: impl FnOnce() -> Res<()>) -> Res<GraphExec> {
        // SAFETY: the bench's live stream, not capturing yet.
        unsafe { result::stream::begin_capture(stream, sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL) }
            .map_err(drv("cuStreamBeginCapture"))?;
        let queued = enqueue();
        // SAFETY: ends the capture begun above.
        let graph = unsafe { result::stream::end_capture(stream) };
        let graph = match (queued, graph) {
            (Ok(()), Ok(g)) => g,
            (Err(e), g) => {
                if let Ok(g) = g {
                    // SAFETY: a graph returned by end_capture, destroyed once.
                    let _ = unsafe { result::graph::destroy(g) };
                }
                return Err(e);
            }
            (Ok(()), Err(e)) => return Err(Fail::Error(format!("cuStreamEndCapture: {e:?}"))),
        };
        // SAFETY: a valid graph; its template is no longer needed once instantiated.
        let exec = unsafe { result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) };
        // SAFETY: as above.
        let _ = unsafe { result::graph::destroy(graph) };
        exec.map(GraphExec).map_err(drv("cuGraphInstantiate"))
    }
    pub(crate) fn launch(&self, stream: sys::CUstream) -> Res<()> {
        // SAFETY: a live executable graph whose captured buffers outlive it; the bench's stream.
        unsafe { result::graph::launch(self.0, stream) }.map_err(drv("cuGraphLaunch"))
    }
}

impl Drop for GraphExec {
    fn drop(&mut self) {
        let _ = result::ctx::synchronize();
        // SAFETY: instantiated by capture, destroyed once, after the device is idle.
        let _ = unsafe { result::graph::exec_destroy(self.0) };
    }
}

pub(crate) fn sync(stream: sys::CUstream) -> Res<()> {
    // SAFETY: the bench's live stream.
    unsafe { result::stream::synchronize(stream) }.map_err(drv("cuStreamSynchronize"))
}

/// Waits for everything on the device, including the synchronous (legacy-stream) copies of the setup, which a
/// non-blocking stream does not order against.
pub(crate) fn sync_device() -> Res<()> {
    result::ctx::synchronize().map_err(drv("cuCtxSynchronize"))
}

/// Times `n` runs: one event pair around each run, all read after a single synchronize. Milliseconds per run.
pub(crate) fn time_each(stream: sys::CUstream, n: usize, mut run: impl FnMut(usize) -> Res<()>) -> Res<Vec<f64>> {
    let events: Vec<Event> = (0..2 * n).map(|_| Event::new()).collect::<Res<_>>()?;
    for i in 0..n {
        events[2 * i].record(stream)?;
        run(i)?;
        events[2 * i + 1].record(stream)?;
    }
    sync(stream)?;
    (0..n).map(|i| events[2 * i + 1].ms_since(&events[2 * i])).collect()
}

pub(crate) struct Device {
    // Keeps the primary context retained (and current on this thread) for the whole run.
    pub(crate) _ctx: Arc<CudaContext>,
    pub(crate) stream: sys::CUstream,
    pub(crate) ordinal: i32,
    pub(crate) name: String,
    pub(crate) cc: (i32, i32),
    pub(crate) sm_count: usize,
    pub(crate) l2_bytes: usize,
    pub(crate) total_mem: usize,
    pub(crate) driver: String,
}

impl Device {
    /// What the library's decode plan would know of this device, for the byte counts (its split partials): the
    /// cluster decode kernel's CTAs per SM, which only a context measures, taken as 4 (the rule's own cap, which
    /// both cluster kernels reach on an H200).
    pub(crate) fn plan_traits(&self) -> hip_attn::plan::DeviceTraits {
        hip_attn::plan::DeviceTraits {
            sm_count: self.sm_count,
            search_cluster: hip_attn::cuda::backend::decode_search_cluster(&format!("sm_{}{}", self.cc.0, self.cc.1)),
            cluster_per_sm: 4,
            scan_resident: 2 * self.sm_count,
        }
    }
}

pub(crate) enum OpenError {
    NoDevice(String),
    Cuda(String),
}

pub(crate) fn open_device(ordinal: i32) -> Result<Device, OpenError> {
    // cudarc panics when libcuda is missing; hip-attn's probe turns that into an error first.
    hip_attn::cuda::ensure_driver().map_err(|e| OpenError::NoDevice(e.to_string()))?;
    let n = result::device::get_count().map_err(|e| OpenError::NoDevice(format!("cuDeviceGetCount: {e:?}")))?;
    if n <= 0 {
        return Err(OpenError::NoDevice("the CUDA driver reports no device".into()));
    }
    if ordinal < 0 || ordinal >= n {
        return Err(OpenError::NoDevice(format!("device {ordinal} requested, the driver reports {n}")));
    }
    fn cuda(what: &'static str) -> impl Fn(result::DriverError) -> OpenError {
        move |e| OpenError::Cuda(format!("{what}: {e:?}"))
    }
    let ctx = CudaContext::new(ordinal as usize).map_err(cuda("primary context"))?;
    ctx.bind_to_thread().map_err(cuda("cuCtxSetCurrent"))?;
    let dev = result::device::get(ordinal).map_err(cuda("cuDeviceGet"))?;
    let attr = |a| {
        // SAFETY: dev comes from device::get.
        unsafe { result::device::get_attribute(dev, a) }.map_err(cuda("cuDeviceGetAttribute"))
    };
    use sys::CUdevice_attribute as A;
    let cc = (
        attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
        attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
    );
    let sm_count = attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1) as usize;
    let l2_bytes = attr(A::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?.max(0) as usize;
    // SAFETY: as above.
    let total_mem = unsafe { result::device::total_mem(dev) }.map_err(cuda("cuDeviceTotalMem"))?;
    let name = result::device::get_name(dev).map_err(cuda("cuDeviceGetName"))?;
    let mut v = 0i32;
    // SAFETY: v is a writable int.
    unsafe { sys::cuDriverGetVersion(&mut v) }.result().map_err(cuda("cuDriverGetVersion"))?;
    let driver = format!("{}.{}", v / 1000, (v % 1000) / 10);
    let stream = result::stream::create(result::stream::StreamKind::NonBlocking).map_err(cuda("cuStreamCreate"))?;
    Ok(Device { _ctx: ctx, stream, ordinal, name, cc, sm_count, l2_bytes, total_mem, driver })
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = sync_device();
        // SAFETY: created in open_device, destroyed once, idle.
        let _ = unsafe { result::stream::destroy(self.stream) };
    }
}

//! hip-attn's C API as an engine calls it: errors, contexts, size queries and argument structs.

use cudarc::driver::result;
use hip_attn::config::{validate, Config};
use hip_attn::{
    hip_backend, hip_config, hip_ctx, hip_ctx_create, hip_ctx_destroy, hip_decode_args, hip_decode_workspace_size,
    hip_kv_cache, hip_kv_layout, hip_last_error_message, hip_mask_state_size, hip_prefill_args,
    hip_prefill_workspace_size, hip_selection, hip_status, hip_status_string, hip_tensor, hip_tensor_mut,
};
use std::ffi::{c_void, CStr};

use crate::workloads::{D, PAGE};

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

/// Why a configuration did not produce a result: skipped on purpose (not enough memory, time budget) or failed.
#[derive(Debug)]
pub(crate) enum Fail {
    Skip(String),
    Error(String),
}

impl From<String> for Fail {
    fn from(s: String) -> Fail {
        Fail::Error(s)
    }
}

pub(crate) type Res<T> = Result<T, Fail>;

/// Maps a driver error to a message naming the call.
pub(crate) fn drv(what: &'static str) -> impl Fn(result::DriverError) -> Fail {
    move |e| Fail::Error(format!("{what}: {e:?}"))
}

pub(crate) fn last_error() -> String {
    // SAFETY: hip_last_error_message returns a valid NUL-terminated thread-local string; it is copied at once.
    unsafe { CStr::from_ptr(hip_last_error_message()) }.to_string_lossy().into_owned()
}

pub(crate) fn status_name(st: hip_status) -> String {
    // SAFETY: hip_status_string returns a static NUL-terminated string for any value.
    unsafe { CStr::from_ptr(hip_status_string(st as i32)) }.to_string_lossy().into_owned()
}

/// Turns a hip_status into Ok or an error carrying the status and the library's message.
pub(crate) fn check(st: hip_status, what: &str) -> Res<()> {
    if st == hip_status::HIP_ATTN_STATUS_SUCCESS {
        return Ok(());
    }
    Err(Fail::Error(format!("{what}: {} ({}): {}", status_name(st), st as i32, last_error())))
}

pub(crate) fn validated(cfg: &hip_config) -> Res<Config> {
    // SAFETY: kernel_cache_dir is NULL or a live CString owned by the caller for this call.
    unsafe { validate(cfg) }.map(|(c, _)| c).map_err(|e| Fail::Error(format!("configuration: {e}")))
}

// ---------------------------------------------------------------------------------------------------------------
// hip-attn contexts
// ---------------------------------------------------------------------------------------------------------------

/// A hip-attn context, destroyed on drop (after the device is idle, as hip_ctx_destroy requires).
pub(crate) struct Ctx {
    pub(crate) raw: *mut hip_ctx,
    pub(crate) cuda: bool,
}

impl Ctx {
    pub(crate) fn create(cfg: &hip_config) -> Res<Ctx> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: cfg is a hip_config from hip_config_default (correct struct_size) whose pointers are NULL or
        // live for this call; raw is writable.
        let st = unsafe { hip_ctx_create(cfg, &mut raw) };
        // A backend without SCAN kernels says UNSUPPORTED: the row reports it and the run goes on.
        let uses_scan = cfg.decode_selection != hip_selection::HIP_ATTN_SELECT_TREE as u32 || cfg.prefill_scan_tail > 0;
        if st == hip_status::HIP_ATTN_STATUS_UNSUPPORTED && uses_scan {
            return Err(Fail::Skip(format!("unsupported by this build: {}", last_error())));
        }
        check(st, "hip_ctx_create")?;
        Ok(Ctx { raw, cuda: cfg.backend == hip_backend::HIP_ATTN_BACKEND_CUDA as u32 })
    }
    pub(crate) fn prefill_ws(&self, batch: usize, total_q: usize, max_q: usize, max_k: usize) -> Res<usize> {
        let mut n = 0usize;
        // SAFETY: live context, writable out.
        let st = unsafe {
            hip_prefill_workspace_size(self.raw, batch as u32, total_q as u32, max_q as u32, max_k as u32, &mut n)
        };
        check(st, "hip_prefill_workspace_size")?;
        Ok(n)
    }
    pub(crate) fn decode_ws(&self, batch: usize, max_k: usize) -> Res<usize> {
        let mut n = 0usize;
        // SAFETY: live context, writable out.
        check(
            unsafe { hip_decode_workspace_size(self.raw, batch as u32, max_k as u32, &mut n) },
            "hip_decode_workspace_size",
        )?;
        Ok(n)
    }
    pub(crate) fn state_size(&self, batch: usize) -> Res<usize> {
        let mut n = 0usize;
        // SAFETY: live context, writable out.
        check(unsafe { hip_mask_state_size(self.raw, batch as u32, &mut n) }, "hip_mask_state_size")?;
        Ok(n)
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if self.cuda {
            let _ = result::ctx::synchronize();
        }
        // SAFETY: created by hip_ctx_create, destroyed once, no call running and no work queued.
        unsafe { hip_ctx_destroy(self.raw) }
    }
}

/// A prefill of one sequence of `t` tokens over [t, heads, D] tensors at the given addresses (device or host).
#[allow(clippy::too_many_arguments)]
pub(crate) fn prefill_args(
    q: *const c_void,
    k: *const c_void,
    v: *const c_void,
    o: *mut c_void,
    cu_q: *const c_void,
    cu_k: *const c_void,
    tq: usize,
    tk: usize,
    hq: usize,
    hkv: usize,
) -> hip_prefill_args {
    let view = |data, heads: usize| hip_tensor { data, token_stride: (heads * D) as i64, head_stride: D as i64 };
    hip_prefill_args {
        struct_size: std::mem::size_of::<hip_prefill_args>() as u32,
        batch_size: 1,
        total_q: tq as u32,
        total_k: tk as u32,
        max_seqlen_q: tq as u32,
        max_seqlen_k: tk as u32,
        q: view(q, hq),
        k: view(k, hkv),
        v: view(v, hkv),
        o: hip_tensor_mut { data: o, token_stride: (hq * D) as i64, head_stride: D as i64 },
        cu_seqlens_q: cu_q as *const i32,
        cu_seqlens_k: cu_k as *const i32,
        lse: std::ptr::null_mut(),
        mask_state_out: std::ptr::null_mut(),
        reserved: [0; 4],
    }
}

/// A decode step of `batch` sequences with queries and outputs [batch, hq, D].
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_args(
    q: *const c_void,
    o: *mut c_void,
    kv: hip_kv_cache,
    lens: *const c_void,
    state: *mut c_void,
    batch: usize,
    hq: usize,
    max_seqlen_k: usize,
) -> hip_decode_args {
    hip_decode_args {
        struct_size: std::mem::size_of::<hip_decode_args>() as u32,
        batch_size: batch as u32,
        max_seqlen_k: max_seqlen_k as u32,
        reserved_u32: 0,
        q: hip_tensor { data: q, token_stride: (hq * D) as i64, head_stride: D as i64 },
        kv,
        seqlens_k: lens as *const i32,
        mask_state: state,
        o: hip_tensor_mut { data: o, token_stride: (hq * D) as i64, head_stride: D as i64 },
        lse: std::ptr::null_mut(),
        key_offset: 0,
        shard_flags: 0,
        reserved: [0; 3],
    }
}

/// The paged cache descriptor: a pool of pages [PAGE, hkv, D] and a page table [batch, pages_per_seq].
pub(crate) fn paged_kv(
    k: *const c_void,
    v: *const c_void,
    table: *const c_void,
    hkv: usize,
    pages_per_seq: usize,
    num_pages: usize,
) -> hip_kv_cache {
    hip_kv_cache {
        layout: hip_kv_layout::HIP_ATTN_KV_PAGED as u32,
        page_size: PAGE as u32,
        k,
        v,
        seq_stride: (PAGE * hkv * D) as i64,
        token_stride: (hkv * D) as i64,
        head_stride: D as i64,
        page_table: table as *const i32,
        page_table_stride: pages_per_seq as u32,
        num_pages: num_pages as u32,
    }
}

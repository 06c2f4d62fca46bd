//! The C shell: every `extern "C"` entry point of libhip_attn. Each one does the same five things and nothing
//! else: check pointers, read versioned structs (`read_struct`), convert them into validated Rust types
//! (`convert`), call the safe core (`crate::context`), and turn the result into a `hip_status` with the message
//! recorded (`guard`). No panic crosses this boundary, and no C struct goes past it.

pub(crate) mod convert;
pub(crate) mod types;

use crate::context::Context;
use crate::status::{self, hip_status, Error, Result};
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use types::*;

use hip_status::*;

/// Largest `struct_size` accepted from a caller built against a newer header (whose extra bytes must be zero).
const MAX_STRUCT_SIZE: u32 = 1 << 16;

/// Runs `f`, catching panics; records the failure message per thread (and per context when there is one).
fn guard(ctx: Option<&Context>, f: impl FnOnce() -> Result<()>) -> hip_status {
    let result = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(Error::internal(format!("internal error (please report): {what}")))
    });
    match result {
        Ok(()) => HIP_ATTN_STATUS_SUCCESS,
        Err(e) => {
            status::set_thread_error(&e.message);
            if let Some(c) = ctx {
                c.set_last_error(&e.message);
            }
            e.status
        }
    }
}

/// Reads a caller struct whose first field is `uint32_t struct_size`. A smaller size than ours is an older or
/// foreign layout; a larger one is accepted only when every byte we do not know is zero.
///
/// # Safety
/// `ptr` is NULL or points to at least `struct_size` readable bytes.
unsafe fn read_struct<T: Copy>(ptr: *const T, name: &str) -> Result<T> {
    if ptr.is_null() {
        return Err(Error::null(name));
    }
    if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::misaligned(format!(
            "{name} (0x{:x}) is not {}-byte aligned",
            ptr as usize,
            std::mem::align_of::<T>()
        )));
    }
    let ours = std::mem::size_of::<T>();
    // SAFETY: every versioned struct starts with a u32 struct_size; ptr is non-NULL and aligned.
    let size = unsafe { (ptr as *const u32).read() };
    let mismatch =
        |why: String| Error::new(HIP_ATTN_STATUS_STRUCT_SIZE_MISMATCH, format!("{name}.struct_size ({size}) {why}"));
    if (size as usize) < ours {
        return Err(mismatch(format!(
            "is smaller than sizeof({name}) ({ours}) of this library: set it to sizeof({name})"
        )));
    }
    if size > MAX_STRUCT_SIZE {
        return Err(mismatch(format!("exceeds {MAX_STRUCT_SIZE}")));
    }
    let bytes = ptr as *const u8;
    // SAFETY: the caller promised struct_size readable bytes.
    if let Some(off) = (ours..size as usize).find(|&i| unsafe { bytes.add(i).read() } != 0) {
        return Err(mismatch(format!(
            "is larger than this library's {ours} bytes and byte {off} is not zero: a newer header's field is set that \
             this library (ABI {HIP_ATTN_ABI_VERSION}) does not know"
        )));
    }
    // SAFETY: size >= size_of::<T>() bytes are readable and T is plain old data (repr(C), Copy).
    Ok(unsafe { ptr.read() })
}

/// # Safety
/// `ctx` is NULL or a pointer returned by `hip_ctx_create` and not yet destroyed.
unsafe fn context<'a>(ctx: *const hip_ctx) -> Result<&'a Context> {
    // SAFETY: forwarded from the caller's contract.
    unsafe { ctx.as_ref() }.map(|c| &c.inner).ok_or_else(|| Error::null("ctx"))
}

/// # Safety
/// `out` is NULL or writable.
unsafe fn write_out<T>(out: *mut T, name: &str, value: T) -> Result<()> {
    if out.is_null() {
        return Err(Error::null(name));
    }
    // SAFETY: non-NULL, and the caller promised it is writable.
    unsafe { out.write(value) };
    Ok(())
}

/// Version of the library, e.g. "0.1.0". A static string.
#[no_mangle]
pub extern "C" fn hip_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// ABI version of the library; compare with `HIP_ATTN_ABI_VERSION` from the header.
#[no_mangle]
pub extern "C" fn hip_abi_version() -> u32 {
    HIP_ATTN_ABI_VERSION
}

/// A static description of a status value (any integer is accepted).
#[no_mangle]
pub extern "C" fn hip_status_string(status: i32) -> *const c_char {
    hip_status::describe(status).as_ptr()
}

/// The message of the latest failed call on the calling thread ("" if none). Valid until the next failing call
/// on this thread.
#[no_mangle]
pub extern "C" fn hip_last_error_message() -> *const c_char {
    status::thread_error_ptr()
}

/// A configuration with docs/ALGORITHM.md defaults (k 512, bq 32, bk 2, sink 4, window 128, sq 1, sk 1, refresh 8,
/// causal, mask per q head, bf16, head_dim 128, CPU backend). num_q_heads and num_kv_heads are 0: set them.
#[no_mangle]
pub extern "C" fn hip_config_default() -> hip_config {
    convert::default_config()
}

/// Validates `config` and creates a context; on success `*out` owns it (free with `hip_ctx_destroy`). On
/// failure `*out` is set to NULL. With the CUDA backend this loads the driver, selects the device's primary
/// context and compiles (or loads from the kernel cache) the kernels for this configuration.
///
/// # Safety
/// `config` points to a `hip_config` with a correct `struct_size`; `out` is writable.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn hip_ctx_create(config: *const hip_config, out: *mut *mut hip_ctx) -> hip_status {
    guard(None, || {
        if out.is_null() {
            return Err(Error::null("out"));
        }
        // SAFETY: out is non-NULL and writable (caller's contract).
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: caller's contract on config.
        let raw = unsafe { read_struct(config, "hip_config")? };
        // SAFETY: kernel_cache_dir is NULL or a C string (caller's contract).
        let (cfg, opts) = unsafe { convert::config(&raw)? };
        let ctx = Box::new(hip_ctx { inner: Context::new(cfg, opts)? });
        // SAFETY: as above.
        unsafe { out.write(Box::into_raw(ctx)) };
        Ok(())
    })
}

/// Destroys a context. NULL is a no-op. No call on this context may be running or start afterwards; work
/// already queued on streams must have completed.
///
/// # Safety
/// `ctx` is NULL or a pointer from `hip_ctx_create` not yet destroyed.
#[no_mangle]
pub unsafe extern "C" fn hip_ctx_destroy(ctx: *mut hip_ctx) {
    if !ctx.is_null() {
        // A panic in a destructor must not unwind into C; there is nothing to report it to.
        // SAFETY: ctx came from Box::into_raw in hip_ctx_create and is destroyed once (caller's contract).
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(ctx) })));
    }
}

/// Copies the message of the latest failed call on `ctx` (from any thread) into `buf` (NUL-terminated,
/// truncated to `buf_len`) and returns the length the full message needs including its NUL. `buf` may be NULL
/// when `buf_len` is 0, to ask for the length. Returns 0 when `ctx` is NULL.
///
/// # Safety
/// `ctx` is NULL or a live context; `buf` is writable for `buf_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hip_ctx_last_error(ctx: *const hip_ctx, buf: *mut c_char, buf_len: usize) -> usize {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: caller's contract.
        let Ok(c) = (unsafe { context(ctx) }) else { return 0 };
        let msg = c.last_error();
        let bytes = msg.as_bytes_with_nul();
        if !buf.is_null() && buf_len > 0 {
            let n = (bytes.len() - 1).min(buf_len - 1);
            // SAFETY: buf is writable for buf_len > n bytes; the source is a separate Rust allocation.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, buf, n);
                buf.add(n).write(0);
            }
        }
        bytes.len()
    }))
    .unwrap_or(0)
}

/// Bytes of workspace `hip_prefill` needs for these host-side sizes (monotone in each: size once for the
/// largest batch). Backend-independent.
///
/// # Safety
/// `ctx` is a live context; `bytes` is writable.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn hip_prefill_workspace_size(
    ctx: *const hip_ctx,
    batch_size: u32,
    total_q: u32,
    max_seqlen_q: u32,
    max_seqlen_k: u32,
    bytes: *mut usize,
) -> hip_status {
    // SAFETY: caller's contract.
    let c = unsafe { context(ctx) }.ok();
    guard(c, || {
        let c = c.ok_or_else(|| Error::null("ctx"))?;
        let n = c.prefill_workspace_size(batch_size, total_q, max_seqlen_q, max_seqlen_k)?;
        // SAFETY: caller's contract.
        unsafe { write_out(bytes, "bytes", n) }
    })
}

/// Bytes of workspace `hip_decode_step` needs (monotone in each argument). Backend-independent.
///
/// # Safety
/// `ctx` is a live context; `bytes` is writable.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn hip_decode_workspace_size(
    ctx: *const hip_ctx,
    batch_size: u32,
    max_seqlen_k: u32,
    bytes: *mut usize,
) -> hip_status {
    // SAFETY: caller's contract.
    let c = unsafe { context(ctx) }.ok();
    guard(c, || {
        let c = c.ok_or_else(|| Error::null("ctx"))?;
        let n = c.decode_workspace_size(batch_size, max_seqlen_k)?;
        // SAFETY: caller's contract.
        unsafe { write_out(bytes, "bytes", n) }
    })
}

/// Bytes of persistent mask state for `batch_size` sequences (decode's `mask_state`, prefill's
/// `mask_state_out`). Sequence b's records occupy bytes [b*size/batch_size, (b+1)*size/batch_size).
///
/// # Safety
/// `ctx` is a live context; `bytes` is writable.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn hip_mask_state_size(ctx: *const hip_ctx, batch_size: u32, bytes: *mut usize) -> hip_status {
    // SAFETY: caller's contract.
    let c = unsafe { context(ctx) }.ok();
    guard(c, || {
        let c = c.ok_or_else(|| Error::null("ctx"))?;
        let n = c.mask_state_size(batch_size)?;
        // SAFETY: caller's contract.
        unsafe { write_out(bytes, "bytes", n) }
    })
}

/// HiP attention over a batch of variable-length sequences (prefill, chunked prefill, append). Queues the work
/// on `stream` (CUDA: a `CUstream`, NULL = the calling thread's per-thread default stream, never the legacy one;
/// ignored by the CPU backend, which computes before returning) without synchronizing, and keeps no pointer after
/// it returns. On failure no output is written.
///
/// Memory: on the CUDA backend the call allocates no device memory and host memory only in small fixed amounts
/// (so it can be captured in a CUDA graph). The CPU backend reads keys, values and index data in place, so
/// nothing it allocates grows with the sequence lengths, the batch or the KV cache; its one scratch buffer (the
/// sampled queries of one query block: the q heads sharing a mask x ceil(min(bq, max_seqlen_q) / sq) rows of
/// head_dim f32, plus search arrays of O(Kb) entries) is reserved before anything is written, and a host that cannot provide it
/// gets `HIP_ATTN_STATUS_OUT_OF_MEMORY`, with nothing written, never an abort.
///
/// Aliasing: no output (`o`, `lse`, `mask_state_out`) and not the part of `workspace` the call uses (its first
/// `hip_prefill_workspace_size` bytes) may share a byte with any other argument (`q`, `k`, `v`, `cu_seqlens_q`,
/// `cu_seqlens_k`, another output), with one exception: `o` may be `q` itself (the same data pointer, token_stride
/// and head_stride), which computes in place. Overlap is judged on byte ranges, from a view's first byte to one
/// past its last, so two interleaved views that share no element still count as overlapping (conservative): in
/// particular `q` inside a fused QKV buffer cannot be computed in place (its range spans `k` and `v`), so pass a
/// separate `o` there.
/// A violation is HIP_ATTN_STATUS_INVALID_ARGUMENT naming both arguments and their ranges. Inputs may overlap
/// each other freely.
///
/// Non-finite inputs: the values of q, k and v are not checked; nothing crashes and the call succeeds. A NaN in a
/// query row, or in a key row the query attends (sink, selected block or local window), makes that query's
/// output row NaN; an infinity there gives logits of +-inf or NaN, where +inf or NaN makes the row NaN and -inf
/// drops that key. A NaN or infinity in an attended value row makes the matching output elements non-finite.
/// The lse of a NaN row is NaN (both backends). Rows that attend no such value are
/// computed as usual, except that the mask search ranks a NaN score as -inf and +inf first, so a non-finite key
/// in a query block's search domain can change that block's selection.
///
/// # Safety
/// `ctx` is a live context; `args` points to a `hip_prefill_args` whose pointers address memory of the context's
/// backend spanning the documented extents; `workspace` spans `workspace_bytes`; `stream` is NULL or a stream of
/// the context's device.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn hip_prefill(
    ctx: *const hip_ctx,
    args: *const hip_prefill_args,
    workspace: *mut c_void,
    workspace_bytes: usize,
    stream: *mut c_void,
) -> hip_status {
    // SAFETY: caller's contract.
    let c = unsafe { context(ctx) }.ok();
    guard(c, || {
        let c = c.ok_or_else(|| Error::null("ctx"))?;
        // SAFETY: caller's contract.
        let raw = unsafe { read_struct(args, "hip_prefill_args")? };
        let a = convert::prefill_args(c.config(), &raw)?;
        // SAFETY: caller's contract, forwarded.
        unsafe { c.prefill(&a, workspace as usize, workspace_bytes, stream as usize) }
    })
}

/// One decode step for a batch: searches or reuses each sequence's mask as its step counter in `mask_state`
/// says, then attends. Same queuing and memory rules as `hip_prefill` (the CPU backend's scratch here: one row of
/// head_dim f32 per q head of a mask head, plus O(Kb) search arrays). On failure no output and no mask state is
/// written.
///
/// Aliasing: no output (`o`, `lse`, `mask_state`, which is read and written) and not the part of `workspace` the
/// call uses may share a byte with any other argument (`q`, `kv.k`, `kv.v`, `kv.page_table`, `seqlens_k`, another
/// output). Unlike prefill, `o` may not be `q`: on CUDA the attention kernel may write an output row while the
/// search kernel still reads the queries of the row's whole GQA group. Byte ranges are compared, as for
/// `hip_prefill`; a violation is HIP_ATTN_STATUS_INVALID_ARGUMENT naming both arguments.
///
/// Non-finite inputs: as for `hip_prefill`, on both backends: a row whose attended logits include NaN or +inf (a
/// NaN query, a NaN attended key, or an infinite one that makes the product +inf or NaN) is NaN with lse NaN; a
/// -inf logit drops its key. (Bad index data still gives zeros and lse -inf.)
///
/// # Safety
/// As for `hip_prefill`, with `hip_decode_args`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn hip_decode_step(
    ctx: *const hip_ctx,
    args: *const hip_decode_args,
    workspace: *mut c_void,
    workspace_bytes: usize,
    stream: *mut c_void,
) -> hip_status {
    // SAFETY: caller's contract.
    let c = unsafe { context(ctx) }.ok();
    guard(c, || {
        let c = c.ok_or_else(|| Error::null("ctx"))?;
        // SAFETY: caller's contract.
        let raw = unsafe { read_struct(args, "hip_decode_args")? };
        let a = convert::decode_args(c.config(), &raw)?;
        // SAFETY: caller's contract, forwarded.
        unsafe { c.decode(&a, workspace as usize, workspace_bytes, stream as usize) }
    })
}

/// Merges two partial attention results over disjoint key sets by their LSEs, in the context's dtype and
/// head_dim. Needs no workspace and no scratch on either backend (the CPU backend works row by row on the stack).
///
/// Aliasing: `o_out` may be `o_a` or `o_b` itself (the same data pointer, token_stride and head_stride), and
/// `lse_out` may be `lse_a` or `lse_b` itself: every output row is computed from fully read input rows of the same
/// (token, head). Any other overlap of an output with an input or with the other output (byte ranges, as for
/// `hip_prefill`) is HIP_ATTN_STATUS_INVALID_ARGUMENT.
///
/// # Safety
/// As for `hip_prefill`, with `hip_merge_args`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn hip_merge_states(
    ctx: *const hip_ctx,
    args: *const hip_merge_args,
    stream: *mut c_void,
) -> hip_status {
    // SAFETY: caller's contract.
    let c = unsafe { context(ctx) }.ok();
    guard(c, || {
        let c = c.ok_or_else(|| Error::null("ctx"))?;
        // SAFETY: caller's contract.
        let raw = unsafe { read_struct(args, "hip_merge_args")? };
        let m = convert::merge_args(c.config(), &raw)?;
        // SAFETY: caller's contract, forwarded.
        unsafe { c.merge(&m, stream as usize) }
    })
}
